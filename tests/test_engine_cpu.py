"""CpuEngine: the Engine protocol, batches, and one pass (clip -> pick -> peaks) on frames with known spots."""
from __future__ import annotations

import numpy as np
import pytest

from braggsieve.engine.backend import Engine
from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.cpu import CpuEngine
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import integrate, sigma_clip
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.peaks import PeakParams
from braggsieve.engine.pick import PickParams
from braggsieve.errors import ParameterError

SHAPE = (160, 200)
SPOTS = [(40.0, 50.0), (100.0, 150.0), (120.0, 30.0), (20.0, 170.0)]  # (row, col) truth, away from the gap


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(7)
    rows, cols = np.indices(SHAPE)
    radius = np.hypot(rows - 75.3, cols - 92.6) * 0.1  # mm, 100 um pixels
    mask = np.zeros(SHAPE, bool)
    mask[:, 95:97] = True
    frames = rng.poisson(30 * np.exp(-radius / 6) + 3, (2,) + SHAPE).astype(np.uint32)
    for row, col in SPOTS:  # a Gaussian spot of 3000 photons, sigma 0.8 px, on frame 1 only
        profile = np.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * 0.8 ** 2))
        frames[1] += rng.poisson(3000 * profile / profile.sum()).astype(np.uint32)
    frames[:, mask] = 0xFFFFFFFF
    params = IntegrationParams(bins=120, unit="r_mm", error_model="poisson")
    binning = build_binning(radius, params, mask=mask)
    corrections = prepare_corrections(SHAPE, CorrectionParams(solid_angle=False), mask=mask)
    engine = CpuEngine(binning, corrections, params, ClipParams(), PickParams(cutoff_pick=3.0),
                       PeakParams())
    return engine, frames


def test_is_an_engine_and_matches_the_functions(setup):
    engine, frames = setup
    assert isinstance(engine, Engine) and engine.device == "cpu"
    pre = preprocess(frames, engine.corrections, "poisson")
    expected = sigma_clip(pre, engine.binning, "poisson", engine.clip)
    clipped = engine.sigma_clip(frames)
    np.testing.assert_array_equal(clipped.mean, expected.mean)
    np.testing.assert_array_equal(engine.integrate(frames).mean, integrate(pre, engine.binning, "poisson").mean)
    single = engine.sigma_clip(frames[1])  # one (ny, nx) frame is a batch of one
    assert single.mean.shape == (1, engine.binning.nbins)
    np.testing.assert_array_equal(single.mean[0], clipped.mean[1])


def test_process_finds_the_spots_and_keeps_their_pixels(setup):
    engine, frames = setup
    results = engine.process(frames)
    assert results.profile.mean.shape == (2, engine.binning.nbins)
    sparse, peaks = results.sparse, results.peaks
    assert sparse.nframes == peaks.nframes == 2
    kept = sparse.index[sparse.frame_ptr[1]:sparse.frame_ptr[2]]
    for row, col in SPOTS:
        assert int(row) * SHAPE[1] + int(col) in kept
    assert peaks.npeaks[0] == 0 and peaks.npeaks[1] == len(SPOTS)
    found = sorted(zip(peaks.row.tolist(), peaks.col.tolist()))
    for (row, col), (found_row, found_col) in zip(sorted(SPOTS), found):
        assert abs(found_row - row) < 0.3 and abs(found_col - col) < 0.3
    only_clip = engine.process(frames, sparse=False, peaks=False)
    assert only_clip.sparse is None and only_clip.peaks is None
    np.testing.assert_array_equal(only_clip.profile.mean, results.profile.mean)


def test_mismatched_inputs_raise(setup):
    engine, frames = setup
    other = prepare_corrections((10, 10), CorrectionParams(solid_angle=False))
    with pytest.raises(ParameterError, match="do not match"):
        CpuEngine(engine.binning, other)
    with pytest.raises(ParameterError, match="do not match"):
        engine.sigma_clip(frames[:, :10])
    with pytest.raises(ParameterError, match="explicit variance"):
        CpuEngine(engine.binning, engine.corrections, IntegrationParams(error_model="variance")).integrate(frames)
