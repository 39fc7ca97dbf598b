"""The CUDA engine against a float64 numpy reference and against the CPU engine (CpuEngine).

Skipped without CuPy or a GPU (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_cuda_engine.py``.

Scene: a 300 x 333 detector (the width is not a multiple of 32, so the last bit-mask word is partial),
Poisson background falling with radius, Gaussian spots, a masked gap band filled with the dtype's detector
marker, saturated pixels, a flat field, and optionally a dark and a per-pixel gain.
"""
from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")
try:
    HAVE_GPU = cp.cuda.runtime.getDeviceCount() > 0
except cp.cuda.runtime.CUDARuntimeError:
    HAVE_GPU = False
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA GPU")]

from braggsieve.engine.corrections import detector_markers, prepare_corrections, preprocess  # noqa: E402
from braggsieve.engine.csr import build_binning  # noqa: E402
from braggsieve.engine.cpu import CpuEngine  # noqa: E402
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams  # noqa: E402
from braggsieve.engine.peaks import PeakParams  # noqa: E402
from braggsieve.engine.pick import PickParams, filled_background  # noqa: E402
from braggsieve.errors import ParameterError  # noqa: E402

NY, NX, NBINS, NFRAMES = 300, 333, 120, 3
PIXEL_MM = 0.075
SATURATION = 60000.0


def _scene(dtype, *, dark=False, gain_map=False, split="no", error_model="poisson", seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:NY, :NX]
    r_px = np.hypot(rows - 140.3, cols - 170.6)
    radial = r_px * PIXEL_MM
    mask = np.zeros((NY, NX), bool)
    mask[100:104] = True
    mask[:, 200] = True
    gain = rng.uniform(0.8, 1.25, (NY, NX)).astype(np.float32) if gain_map else None
    dark_map = rng.normal(20, 2, (NY, NX)).astype(np.float32) if dark else None
    frames = []
    for _ in range(NFRAMES):
        expected = 100 * np.exp(-r_px / 80) + 5
        for _ in range(40):
            y, x = rng.uniform(5, NY - 5), rng.uniform(5, NX - 5)
            expected += rng.uniform(30, 3000) * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 2.0)
        counts = rng.poisson(expected).astype(np.float64)
        if gain is not None:
            counts *= gain
        if dark_map is not None:
            counts += dark_map
        if np.dtype(dtype).kind == "f":
            counts += rng.uniform(-0.5, 0.5, counts.shape)
        frame = np.clip(counts, 0, 65000).astype(dtype)
        frame[rng.integers(0, NY, 5), rng.integers(0, NX, 5)] = SATURATION + 10
        markers = detector_markers(np.dtype(dtype))
        frame[mask] = markers[0] if len(markers) else np.nan
        frames.append(frame)
    params = IntegrationParams(bins=NBINS, unit="r_mm", error_model=error_model, split=split)
    delta = np.full((NY, NX), 0.5 * PIXEL_MM) if split == "bbox" else None
    binning = build_binning(radial, params, radial_delta=delta)
    flat = rng.uniform(0.9, 1.1, (NY, NX)).astype(np.float32)
    corrections = prepare_corrections((NY, NX), CorrectionParams(solid_angle=False, saturation=SATURATION),
                                      mask=mask, dark=dark_map, flat=flat, gain=gain)
    return np.stack(frames), binning, corrections, params


def _engine(binning, corrections, params, **kwargs):
    from braggsieve.engine.cuda import CudaEngine

    return CudaEngine(binning, corrections, params, ClipParams(cutoff_clip=0.0, cycles=5), PickParams(cutoff_pick=3.0),
                      PeakParams(cutoff_peak=3.0, patch_size=5), **kwargs)


