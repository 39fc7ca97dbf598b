"""braggsieve's densification against FabIO's Cython densify (the reference) and against noise statistics."""
import numpy as np
import pytest

from braggsieve.engine.densify import Densifier
from braggsieve.errors import ParameterError

dense = pytest.importorskip("fabio.ext.dense")


def _sparse_case(dtype, seed=0, shape=(60, 70), nbins=40, nframes=3):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    radius = (np.hypot(yy - 28.3, xx - 33.1) * 0.172).astype(np.float32)
    radius[:, 5] = np.nan
    # bin centres do not cover the innermost and outermost pixels: those get dummy (FabIO's rule)
    radial = np.linspace(0.5, 7.0, nbins).astype(np.float32)
    bg = (20 * np.exp(-radial[None] / 3) + 2 + rng.uniform(0, 1, (nframes, nbins))).astype(np.float32)
    std = np.sqrt(bg).astype(np.float32)
    counts = rng.integers(0, 80, nframes)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    index = np.concatenate([rng.choice(radius.size, c, replace=False) for c in counts]).astype(np.uint32)
    if np.dtype(dtype).kind in "iu":
        intensity = rng.integers(0, 5000, ptr[-1]).astype(dtype)
    else:
        intensity = rng.uniform(0, 5000, ptr[-1]).astype(dtype)
    norm = (0.6 + 0.4 * rng.uniform(size=shape)).astype(np.float32)
    return radius, radial, bg, std, ptr, index, intensity, norm


@pytest.mark.parametrize("dtype", [np.uint32, np.int32, np.uint16, np.float32])
@pytest.mark.parametrize("with_norm", [False, True])
def test_noiseless_densify_equals_fabio(dtype, with_norm):
    radius, radial, bg, std, ptr, index, intensity, norm = _sparse_case(dtype)
    norm = norm if with_norm else None
    dummy = np.dtype(dtype).type(0 if np.dtype(dtype).kind in "iu" else np.nan)
    ours = Densifier(radius, radial, normalization=norm, dtype=dtype, dummy=dummy)(bg, std, ptr, index, intensity)
    for f in range(len(ptr) - 1):
        ref = dense.densify(radius, radial, index[ptr[f]:ptr[f + 1]], intensity[ptr[f]:ptr[f + 1]], dummy,
                            np.dtype(dtype), bg[f], None, norm)
        np.testing.assert_array_equal(ours[f], ref)
    assert ours.dtype == dtype
    stored = np.zeros(radius.shape, bool)
    stored.flat[index] = True
    column = ours[:, ~stored[:, 5], 5]
    assert (column == dummy).all() or np.isnan(column).all()


def test_batches_and_offsets_give_the_same_frames():
    radius, radial, bg, std, ptr, index, intensity, norm = _sparse_case(np.uint32)
    densify = Densifier(radius, radial, normalization=norm, dtype=np.uint32)
    whole = densify(bg, std, ptr, index, intensity, noise="gaussian", seed=7)
    second = densify(bg[1:], std[1:], ptr[1:], index[ptr[1]:], intensity[ptr[1]:], noise="gaussian", seed=7,
                     first_frame=1)
    np.testing.assert_array_equal(whole[1:], second)
    other_seed = densify(bg, std, ptr, index, intensity, noise="gaussian", seed=8)
    assert (other_seed != whole).mean() > 0.3


@pytest.mark.parametrize("noise,level", [("gaussian", 3.0), ("gaussian", 40.0), ("poisson", 0.7),
                                         ("poisson", 4.0), ("poisson", 25.0), ("poisson", 300.0)])
def test_noise_statistics(noise, level):
    """Background pixels follow N(mean, std) clipped at 0 / Poisson(mean x norm): compare the moments with the
    distribution's own (computed independently with scipy)."""
    from scipy import stats
    shape, nbins = (400, 500), 10
    radius = np.linspace(1.0, 2.0, shape[0] * shape[1], dtype=np.float32).reshape(shape)
    radial = np.linspace(1.0, 2.0, nbins).astype(np.float32)
    bg = np.full((1, nbins), level, np.float32)
    std = np.full((1, nbins), np.sqrt(level), np.float32)
    out = Densifier(radius, radial, dtype=np.float32)(bg, std, np.array([0, 0]), np.zeros(0, np.uint32),
                                                     np.zeros(0, np.float32), noise=noise, seed=3)[0]
    n = out.size
    if noise == "poisson":
        ref = stats.poisson(level)
        mean, sd = ref.mean(), ref.std()
    else:  # max(0, X) with X ~ N(mu, s): censored normal moments
        mu, s = level, np.sqrt(level)
        cdf, pdf = stats.norm.cdf(mu / s), stats.norm.pdf(mu / s)
        mean = mu * cdf + s * pdf
        sd = np.sqrt((mu * mu + s * s) * cdf + mu * s * pdf - mean ** 2)
    assert abs(out.mean() - mean) < 5 * sd / np.sqrt(n)
    assert abs(out.std() / sd - 1) < 0.01
    if noise == "poisson":
        np.testing.assert_array_equal(out, np.round(out))
        # frequencies of the first values against the Poisson pmf
        for k in range(int(level), int(level) + 3):
            assert abs((out == k).mean() - ref.pmf(k)) < 5 * np.sqrt(ref.pmf(k) / n)


def test_bad_parameters():
    radius, radial, bg, std, ptr, index, intensity, norm = _sparse_case(np.uint32)
    densify = Densifier(radius, radial, dtype=np.uint32)
    with pytest.raises(ParameterError):
        densify(bg, std, ptr, index, intensity, noise="uniform")
    with pytest.raises(ParameterError):
        densify(bg[:2], std, ptr, index, intensity)
    with pytest.raises(ParameterError):
        Densifier(radius, radial, normalization=norm[:10], dtype=np.uint32)
