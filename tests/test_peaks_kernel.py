"""engine.peaks on synthetic frames whose background profile is known exactly.

The frames are Gaussian spots (integrated over each pixel with erf, so the expected counts are exact) on a
radial background; ``pre``, ``binning`` and ``profile`` are built from that known background, which makes the
expected peaks, centroids and intensities an independent reference for the kernel alone.  The full chain
(preprocess + sigma-clipping + peaks) is tested in test_peaks_pipeline.py.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import erf

from braggsieve.engine.peaks import PeakParams, find_peaks
from braggsieve.errors import ParameterError

NY, NX = 160, 180
NBINS = 60


def _spot_image(rows, cols, photons, sigma=1.0, shape=(NY, NX)):
    """Expected photons per pixel of Gaussian spots (pixel i spans [i - 0.5, i + 0.5))."""
    image = np.zeros(shape)
    for r, c, p in zip(rows, cols, photons):
        i0, j0 = int(round(r)), int(round(c))
        ii = np.arange(max(i0 - 6, 0), min(i0 + 7, shape[0]))
        jj = np.arange(max(j0 - 6, 0), min(j0 + 7, shape[1]))
        fr = 0.5 * (erf((ii + 0.5 - r) / (np.sqrt(2) * sigma)) - erf((ii - 0.5 - r) / (np.sqrt(2) * sigma)))
        fc = 0.5 * (erf((jj + 0.5 - c) / (np.sqrt(2) * sigma)) - erf((jj - 0.5 - c) / (np.sqrt(2) * sigma)))
        image[np.ix_(ii, jj)] += p * np.outer(fr, fc)
    return image


class Scene:
    """A radial background bg(r) = 4 + 20 exp(-r / 60) photons, a norm map and spots; ``frames`` are raw counts
    (photons x gain x norm, Poisson unless ``noiseless``)."""

    def __init__(self, rows, cols, photons, nframes=1, gain=1.0, seed=0, noiseless=False, sigma=1.0):
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:NY, 0:NX]
        self.radius = np.hypot(yy - 10.3, xx - 15.7).astype(np.float32)
        self.norm = (0.9 + 0.1 * np.cos(xx / 90.0) * np.cos(yy / 80.0)).astype(np.float32)
        edges = np.linspace(0, float(self.radius.max()) + 1e-3, NBINS + 1)
        self.radial = 0.5 * (edges[1:] + edges[:-1])
        self.bg_profile = 4 + 20 * np.exp(-self.radial / 60)
        bg_pixels = np.interp(self.radius, self.radial, self.bg_profile)
        self.spots = _spot_image(rows, cols, photons, sigma)
        self.expected = (bg_pixels + self.spots) * self.norm  # photons per pixel
        self.gain = gain
        lam = np.broadcast_to(self.expected, (nframes, NY, NX))
        counts = lam if noiseless else rng.poisson(lam)
        self.frames = (counts * gain).astype(np.float32)

    def inputs(self, frames=None, variance=True):
        frames = self.frames if frames is None else frames
        signal = frames / self.gain
        n = signal.shape[0]
        pre = SimpleNamespace(signal=signal.astype(np.float32),
                              variance=np.maximum(signal, 1).astype(np.float32) if variance else None,
                              norm=self.norm)
        binning = SimpleNamespace(pixel_radius=self.radius, radial=self.radial,
                                  radial_range=(0.0, float(self.radius.max()) + 1e-3))
        # pixel std of v = signal/norm for Poisson photons: sqrt(bg * norm) / norm, taken at the mean norm
        std = np.sqrt(self.bg_profile / 0.9)
        profile = SimpleNamespace(mean=np.tile(self.bg_profile, (n, 1)), std=np.tile(std, (n, 1)),
                                  sem=np.tile(std / 100, (n, 1)))
        corrections = SimpleNamespace(gain=self.gain)
        return pre, binning, profile, corrections


def _find(inputs, params):
    pre, binning, profile, corrections = inputs
    return find_peaks(pre, binning, profile, params, corrections)


def _grid_spots(n=30, seed=1, margin=8):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.linspace(margin, NY - margin, 6), 5)[:n] + rng.uniform(-0.5, 0.5, n)
    cols = np.tile(np.linspace(margin, NX - margin, 5), 6)[:n] + rng.uniform(-0.5, 0.5, n)
    return rows, cols


def _match(peaks, rows, cols, frame=0, tol=2.0):
    """Indices of truth spots matched by a peak within ``tol`` px, the peak of each, and unmatched peaks."""
    a, b = peaks.frame_ptr[frame], peaks.frame_ptr[frame + 1]
    pr, pc = peaks.row[a:b], peaks.col[a:b]
    d = np.hypot(pr[:, None] - rows[None, :], pc[:, None] - cols[None, :])
    best = d.argmin(axis=1) if len(pr) else np.zeros(0, int)
    ok = d[np.arange(len(pr)), best] <= tol if len(pr) else np.zeros(0, bool)
    return best[ok], np.flatnonzero(ok) + a, np.flatnonzero(~ok) + a


def test_finds_every_spot_with_accurate_centroids_and_no_false_peak():
    rows, cols = _grid_spots()
    photons = np.linspace(500, 3000, len(rows))
    scene = Scene(rows, cols, photons, nframes=4, seed=3)
    peaks = _find(scene.inputs(), PeakParams())
    assert peaks.nframes == 4
    for f in range(4):
        truth, found, false = _match(peaks, rows, cols, f)
        assert len(false) == 0
        assert sorted(truth) == list(range(len(rows)))  # every spot, once
        err = np.hypot(peaks.row[found] - rows[truth], peaks.col[found] - cols[truth])
        assert np.sqrt(np.mean(err ** 2)) < 0.12


def test_noiseless_intensity_is_background_subtracted_counts_over_the_patch():
    """With gain and a varying norm, intensity = sum of the spot's detector counts over the 5x5 patch."""
    rows, cols = _grid_spots(12)
    photons = np.full(len(rows), 2000.0)
    scene = Scene(rows, cols, photons, gain=7.5, noiseless=True)
    peaks = _find(scene.inputs(), PeakParams(patch_size=5))
    truth, found, false = _match(peaks, rows, cols)
    assert len(false) == 0 and len(truth) == len(rows)
    spot_counts = scene.spots * scene.norm * scene.gain
    for t, p in zip(truth, found):
        i, j = divmod(int(peaks.index[p]), NX)
        expected = spot_counts[i - 2:i + 3, j - 2:j + 3].sum()
        np.testing.assert_allclose(peaks.intensity[p], expected, rtol=1e-4)
        np.testing.assert_allclose(peaks.maximum[p], spot_counts[i, j], rtol=1e-4)
        assert peaks.npix[p] == 25
        bg = np.interp(scene.radius[i, j], scene.radial, scene.bg_profile) * scene.norm[i, j] * scene.gain
        np.testing.assert_allclose(peaks.background[p], bg, rtol=1e-4)
        # the Gaussian-windowed centroid of a noiseless pixel-integrated Gaussian spot: at its centre (a plain
        # 5x5 centroid is biased towards the central pixel by up to 0.05 px here)
        assert abs(peaks.row[p] - rows[t]) < 0.01 and abs(peaks.col[p] - cols[t]) < 0.01


