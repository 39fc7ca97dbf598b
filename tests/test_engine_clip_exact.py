"""The numba sigma-clip kernel (sums taken while gathering and while discarding outliers) gives, bit for bit,
the sums of a plain Python transcription of the algorithm of engine/integrate.py's docstring: pixels in CSR
order, one float64 addition at a time.  This pins the arithmetic that other backends must reproduce."""
from __future__ import annotations

import math

import numpy as np
import pytest

from braggsieve.engine.corrections import Preprocessed
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams, IntegrationParams


def _reference_sums(signal, variance, norm, binning, azimuthal, hybrid, cutoff, cycles):
    """(7, nbins) sums of the clipped pixels of one frame, in plain Python floats."""
    nbins = binning.nbins
    out = np.empty((7, nbins))
    scatter = azimuthal or hybrid
    for b in range(nbins):
        pixels = []
        for e in range(binning.indptr[b], binning.indptr[b + 1]):
            p = binning.indices[e]
            c = 1.0 if binning.coef is None else float(binning.coef[e])
            s, var = float(signal.flat[p]), float(variance.flat[p])
            if math.isnan(s) or math.isnan(var) or c == 0.0:
                continue
            nrm = float(norm.flat[p])
            pixels.append((s / nrm, c * nrm, c * c * var, c))

        def sums(kept):
            count = omega = omega2 = vsum = wsum = p = 0.0
            for value, w, cvar, c in kept:
                count += c
                omega += w
                omega2 += w * w
                vsum += value * w
                wsum += cvar
                p += w * w * value
            if binning.coef is None:
                count = float(len(kept))
            vv = 0.0 if scatter else math.nan
            if scatter and omega > 0:
                mean = vsum / omega
                for value, w, _, _ in kept:
                    vv += w * w * (value - mean) * (value - mean)
            return [count, vsum, wsum, omega, omega2, p, vv]

        acc = sums(pixels)
        for _ in range(cycles):
            count, vsum, wsum, omega, omega2, _, vv = acc
            if omega == 0.0 or count == 0.0:
                break
            mean = vsum / omega
            std = math.sqrt((vv if scatter else wsum) / omega2)
            limit = max(cutoff, math.sqrt(2.0 * math.log(max(3.0, count) / math.sqrt(2.0 * math.pi)))) * std
            kept = [q for q in pixels if not abs(q[0] - mean) > limit]
            if len(kept) == len(pixels):
                break
            pixels = kept
            acc = sums(pixels)
        out[:, b] = acc
    return out


@pytest.mark.parametrize("split", ["no", "bbox"])
@pytest.mark.parametrize("error_model", ["poisson", "azimuthal", "hybrid"])
def test_sigma_clip_sums_match_sequential_reference(split, error_model):
    rng = np.random.default_rng(5)
    ny, nx = 48, 56
    yy, xx = np.mgrid[0:ny, 0:nx]
    radius = np.hypot(yy - 20.3, xx - 25.7)
    mask = rng.random((ny, nx)) < 0.05
    signal = rng.poisson(30.0 * np.exp(-radius / 30.0) + 3.0, (2, ny, nx)).astype(np.float32)
    signal[:, rng.random((ny, nx)) < 0.02] += 500.0  # outliers for the clipping to discard
    signal[0, 3, 4] = np.nan  # invalid in one frame only
    norm = (0.8 + 0.4 * rng.random((ny, nx))).astype(np.float32)
    variance = np.maximum(signal, 1.0).astype(np.float32)
    params = IntegrationParams(bins=12, unit="r_mm", split=split, error_model=error_model)
    binning = build_binning(radius, params, mask=mask, radial_delta=np.full((ny, nx), 0.5))
    assert (binning.coef is None) == (split == "no")
    clip = ClipParams(cutoff_clip=2.0, cycles=4)

    profile = sigma_clip(Preprocessed(signal=signal, variance=variance, norm=norm), binning, error_model, clip)

    for f in range(2):
        ref = _reference_sums(signal[f], variance[f], norm, binning, error_model == "azimuthal",
                              error_model == "hybrid", clip.cutoff_clip, clip.cycles)
        count, vsum, wsum, omega, omega2, _, vv = ref
        spread = vv if error_model == "azimuthal" else wsum
        np.testing.assert_array_equal(profile.count[f], count)
        np.testing.assert_array_equal(profile.sum_signal[f], vsum)
        np.testing.assert_array_equal(profile.sum_norm[f], omega)
        np.testing.assert_array_equal(profile.sum_norm2[f], omega2)
        np.testing.assert_array_equal(profile.sum_variance[f], spread)
        assert (profile.count[f] < np.diff(binning.indptr)).any()  # the clipping discarded pixels
