"""Picking against a direct numpy transcription of the rule, on frames with a known background."""
from types import SimpleNamespace

import numpy as np
import pytest

from braggsieve.engine.pick import PickParams, filled_background, pick_pixels, quantise_intensities
from braggsieve.engine.records import RadialProfile, SparseFrames
from braggsieve.errors import ParameterError


def _case(nframes=3, shape=(80, 90), nbins=25, seed=0, dtype=np.uint32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    radius = np.hypot(yy - 40.2, xx - 44.7).astype(np.float32)
    radius[3, :] = np.nan
    edges = np.linspace(2.0, 55.0, nbins + 1)
    radial = 0.5 * (edges[1:] + edges[:-1])
    mean = 30 * np.exp(-radial[None] / 20) + 3 + np.arange(nframes)[:, None]
    std = np.sqrt(mean)
    mean[1, 7] = np.nan  # an empty bin: filled from its neighbours
    norm = (0.8 + 0.2 * rng.uniform(size=shape)).astype(np.float32)
    expected = np.interp(radius, radial, 30 * np.exp(-radial / 20) + 3)
    raw = rng.poisson(np.nan_to_num(expected)[None] * norm + np.arange(nframes)[:, None, None],
                      size=(nframes,) + shape).astype(dtype)
    raw[0, 40:43, 50:53] += 400  # a spot
    signal = raw.astype(np.float32)
    signal[:, 10, 10] = np.nan   # dynamically invalid
    raw[2, 20, 20] = 60000       # overloaded, hence invalid, but must be kept
    signal[2, 20, 20] = np.nan
    profile = RadialProfile(radial=radial, mean=mean, std=std, sem=std, count=np.ones_like(mean),
                            sum_signal=mean, sum_variance=mean, sum_norm=mean, sum_norm2=mean, unit="r_mm",
                            error_model="poisson")
    binning = SimpleNamespace(pixel_radius=radius, radial=radial, radial_range=(edges[0], 50.0), unit="r_mm")
    pre = SimpleNamespace(signal=signal, norm=norm)
    corrections = SimpleNamespace(dark=None, saturation=50000.0, gain=1.0)
    return raw, pre, binning, profile, corrections


def _reference(raw, pre, binning, profile, params, corrections):
    """The rule of DESIGN.md written with numpy, frame by frame (np.interp clamps at the ends as required)."""
    bg, std = filled_background(profile)
    lo, hi = binning.radial_range
    out = []
    for f in range(raw.shape[0]):
        r = binning.pixel_radius
        b = np.interp(r, binning.radial, bg[f])
        s = np.interp(r, binning.radial, std[f])
        sigma = np.sqrt(s ** 2 + params.noise ** 2)
        excess = pre.signal[f] / pre.norm - b
        inside = (r >= lo) & (r < hi)
        above = inside & (excess > np.maximum(params.noise, params.cutoff_pick * sigma))
        overload = inside & ~np.isfinite(pre.signal[f]) & (raw[f] >= corrections.saturation)
        kept = above | overload
        if params.cutoff_spot:
            seeds = (above & (excess > params.cutoff_spot * sigma)) | overload
            grown = np.zeros_like(seeds)
            padded = np.pad(seeds, 1)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    grown |= padded[1 + dy:1 + dy + seeds.shape[0], 1 + dx:1 + dx + seeds.shape[1]]
            kept |= grown & inside
        out.append(np.flatnonzero(kept))
    return out


@pytest.mark.parametrize("params", [PickParams(), PickParams(cutoff_pick=3, noise=0.5),
                                    PickParams(cutoff_spot=4.0), PickParams(cutoff_pick=0.5, noise=2)])
def test_pick_matches_the_rule(params):
    raw, pre, binning, profile, corrections = _case()
    sparse = pick_pixels(raw, pre, binning, profile, params, corrections)
    expected = _reference(raw, pre, binning, profile, params, corrections)
    assert sparse.nframes == raw.shape[0]
    for f in range(sparse.nframes):
        index = sparse.index[sparse.frame_ptr[f]:sparse.frame_ptr[f + 1]]
        np.testing.assert_array_equal(index, expected[f])
        np.testing.assert_array_equal(sparse.intensity[sparse.frame_ptr[f]:sparse.frame_ptr[f + 1]],
                                      raw[f].ravel()[index])
    assert sparse.intensity.dtype == raw.dtype
    assert 20 * 90 + 20 in sparse.index[sparse.frame_ptr[2]:]  # the overload
    assert np.isfinite(sparse.background_avg).all()


def test_pick_with_dark_rounds_into_the_raw_dtype():
    raw, pre, binning, profile, _ = _case(dtype=np.uint16)
    dark = np.full(raw.shape[1:], 2.6, np.float32)
    corrections = SimpleNamespace(dark=dark, saturation=None, gain=1.0)
    sparse = pick_pixels(raw, pre, binning, profile, PickParams(), corrections)
    first = slice(sparse.frame_ptr[0], sparse.frame_ptr[1])
    np.testing.assert_array_equal(sparse.intensity[first],
                                  np.maximum(np.floor(raw[0].ravel()[sparse.index[first]] - 2.6 + 0.5), 0))
    assert sparse.intensity.dtype == np.uint16


def test_quantisation_error_is_bounded_by_the_poisson_sigma():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 3000, 20000).astype(np.uint32)
    sparse = SparseFrames(np.array([0, 20000]), np.arange(20000, dtype=np.uint32), values, np.zeros((1, 2), np.float32),
                          np.zeros((1, 2), np.float32), np.arange(2.0), "r_mm")
    for fraction in (0.5, 1.0, 2.0):
        q = quantise_intensities(sparse, fraction).intensity.astype(np.float64)
        error = np.abs(q - values)
        assert np.all(error <= 0.5 * fraction * np.sqrt(np.maximum(values, 1)) + 1e-9)
        assert np.mean(q == values) < 0.5  # it did round
        assert abs(np.mean(q - values)) < 0.1 * np.sqrt(np.mean(error ** 2))  # and without bias
    assert quantise_intensities(sparse, 0).intensity is values
    with pytest.raises(ParameterError):
        quantise_intensities(sparse, -1)


def test_bad_pick_parameters():
    with pytest.raises(ParameterError):
        PickParams(cutoff_pick=-1)
    with pytest.raises(ParameterError):
        PickParams(noise=-0.1)
    with pytest.raises(ParameterError):
        PickParams(cutoff_spot=-2)
