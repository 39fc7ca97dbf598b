"""Detector noise and planted bad pixels of braggsieve.simulate, checked against scipy's distributions."""
from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import stats

from braggsieve.simulate.badpixels import plant_bad_pixels
from braggsieve.simulate.params import DEFECT_TYPES, BadPixelParams, NoiseParams
from braggsieve.simulate.response import nominal_response, record_frames

SHAPE = (128, 128)


def _response(counting, noise=NoiseParams(), gap=None, marker=0):
    gap = np.zeros(SHAPE, bool) if gap is None else gap
    return nominal_response(SHAPE, gap, marker, noise, counting, np.random.default_rng(5))


@pytest.mark.parametrize("lam", [0.02, 0.3, 0.0625, 4.0, 5.03, 9.99, 10.0, 37.0, 2500.0])
def test_counting_noise_is_poisson(lam):
    """Histogram of the recorded counts against scipy's Poisson pmf (inversion below 10, PTRS above)."""
    response = _response(True, NoiseParams(flat_spread=0.0))
    frames = record_frames(np.full((8, *SHAPE), lam, np.float32), response, seed=3, first_frame=0,
                           dtype=np.uint32).astype(np.int64).ravel()
    assert abs(frames.mean() - lam) < 5 * np.sqrt(lam / frames.size)
    assert abs(frames.var() / lam - 1) < 5 * np.sqrt((1 / lam + 2) / frames.size)
    low, high = stats.poisson.ppf([1e-5, 1 - 1e-5], lam).astype(int)
    edges = np.arange(low, high + 2)
    observed = np.histogram(np.clip(frames, low, high), edges)[0]
    expected = np.diff(stats.poisson.cdf(edges - 1, lam))
    expected[0] += stats.poisson.cdf(low - 1, lam)
    expected[-1] += stats.poisson.sf(high, lam)
    expected *= frames.size
    keep = expected > 20
    chi2 = ((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4


def test_integrating_noise_mean_and_variance():
    """ADU = gain x Poisson + pedestal + read noise: per-pixel maps from the response, moments from theory."""
    noise = NoiseParams(gain=8.0, gain_spread=0.0, pedestal=1000.0, pedestal_spread=50.0, read_noise=2.5,
                        flat_spread=0.0)
    response = _response(False, noise)
    lam = 3.0
    frames = record_frames(np.full((40, *SHAPE), lam, np.float32), response, seed=4, first_frame=0,
                           dtype=np.float32)
    signal = frames - response.pedestal[None]
    n = signal.size
    assert abs(signal.mean() - 8.0 * lam) < 5 * np.sqrt((64 * lam + 6.25) / n)
    assert abs(signal.var() / (64 * lam + 2.5 ** 2) - 1) < 0.02
    dark = record_frames(np.zeros((40, *SHAPE), np.float32), response, seed=4, first_frame=0, dtype=np.float32)
    residual = dark - response.pedestal[None]
    assert abs(residual.std() - 2.5) < 0.02
    assert np.allclose(response.dark_variance(), 2.5 ** 2)
    exact = record_frames(np.full((2, *SHAPE), lam, np.float32), response, 4, 0, np.float64)
    rounded = record_frames(np.full((2, *SHAPE), lam, np.float32), response, 4, 0, np.uint16)
    assert np.array_equal(rounded, np.clip(np.floor(exact + 0.5), 0, 65535).astype(np.uint16))


def test_gap_marker_and_clipping():
    gap = np.zeros(SHAPE, bool)
    gap[10:13] = True
    response = _response(True, gap=gap, marker=0xFFFFFFFF)
    frames = record_frames(np.full((2, *SHAPE), 1e12, np.float32), response, 1, 0, np.uint32)
    assert np.all(frames[:, gap] == 0xFFFFFFFF)
    assert np.all(frames[:, ~gap] == 0xFFFFFFFE)  # saturated, kept below the marker
    pilatus = record_frames(np.full((1, *SHAPE), 5, np.float32), _response(True, gap=gap, marker=-1), 1, 0,
                            np.int32)
    assert np.all(pilatus[:, gap] == -1) and pilatus[:, ~gap].min() >= 0


def test_frames_depend_only_on_seed_and_frame_number():
    response = _response(True)
    expected = np.random.default_rng(0).uniform(0, 50, (6, *SHAPE)).astype(np.float32)
    whole = record_frames(expected, response, seed=9, first_frame=100, dtype=np.int32)
    parts = np.concatenate([record_frames(expected[i:i + 1], response, 9, 100 + i, np.int32) for i in range(6)])
    assert np.array_equal(whole, parts)
    assert not np.array_equal(whole, record_frames(expected, response, 10, 100, np.int32))
    assert not np.array_equal(whole[1], whole[0])
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = record_frames(expected, response, seed=9, first_frame=100, dtype=np.int32)
    finally:
        numba.set_num_threads(threads)
    assert np.array_equal(whole, single)  # independent of how the work is split between threads


@pytest.mark.parametrize("counting", [True, False], ids=["counting", "integrating"])
def test_planted_bad_pixels_have_their_type_statistics(counting):
    noise = NoiseParams(flat_spread=0.0, gain_spread=0.0, read_noise=2.0)
    params = BadPixelParams(bad_fraction=0.08)
    types, response = plant_bad_pixels(_response(counting, noise), params, np.random.default_rng(2))
    counts = {name: int((types == code).sum()) for name, code in DEFECT_TYPES.items()}
    assert sum(counts.values()) == round(0.08 * types.size) and min(counts.values()) > 60
    gain = 1.0 if counting else noise.gain
    pedestal = response.pedestal[None]
    dark = (record_frames(np.zeros((200, *SHAPE), np.float32), response, 1, 0, np.float64) - pedestal) / gain
    flat = (record_frames(np.full((100, *SHAPE), 400.0, np.float32), response, 1, 1000, np.float64)
            - pedestal) / gain
    mean, std, flat_mean = dark.mean(0), dark.std(0), flat.mean(0)
    read = 0.0 if counting else noise.read_noise / gain

    def of(name):
        return types == DEFECT_TYPES[name]
    good = types == 0
    assert np.all(np.abs(mean[good]) < 0.5) and np.all(std[good] < read + 0.2)
    assert np.all(np.abs(flat_mean[good] / 400 - 1) < 0.02)
    assert np.all(flat_mean[of("dead")] < 0.5) and np.all(np.abs(mean[of("dead")]) < 0.5)
    assert np.all(np.abs(mean[of("hot")] / params.hot_rate - 1) < 0.1)
    assert np.all(np.abs(std[of("noisy")] / np.hypot(params.noisy_sigma, read) - 1) < 0.25) if not counting else \
        np.all(std[of("noisy")] > 0.5 * params.noisy_sigma)  # counts are clipped at 0: a skewed, still wide spread
    assert np.all(np.abs(np.abs(mean[of("offset")]) - params.offset) < 1.0 + 0.5 * counting * params.offset)
    bimodal = dark[:, of("bimodal")]
    high = bimodal > params.bimodal_offset / 2
    assert np.all(np.abs(high.mean(0) - 0.5) < 0.15)  # a random half of the frames
    assert np.all(np.abs(bimodal[high].mean() - params.bimodal_offset) < 1.0)
    assert np.all(std[of("stuck")] == 0) and np.all(dark[0][of("stuck")] == flat[0][of("stuck")])
    assert np.all(np.abs(flat_mean[of("under")] / 400 - (1 - params.under_loss)) < 0.03)
    assert np.all(np.abs(flat_mean[of("over")] / 400 - (1 + params.over_gain)) < 0.03)
