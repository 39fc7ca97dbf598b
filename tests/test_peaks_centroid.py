"""engine.peaks centroids on noisy spots against the photon-noise limit (Cramer-Rao bound).

The bound is computed here, independently of the engine, from the Poisson Fisher information of each spot's
expected pixel counts (a Gaussian integrated over the pixels on the scene's known background, amplitude and
position unknown): no unbiased estimator's error can be smaller on average, and an estimator that wastes the
photons (a plain centroid, a window much narrower than the spot) is well above it.
"""
from __future__ import annotations

import numpy as np
from scipy.special import erf
from test_peaks_kernel import Scene, _find, _grid_spots, _match

from braggsieve.engine.peaks import PeakParams


def _cramer_rao(rows, cols, photons, sigma, background, half=6):
    """Cramer-Rao variance (row, col) px^2 of each spot: Poisson counts mu = photons x pixel-integrated
    Gaussian + background over a (2 half + 1)^2 box, parameters (amplitude, row, col)."""
    out = np.empty((len(rows), 2))
    for k, (r, c, n, b) in enumerate(zip(rows, cols, photons, background)):
        ii = np.arange(round(r) - half, round(r) + half + 1)
        jj = np.arange(round(c) - half, round(c) + half + 1)

        def axis(idx, centre):
            lo = (idx - 0.5 - centre) / (np.sqrt(2) * sigma)
            hi = (idx + 0.5 - centre) / (np.sqrt(2) * sigma)
            return 0.5 * (erf(hi) - erf(lo)), -(np.exp(-hi ** 2) - np.exp(-lo ** 2)) / (np.sqrt(2 * np.pi) * sigma)

        fr, dfr = axis(ii, r)
        fc, dfc = axis(jj, c)
        mu = n * np.outer(fr, fc) + b
        grads = [np.outer(fr, fc), n * np.outer(dfr, fc), n * np.outer(fr, dfc)]
        fisher = np.array([[(gi * gj / mu).sum() for gj in grads] for gi in grads])
        cov = np.linalg.inv(fisher)
        out[k] = cov[1, 1], cov[2, 2]
    return out


def test_centroid_error_is_close_to_the_photon_noise_limit():
    """Spots of 400 photons (rms 1 px) on 4-24 photons/pixel, 24 frames: RMS error within 1.12x the Cramer-Rao
    bound (measured 1.05x; the former 1-px window over the 5x5 box: 1.18x) and no bias."""
    rows, cols = _grid_spots()
    photons = np.full(len(rows), 400.0)
    scene = Scene(rows, cols, photons, nframes=24, seed=3)
    peaks = _find(scene.inputs(), PeakParams())
    errors = []
    for f in range(24):
        truth, _, _ = _match(peaks, rows, cols, frame=f)
        assert set(truth) == set(range(len(rows)))  # every spot found (a rare noise split adds a second peak)
        a, b = peaks.frame_ptr[f], peaks.frame_ptr[f + 1]
        d = np.hypot(peaks.row[a:b, None] - rows[None], peaks.col[a:b, None] - cols[None])
        nearest = a + d.argmin(axis=0)  # each spot's nearest peak
        errors.append(np.c_[peaks.row[nearest] - rows, peaks.col[nearest] - cols])
    errors = np.concatenate(errors)
    # background photons per pixel at each spot as the detector sees them (bg x norm: the scene's counts)
    ri, ci = np.round(rows).astype(int), np.round(cols).astype(int)
    background = (np.interp(scene.radius, scene.radial, scene.bg_profile) * scene.norm)[ri, ci]
    bound = _cramer_rao(rows, cols, photons * scene.norm[ri, ci], 1.0, background)
    rms = np.sqrt(np.mean(np.sum(errors ** 2, axis=1)))
    rms_bound = np.sqrt(np.mean(bound.sum(axis=1)))
    assert 0.95 * rms_bound < rms < 1.12 * rms_bound, (rms, rms_bound)
    assert np.all(np.abs(errors.mean(axis=0)) < 3 * errors.std(axis=0) / np.sqrt(len(errors)) + 0.005)