def _reference_clip(frames, binning, corrections, error_model, cycles=5, cutoff=0.0):
    """Sigma-clipping in float64 numpy, bin by bin, from float32 signal/variance computed here (not with the
    engine's preprocess): returns count, mean, std (nframes, nbins)."""
    raw = frames.astype(np.float64).reshape(len(frames), -1)
    markers = detector_markers(frames.dtype)
    valid = ~corrections.mask.ravel() & np.isfinite(raw) & (raw < SATURATION) & ~np.isin(raw, markers)
    gain = np.asarray(corrections.gain, np.float64).ravel() if isinstance(corrections.gain, np.ndarray) \
        else float(corrections.gain)
    dark = 0.0 if corrections.dark is None else corrections.dark.ravel().astype(np.float64)
    signal = ((raw - dark) / gain).astype(np.float32).astype(np.float64)
    variance = np.maximum((raw - dark) / gain, 1.0).astype(np.float32).astype(np.float64)
    norm = corrections.norm.ravel().astype(np.float64)
    coef = np.ones(binning.nnz) if binning.coef is None else binning.coef.astype(np.float64)
    scatter_model = error_model in ("azimuthal", "hybrid")
    shape = (len(frames), binning.nbins)
    count, mean, std = np.zeros(shape), np.full(shape, np.nan), np.full(shape, np.nan)
    for f in range(len(frames)):
        for b in range(binning.nbins):
            sl = slice(binning.indptr[b], binning.indptr[b + 1])
            idx, c = binning.indices[sl], coef[sl]
            ok = valid[f, idx] & (c != 0)
            idx, c = idx[ok], c[ok]
            s, var, nrm = signal[f, idx], variance[f, idx], norm[idx]
            v, w = s / nrm, c * nrm
            keep = np.ones(len(idx), bool)
            for cycle in range(cycles + 1):
                cnt, om, om2 = c[keep].sum(), w[keep].sum(), (w[keep] ** 2).sum()
                m = (c[keep] * s[keep]).sum() / om if om > 0 else np.nan
                vv = (w[keep] ** 2 * (v[keep] - m) ** 2).sum()
                ww = (c[keep] ** 2 * var[keep]).sum()
                if cycle == cycles or om == 0 or cnt == 0:
                    break
                sd = np.sqrt((vv if scatter_model else ww) / om2)
                k = max(cutoff, np.sqrt(2 * np.log(max(3.0, cnt) / np.sqrt(2 * np.pi))))
                new = keep & ~(np.abs(v - m) > k * sd)
                if new.sum() == keep.sum():
                    break
                keep = new
            reported = vv if error_model == "azimuthal" else ww
            count[f, b] = cnt
            if cnt > 0 and om2 > 0:
                mean[f, b], std[f, b] = m, np.sqrt(reported / om2)
    return count, mean, std