def test_sigma_matches_the_scatter_of_repeated_measurements():
    rows, cols = _grid_spots(20)
    photons = np.full(len(rows), 600.0)
    scene = Scene(rows, cols, photons, nframes=60, seed=5)
    peaks = _find(scene.inputs(), PeakParams(cutoff_peak=3.0))
    per_spot = [[] for _ in rows]
    sig = [[] for _ in rows]
    for f in range(peaks.nframes):
        truth, found, _ = _match(peaks, rows, cols, f)
        for t, p in zip(truth, found):
            per_spot[t].append(peaks.intensity[p])
            sig[t].append(peaks.sigma[p])
    ratio = [np.std(a) / np.mean(s) for a, s in zip(per_spot, sig) if len(a) > 40]
    assert len(ratio) >= 15
    assert 0.85 < np.median(ratio) < 1.15
    np.testing.assert_allclose(peaks.snr, peaks.intensity / peaks.sigma, rtol=1e-5)


def test_zingers_are_never_peaks():
    """Isolated bright pixels, also with an unrelated bright pixel two pixels away (which a count of candidates
    anywhere in the 5x5 patch, as pyFAI does, would accept as a peak)."""
    scene = Scene([], [], [], nframes=3, seed=7)
    frames = scene.frames.copy()
    rng = np.random.default_rng(2)
    zr, zc = (a.ravel() for a in np.mgrid[6:NY - 6:12, 6:NX - 6:12])
    zr = zr + rng.integers(-2, 3, zr.size)
    zc = zc + rng.integers(-2, 3, zc.size)
    frames[:, zr, zc] = 5000
    frames[:, zr[::2] + 2, zc[::2]] = 300  # a second bright pixel, not touching the zinger
    zr = np.concatenate([zr, zr[::2] + 2])  # the second pixels are single bright pixels too
    zc = np.concatenate([zc, zc[::2]])
    for params in (PeakParams(), PeakParams(patch_size=5, spread_snr=2.5), PeakParams(cutoff_peak=2.5)):
        peaks = _find(scene.inputs(frames), params)
        rows, cols = np.divmod(peaks.index, NX)
        distance = np.hypot(rows[:, None] - zr[None, :], cols[:, None] - zc[None, :]).min(axis=1)
        # at cut-off 2.5 noise makes peaks anywhere, also near zingers; a zinger is never one
        assert (distance > (0 if params.cutoff_peak < 3 else 2)).all(), params
        assert np.all(peaks.maximum < 1000)  # nor is it integrated into one
    # without the spread rules, zingers do come through
    peaks = _find(scene.inputs(frames), PeakParams(cutoff_peak=2.5, min_spread=0.0, spread_snr=0.0))
    rows, cols = np.divmod(peaks.index, NX)
    assert (np.hypot(rows[:, None] - zr[None, :], cols[:, None] - zc[None, :]).min(axis=1) == 0).sum() > 5


