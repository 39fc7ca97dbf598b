"""The CUDA engine against a float64 numpy reference and against the CPU engine (CpuEngine).

Skipped without CuPy or a GPU (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_cuda_engine.py``.

Scene: a 300 x 333 detector (the width is not a multiple of 32, so the last bit-mask word is partial),
Poisson background falling with radius, Gaussian spots, single-pixel zingers, a masked gap band and a masked
column filled with the dtype's detector marker, saturated pixels, a flat field, and optionally a dark and a
per-pixel gain.  The peak rules compared with the CPU engine are those of the final engine/peaks.py (3x3 box
with the skewness term, rule 2e, zinger flags, 5x5 patch next to missing pixels, windowed centroid, 5x5 box
on the centroid), and picking includes ``cutoff_spot``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cuda_available import GPU_ONLY, cupy as cp  # skips this module without CuPy

pytestmark = GPU_ONLY

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


def _scene(dtype, *, dark=False, gain_map=False, dark_variance=False, split="no", error_model="poisson", seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:NY, :NX]
    r_px = np.hypot(rows - 140.3, cols - 170.6)
    radial = r_px * PIXEL_MM
    mask = np.zeros((NY, NX), bool)
    mask[100:104] = True
    mask[:, 200] = True
    gain = rng.uniform(0.8, 1.25, (NY, NX)).astype(np.float32) if gain_map else None
    dark_map = rng.normal(20, 2, (NY, NX)).astype(np.float32) if dark else None
    dvar_map = rng.uniform(1.0, 9.0, (NY, NX)).astype(np.float32) if dark_variance else None
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
        zy, zx = rng.integers(0, NY, 20), rng.integers(0, NX, 20)
        frame[zy, zx] = np.minimum(frame[zy, zx].astype(np.float64) + 3000, 50000).astype(dtype)  # zingers
        markers = detector_markers(np.dtype(dtype))
        frame[mask] = markers[0] if len(markers) else np.nan
        frames.append(frame)
    params = IntegrationParams(bins=NBINS, unit="r_mm", error_model=error_model, split=split)
    delta = np.full((NY, NX), 0.5 * PIXEL_MM) if split == "bbox" else None
    binning = build_binning(radial, params, radial_delta=delta)
    flat = rng.uniform(0.9, 1.1, (NY, NX)).astype(np.float32)
    corrections = prepare_corrections((NY, NX), CorrectionParams(solid_angle=False, saturation=SATURATION),
                                      mask=mask, dark=dark_map, flat=flat, gain=gain, dark_variance=dvar_map)
    return np.stack(frames), binning, corrections, params


def _engine(binning, corrections, params, pick=None, peaks=None, **kwargs):
    from braggsieve.engine.cuda import CudaEngine

    return CudaEngine(binning, corrections, params, ClipParams(cutoff_clip=0.0, cycles=5),
                      pick or PickParams(cutoff_pick=3.0), peaks or PeakParams(cutoff_peak=3.0, patch_size=5), **kwargs)


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
@pytest.mark.parametrize("split,shared", [("no", None), ("no", 301), ("bbox", None)])
@pytest.mark.parametrize("blocks", ["small", "large"])
def test_sigma_clip_matches_float64_reference(error_model, split, shared, blocks, monkeypatch):
    """Bins held in shared memory; bins larger than the shared memory (301 pixels asked, 300 held: the kernel
    reads the copies four at a time), the rest gathered again at every pass; pixel splitting; both block sizes
    of the clipping kernel (this scene's bins are all small: "large" launches them with CLIP_BLOCK threads)."""
    from braggsieve.engine.cuda import engine as cuda_engine

    if blocks == "large":
        monkeypatch.setattr(cuda_engine, "CLIP_SMALL_CAP", 0)
    frames, binning, corrections, params = _scene(np.uint32, split=split, error_model=error_model)
    engine = _engine(binning, corrections, params, clip_shared=shared)
    assert all(cap % 4 == 0 for _, cap in engine._bin_classes)
    if shared:
        assert engine.static.counts.max() > 3 * shared
        assert max(cap for _, cap in engine._bin_classes) == 300
    profile = engine.sigma_clip(frames)
    count, mean, std = _reference_clip(frames, binning, corrections, error_model)
    assert profile.mean.shape == (NFRAMES, NBINS)
    np.testing.assert_allclose(profile.count, count, rtol=1e-9)
    np.testing.assert_allclose(profile.mean, mean, rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(profile.std, std, rtol=1e-9, equal_nan=True)
    assert np.isfinite(profile.mean).sum() > 0.9 * profile.mean.size


def _cpu_engine(binning, corrections, params, engine, d_spacing=None):
    return CpuEngine(binning, corrections, params, engine.clip, engine.pick_params, engine.peak_params, d_spacing)


def _near_threshold(pre, binning, profile, pick, f):
    """(ny, nx) bool: pixels of frame f whose excess lies within 1e-5 relative of the picking margin or, with
    ``cutoff_spot``, of the spot threshold, and (with ``cutoff_spot``) their 8 neighbours (CPU arithmetic)."""
    bg, std = filled_background(profile)
    radial = binning.radial
    fpos = np.clip((binning.pixel_radius.astype(np.float64) - radial[0]) / (radial[1] - radial[0]), 0,
                   len(radial) - 1)
    m = np.interp(fpos, np.arange(len(radial)), bg[f].astype(np.float64))
    s = np.interp(fpos, np.arange(len(radial)), std[f].astype(np.float64))
    sigma = np.sqrt(s * s + pick.noise ** 2)
    excess = pre.signal[f] / pre.norm - m
    near = np.zeros((NY, NX), bool)
    for margin in [np.maximum(pick.noise, pick.cutoff_pick * sigma)] + ([pick.cutoff_spot * sigma]
                                                                        if pick.cutoff_spot else []):
        with np.errstate(invalid="ignore"):
            near |= np.abs(excess - margin) <= 1e-5 * margin
    if pick.cutoff_spot:
        padded = np.pad(near, 1)
        near = np.any([padded[1 + di:1 + di + NY, 1 + dj:1 + dj + NX] for di in (-1, 0, 1) for dj in (-1, 0, 1)],
                      axis=0)
    return near


def _assert_same_picks(got, want, pre, binning, profile, pick):
    """Same picked pixels (but those within 1e-5 relative of a threshold, counted) and the same values."""
    near = 0
    for f in range(NFRAMES):
        a = got.sparse.index[got.sparse.frame_ptr[f]:got.sparse.frame_ptr[f + 1]]
        b = want.sparse.index[want.sparse.frame_ptr[f]:want.sparse.frame_ptr[f + 1]]
        assert np.all(np.diff(a.astype(np.int64)) > 0), "indices sorted within a frame"
        differ = np.setxor1d(a, b)
        if len(differ):
            assert np.all(_near_threshold(pre, binning, profile, pick, f).ravel()[differ])
            near += len(differ)
        common, ia, ib = np.intersect1d(a, b, return_indices=True)
        va = got.sparse.intensity[got.sparse.frame_ptr[f]:][ia]
        vb = want.sparse.intensity[want.sparse.frame_ptr[f]:][ib]
        np.testing.assert_array_equal(va, vb)
        assert len(common) > 100
    print(f"picked pixels: {len(got.sparse.index)}; near-threshold disagreements: {near}")
    assert got.sparse.intensity.dtype == want.sparse.intensity.dtype


def _assert_same_peaks(got, want, min_peaks=20):
    np.testing.assert_array_equal(got.peaks.frame_ptr, want.peaks.frame_ptr)
    np.testing.assert_array_equal(got.peaks.index, want.peaks.index)
    assert got.peaks.npeaks.sum() >= min_peaks
    for name in ("intensity", "sigma", "snr", "maximum", "background"):
        np.testing.assert_allclose(getattr(got.peaks, name), getattr(want.peaks, name), rtol=1e-6, err_msg=name)
    for name in ("row", "col"):  # iterated centroid: exp() may differ in the last bit, the stop test at 1e-4 px
        np.testing.assert_allclose(getattr(got.peaks, name), getattr(want.peaks, name), atol=2e-4, err_msg=name)
    np.testing.assert_array_equal(got.peaks.npix, want.peaks.npix)
    np.testing.assert_array_equal(got.peaks.resolution, want.peaks.resolution)


@pytest.mark.parametrize("dtype,dark,gain_map", [(np.uint32, False, False), (np.uint16, True, False),
                                                  (np.int32, True, True), (np.float32, False, True),
                                                  # the shorter preprocessing of frames without dark or gain
                                                  (np.uint16, False, False), (np.int32, False, False),
                                                  (np.float32, False, False)])
@pytest.mark.parametrize("error_model", ["poisson", "hybrid"])
def test_process_matches_cpu_engine(dtype, dark, gain_map, error_model):
    frames, binning, corrections, params = _scene(dtype, dark=dark, gain_map=gain_map, error_model=error_model,
                                                  seed=3)
    engine = _engine(binning, corrections, params)
    got = engine.process(frames)
    cpu = _cpu_engine(binning, corrections, params, engine)
    want = cpu.process(frames)
    profile, sparse = want.profile, want.sparse
    pre = preprocess(frames, corrections, params.error_model)
    np.testing.assert_allclose(engine.integrate(frames).std, cpu.integrate(frames).std, rtol=1e-9, equal_nan=True)

    for name in ("mean", "std", "sem", "count", "sum_signal", "sum_variance", "sum_norm", "sum_norm2"):
        np.testing.assert_allclose(getattr(got.profile, name), getattr(profile, name), rtol=1e-9,
                                   equal_nan=True, err_msg=name)
    np.testing.assert_allclose(got.sparse.background_avg, sparse.background_avg, rtol=1e-5)
    np.testing.assert_allclose(got.sparse.background_std, sparse.background_std, rtol=1e-5)
    _assert_same_picks(got, want, pre, binning, profile, engine.pick_params)
    _assert_same_peaks(got, want)


@pytest.mark.parametrize("error_model", ["poisson", "hybrid"])
def test_dark_variance_matches_cpu_engine(error_model):
    """A dark-variance map (added to each pixel's Poisson variance, divided by gain^2): the clipping kernels'
    instances with the dark variance, and the peak finder's sigma."""
    frames, binning, corrections, params = _scene(np.uint32, dark=True, gain_map=True, dark_variance=True,
                                                  error_model=error_model, seed=13)
    engine = _engine(binning, corrections, params)
    assert engine.static.cdvar is not None
    got = engine.process(frames)
    cpu = _cpu_engine(binning, corrections, params, engine)
    want = cpu.process(frames)
    for name in ("mean", "std", "count", "sum_signal", "sum_variance", "sum_norm"):
        np.testing.assert_allclose(getattr(got.profile, name), getattr(want.profile, name), rtol=1e-9,
                                   equal_nan=True, err_msg=name)
    without = _engine(binning, dataclasses.replace(corrections, dark_variance=None), params)
    filled = got.profile.count > 0
    assert np.all(without.process(frames).profile.sum_variance[filled] < got.profile.sum_variance[filled])
    pre = preprocess(frames, corrections, params.error_model)
    _assert_same_picks(got, want, pre, binning, want.profile, engine.pick_params)
    _assert_same_peaks(got, want, min_peaks=10)


@pytest.mark.parametrize("pick,peaks", [
    (PickParams(cutoff_pick=3.0, cutoff_spot=5.0), PeakParams()),  # the defaults: patch 3, cutoff 4.4
    (PickParams(cutoff_spot=3.0), PeakParams(cutoff_peak=3.0, near_mask="reject")),
    (PickParams(cutoff_pick=3.0), PeakParams(cutoff_peak=0.9, min_spread=0.3, spread_snr=1.0)),  # negative skew term
])
def test_peak_rules_and_spot_picking_match_cpu_engine(pick, peaks):
    """The final CPU peak rules (5x5 patch next to the masked band/column, zingers, rule 2e, the skewness term
    of either sign, near_mask) and picking with the spot neighbours, with a float64 d-spacing map."""
    frames, binning, corrections, params = _scene(np.uint32, dark=True, seed=11)
    rows, cols = np.mgrid[:NY, :NX]
    d_spacing = 1.0 + np.hypot(rows - 140.3, cols - 170.6) / 77.0  # float64, as geometry.pixels.d_spacing
    engine = _engine(binning, corrections, params, pick=pick, peaks=peaks, d_spacing=d_spacing)
    got = engine.process(frames)
    want = _cpu_engine(binning, corrections, params, engine, d_spacing).process(frames)
    pre = preprocess(frames, corrections, params.error_model)
    _assert_same_picks(got, want, pre, binning, want.profile, pick)
    _assert_same_peaks(got, want, min_peaks=10)
    near_gap = [(abs(i - 101.5) <= 4 or abs(j - 200) <= 3) for i, j in
                (divmod(int(p), NX) for p in want.peaks.index)]
    print(f"peaks: {len(want.peaks.index)}, of which next to the masked band/column: {sum(near_gap)}")


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


def test_results_come_back_with_the_batch_after_the_first():
    """A slot's first batch copies its picked pixels and peaks when collected; the next ones bring them back with
    the batch (predicted from the last count), more than predicted is copied at collection: the same results."""
    frames, binning, corrections, params = _scene(np.uint32, seed=9)
    engine = _engine(binning, corrections, params, streams=1)
    first = engine.process(frames[:1])
    slot = engine._slots[0]
    assert slot.ahead == (0, 0)
    again = engine.process(frames[:1])
    assert slot.ahead[0] >= len(again.sparse.index) > 0 and slot.ahead[1] >= again.peaks.npeaks.sum() > 0
    more = engine.process(frames)  # three frames: more than predicted from one
    assert slot.ahead[0] < len(more.sparse.index)
    for got, want in ((again, first), (more, _engine(binning, corrections, params).process(frames))):
        np.testing.assert_array_equal(got.sparse.index, want.sparse.index)
        np.testing.assert_array_equal(got.sparse.intensity, want.sparse.intensity)
        np.testing.assert_array_equal(got.peaks.index, want.peaks.index)
        np.testing.assert_array_equal(got.peaks.intensity, want.peaks.intensity)


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