@pytest.mark.parametrize("error_model", ["poisson", "azimuthal", "hybrid"])
@pytest.mark.parametrize("split,shared", [("no", None), ("no", 300), ("bbox", None)])
def test_sigma_clip_matches_float64_reference(error_model, split, shared):
    """Bins held in shared memory; bins larger than the shared memory (300 pixels here), the rest gathered again
    at every pass; pixel splitting."""
    frames, binning, corrections, params = _scene(np.uint32, split=split, error_model=error_model)
    engine = _engine(binning, corrections, params, clip_shared=shared)
    if shared:
        assert engine.static.counts.max() > 3 * shared
    profile = engine.sigma_clip(frames)
    count, mean, std = _reference_clip(frames, binning, corrections, error_model)
    assert profile.mean.shape == (NFRAMES, NBINS)
    np.testing.assert_allclose(profile.count, count, rtol=1e-9)
    np.testing.assert_allclose(profile.mean, mean, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(profile.std, std, rtol=1e-9, equal_nan=True)
    assert np.isfinite(profile.mean).sum() > 0.9 * profile.mean.size


def _cpu_engine(binning, corrections, params, engine):
    return CpuEngine(binning, corrections, params, engine.clip, engine.pick_params, engine.peak_params)


def _near_threshold(frames, pre, binning, profile, engine, f, pixels):
    """For picked-pixel disagreements: |excess - margin| / margin of each pixel (CPU arithmetic)."""
    bg, std = filled_background(profile)
    radial = binning.radial
    step = radial[1] - radial[0]
    out = []
    for p in pixels:
        i, j = divmod(int(p), NX)
        r = float(binning.pixel_radius[i, j])
        fpos = np.clip((r - radial[0]) / step, 0, len(radial) - 1)
        m = np.interp(fpos, np.arange(len(radial)), bg[f].astype(np.float64))
        s = np.interp(fpos, np.arange(len(radial)), std[f].astype(np.float64))
        noise, cut = engine.pick_params.noise, engine.pick_params.cutoff_pick
        margin = max(noise, cut * np.sqrt(s * s + noise * noise))
        excess = pre.signal[f, i, j] / pre.norm[i, j] - m
        out.append(abs(excess - margin) / margin)
    return np.array(out)


@pytest.mark.parametrize("dtype,dark,gain_map", [(np.uint32, False, False), (np.uint16, True, False),
                                                  (np.int32, True, True), (np.float32, False, True)])
@pytest.mark.parametrize("error_model", ["poisson", "hybrid"])
def test_process_matches_cpu_engine(dtype, dark, gain_map, error_model):
    frames, binning, corrections, params = _scene(dtype, dark=dark, gain_map=gain_map, error_model=error_model,
                                                  seed=3)
    engine = _engine(binning, corrections, params)
    got = engine.process(frames)
    cpu = _cpu_engine(binning, corrections, params, engine)
    want = cpu.process(frames)
    profile, sparse, peaks = want.profile, want.sparse, want.peaks
    pre = preprocess(frames, corrections, params.error_model)
    np.testing.assert_allclose(engine.integrate(frames).std, cpu.integrate(frames).std, rtol=1e-9, equal_nan=True)

    for name in ("mean", "std", "sem", "count", "sum_signal", "sum_variance", "sum_norm", "sum_norm2"):
        np.testing.assert_allclose(getattr(got.profile, name), getattr(profile, name), rtol=1e-9,
                                   equal_nan=True, err_msg=name)
    np.testing.assert_allclose(got.sparse.background_avg, sparse.background_avg, rtol=1e-5)
    np.testing.assert_allclose(got.sparse.background_std, sparse.background_std, rtol=1e-5)

    near = 0
    for f in range(NFRAMES):
        a = got.sparse.index[got.sparse.frame_ptr[f]:got.sparse.frame_ptr[f + 1]]
        b = sparse.index[sparse.frame_ptr[f]:sparse.frame_ptr[f + 1]]
        assert np.all(np.diff(a.astype(np.int64)) > 0), "indices sorted within a frame"
        differ = np.setxor1d(a, b)
        if len(differ):
            assert np.all(_near_threshold(frames, pre, binning, profile, engine, f, differ) < 1e-5)
            near += len(differ)
        common, ia, ib = np.intersect1d(a, b, return_indices=True)
        va = got.sparse.intensity[got.sparse.frame_ptr[f]:][ia]
        vb = sparse.intensity[sparse.frame_ptr[f]:][ib]
        np.testing.assert_array_equal(va, vb)
        assert len(common) > 100
    print(f"picked pixels: {len(got.sparse.index)}; near-threshold disagreements: {near}")
    assert got.sparse.intensity.dtype == sparse.intensity.dtype

    np.testing.assert_array_equal(got.peaks.frame_ptr, peaks.frame_ptr)
    np.testing.assert_array_equal(got.peaks.index, peaks.index)
    assert got.peaks.npeaks.sum() > 20
    for name in ("intensity", "sigma", "snr", "maximum", "background"):
        np.testing.assert_allclose(getattr(got.peaks, name), getattr(peaks, name), rtol=1e-6, err_msg=name)
    for name in ("row", "col"):  # iterated centroid: exp() may differ in the last bit, the stop test at 1e-4 px
        np.testing.assert_allclose(getattr(got.peaks, name), getattr(peaks, name), atol=2e-4, err_msg=name)
    np.testing.assert_array_equal(got.peaks.npix, peaks.npix)


def test_process_many_overlaps_and_matches_single_batches():
    """Pageable, pinned and device-resident batches through the multi-stream pipeline give process()'s results,
    in order."""
    frames, binning, corrections, params = _scene(np.uint32, seed=5)
    engine = _engine(binning, corrections, params, streams=2)
    pinned = engine.pinned_frames(2, np.uint32)
    pinned[...] = frames[1:3]
    batches = [frames[:1], pinned, cp.asarray(frames[::-1]), frames]
    singles = [engine.process(b if not isinstance(b, cp.ndarray) else cp.asnumpy(b)) for b in batches]
    for got, want in zip(engine.process_many(iter(batches)), singles, strict=True):
        np.testing.assert_array_equal(got.profile.mean, want.profile.mean)
        np.testing.assert_array_equal(got.sparse.frame_ptr, want.sparse.frame_ptr)
        np.testing.assert_array_equal(got.sparse.index, want.sparse.index)
        np.testing.assert_array_equal(got.peaks.index, want.peaks.index)


def test_capacity_grows_when_many_pixels_are_picked():
    frames, binning, corrections, params = _scene(np.uint32, seed=7)
    engine = _engine(binning, corrections, params)
    engine._slots[0]._ensure(NFRAMES, np.dtype(np.uint32))
    engine._slots[0].pick_cap = 0
    engine._slots[0]._grow(16, 2)  # far too small: the batch must be compacted again after growing
    small = engine.process(frames)
    fresh = _engine(binning, corrections, params).process(frames)
    np.testing.assert_array_equal(small.sparse.index, fresh.sparse.index)
    np.testing.assert_array_equal(small.peaks.index, fresh.peaks.index)


def test_bad_input_is_a_parameter_error():
    frames, binning, corrections, params = _scene(np.uint32)
    engine = _engine(binning, corrections, params)
    with pytest.raises(ParameterError, match="do not match"):
        engine.process(frames[:, :10])
    with pytest.raises(ParameterError, match="dtype"):
        engine.process(frames.astype(np.float64))
    with pytest.raises(ParameterError, match="variance"):
        _engine(binning, corrections, IntegrationParams(bins=NBINS, unit="r_mm", error_model="variance"))