def test_a_zinger_next_to_a_spot_does_not_hide_it():
    rows, cols = _grid_spots(12, seed=3)
    scene = Scene(rows, cols, np.full(len(rows), 1500.0), seed=12)
    frames = scene.frames.copy()
    zr, zc = np.round(rows).astype(int), np.round(cols).astype(int) + 3  # in the 5x5 patch of each spot
    frames[:, zr, zc] = 8000
    peaks = _find(scene.inputs(frames), PeakParams())
    truth, found, false = _match(peaks, rows, cols, tol=0.5)
    assert sorted(truth) == list(range(len(rows))) and len(false) == 0


def test_sharp_spots_are_still_peaks():
    """Spots of rms width 0.3 px (most of the flux in one pixel) are not mistaken for zingers."""
    rows, cols = _grid_spots(30, seed=8)
    rows, cols = np.round(rows), np.round(cols)  # centred on a pixel: the sharpest case
    scene = Scene(rows, cols, np.full(len(rows), 3000.0), sigma=0.3, seed=9)
    peaks = _find(scene.inputs(), PeakParams())
    truth, _, false = _match(peaks, rows, cols)
    assert sorted(truth) == list(range(len(rows))) and len(false) == 0


def test_plateau_gives_one_peak():
    scene = Scene([], [], [], noiseless=True)
    scene.bg_profile = np.full(NBINS, 10.0)  # flat background and norm, so that v is exactly equal on the plateau
    scene.norm[:] = 1.0
    frames = np.full_like(scene.frames, 10.0)
    frames[0, 50:52, 60:62] = 900.0
    peaks = _find(scene.inputs(frames), PeakParams())
    assert peaks.npeaks.tolist() == [1]
    assert peaks.index[0] == 50 * NX + 60
    assert abs(peaks.row[0] - 50.5) < 1e-3 and abs(peaks.col[0] - 60.5) < 1e-3


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_peak_next_to_a_gap_is_kept_or_rejected_as_asked_whatever_the_noise(noise):
    rows, cols = np.array([40.2, 90.0]), np.array([61.3, 120.0])
    scene = Scene(rows, cols, [3000, 3000], seed=11)
    pre, binning, profile, corr = scene.inputs()
    pre.signal[:, :, 62] = np.nan  # a masked column next to the first spot
    binning.pixel_radius = binning.pixel_radius.copy()
    keep = find_peaks(pre, binning, profile, PeakParams(noise=noise), corr)
    truth, found, false = _match(keep, rows, cols)
    assert sorted(truth) == [0, 1] and len(false) == 0
    near = found[truth == 0][0]
    assert keep.npix[near] == 20  # the masked column is not integrated
    reject = find_peaks(pre, binning, profile, PeakParams(noise=noise, near_mask="reject"), corr)
    truth, _, _ = _match(reject, rows, cols)
    assert list(truth) == [1]


def test_frames_without_valid_pixels_have_no_peaks_and_batches_concatenate():
    rows, cols = _grid_spots(10)
    scene = Scene(rows, cols, np.full(10, 1500.0), nframes=3, seed=4)
    pre, binning, profile, corr = scene.inputs()
    pre.signal[1] = np.nan
    profile.mean[1] = np.nan
    profile.std[1] = np.nan
    batch = find_peaks(pre, binning, profile, PeakParams(), corr)
    assert batch.npeaks[1] == 0 and batch.npeaks[0] == 10 and batch.npeaks[2] == 10
    single = find_peaks(SimpleNamespace(signal=pre.signal[2:3], variance=pre.variance[2:3], norm=pre.norm),
                        binning, SimpleNamespace(mean=profile.mean[2], std=profile.std[2], sem=profile.sem[2]),
                        PeakParams(), corr)
    a, b = batch.frame_ptr[2], batch.frame_ptr[3]
    np.testing.assert_array_equal(single.index, batch.index[a:b])
    np.testing.assert_array_equal(single.intensity, batch.intensity[a:b])


def test_without_variance_the_bin_std_is_used():
    rows, cols = _grid_spots(10)
    scene = Scene(rows, cols, np.full(10, 1500.0), seed=4)
    with_var = _find(scene.inputs(), PeakParams())
    no_var = _find(scene.inputs(variance=False), PeakParams())
    np.testing.assert_array_equal(with_var.index, no_var.index)
    np.testing.assert_array_equal(with_var.intensity, no_var.intensity)
    # the bin std ignores the spot's own photons: smaller sigma than the per-pixel Poisson variance
    assert np.all(no_var.sigma < with_var.sigma)


def test_parameter_validation():
    for bad in (dict(cutoff_peak=0), dict(patch_size=4), dict(spread_snr=-1), dict(min_spread=1.0), dict(noise=-1),
                dict(near_mask="drop")):
        with pytest.raises(ParameterError):
            PeakParams(**bad)
