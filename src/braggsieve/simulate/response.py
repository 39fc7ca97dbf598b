"""Detector response: expected photons -> recorded raw values, with counting or integrating noise and defects.

Model of one pixel in one frame (``lam`` = expected photons reaching the pixel)::

    photons = Poisson(response * lam + extra_rate)
    value   = gain * photons + pedestal + offset [+ toggle_offset in a random half of the frames]
              + Normal(0, read_noise^2 + extra_sigma^2)

then rounded and clipped to the raw dtype's range; gap pixels get the detector's marker.  A counting detector
(Eiger, Pilatus) has gain 1, no pedestal and no read noise, so a normal pixel records exactly Poisson(lam); an
integrating detector (JUNGFRAU, AGIPD, CSPAD) records ADU: gain ADU per photon on top of a per-pixel pedestal
with Gaussian read noise.  ``response`` is the flat-field efficiency (1 = nominal, 0 = dead); defects (hot,
noisy, offset, bimodal, stuck pixels) are few, so their extra terms are stored sparsely.

Random numbers come from :mod:`braggsieve.engine.rng` keyed by (seed, frame, pixel): reproducible bitwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from .params import NoiseParams
from ..engine.rng import STREAM_NOISE, next_normal, next_poisson, next_uniform, pixel_state, stream_key

@dataclass(frozen=True)
class PixelResponse:
    """Static per-pixel response of a simulated detector (shapes ``(ny, nx)`` unless said otherwise).

    Attributes:
        response: float32, flat-field efficiency (1 nominal; 0 dead or stuck).
        gain: float32, ADU per photon (1 for counting detectors).
        pedestal: float32, dark offset in ADU (0 for counting detectors).
        read_noise: Gaussian read noise std in ADU (0 for counting detectors).
        gap: bool, True on module gaps (recorded as ``marker``).
        marker: raw value written on gap pixels.
        defect_index: int64 ``(ndefects,)`` flat indices of defective pixels (sorted).
        extra_rate: float32 ``(ndefects,)`` extra photons per frame (hot pixels).
        offset: float32 ``(ndefects,)`` constant extra ADU/counts (offset outliers, stuck value).
        toggle_offset: float32 ``(ndefects,)`` extra ADU/counts added in a random half of the frames (bimodal).
        extra_sigma: float32 ``(ndefects,)`` extra Gaussian noise std in ADU/counts (noisy pixels).
        stuck_value: float32 ``(ndefects,)`` raw value a stuck pixel always records; NaN for other defects.
    """

    response: np.ndarray
    gain: np.ndarray
    pedestal: np.ndarray
    read_noise: float
    gap: np.ndarray
    marker: float
    defect_index: np.ndarray
    extra_rate: np.ndarray
    offset: np.ndarray
    toggle_offset: np.ndarray
    extra_sigma: np.ndarray
    stuck_value: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.response.shape

    def dark_variance(self) -> np.ndarray:
        """Expected variance of a dark frame in ADU^2, float32 ``(ny, nx)`` (read noise + noisy pixels)."""
        var = np.full(self.shape, self.read_noise ** 2, np.float32)
        flat = var.reshape(-1)
        flat[self.defect_index] += self.extra_sigma ** 2
        return var


def nominal_response(shape: tuple[int, int], gap: np.ndarray, marker: float, noise: NoiseParams, counting: bool,
                     rng: np.random.Generator) -> PixelResponse:
    """A defect-free response: flat-field spread, and for integrating detectors gain and pedestal maps."""
    response = (1.0 + noise.flat_spread * rng.standard_normal(shape)).astype(np.float32)
    if counting:
        gain = np.ones(shape, np.float32)
        pedestal = np.zeros(shape, np.float32)
        read_noise = 0.0
    else:
        gain = (noise.gain * (1.0 + noise.gain_spread * rng.standard_normal(shape))).astype(np.float32)
        pedestal = (noise.pedestal + noise.pedestal_spread * rng.standard_normal(shape)).astype(np.float32)
        read_noise = noise.read_noise
    np.maximum(response, 0, out=response)
    empty_f = np.zeros(0, np.float32)
    return PixelResponse(response, gain, pedestal, float(read_noise), np.asarray(gap, bool), float(marker),
                         np.zeros(0, np.int64), empty_f, empty_f, empty_f, empty_f, empty_f)


@njit(cache=True)
def _record(lam, state, gain, pedestal, sigma, extra_rate, offset, toggle, lo, hi, integer):
    photons, state = next_poisson(lam + extra_rate, state)
    value = gain * photons + pedestal + offset
    if toggle != 0.0:
        u, state = next_uniform(state)
        if u < 0.5:
            value += toggle
    if sigma > 0.0:
        z, state = next_normal(state)
        value += sigma * z
    if integer:
        value = math.floor(value + 0.5)
    return min(max(value, lo), hi)


@njit(cache=True, parallel=True)
def _record_frame(expected, key, response, gain, pedestal, read_noise, gap, marker, defect_index, extra_rate,
                  offset, toggle_offset, extra_sigma, stuck_value, lo, hi, integer, counting, out):
    npix = expected.size
    for p in prange(npix):
        if gap[p]:
            out[p] = marker
        elif counting:  # gain 1, no pedestal, no read noise: skip reading those maps
            photons, _ = next_poisson(expected[p] * response[p], pixel_state(key, p))
            out[p] = min(photons, hi)
        else:
            out[p] = _record(expected[p] * response[p], pixel_state(key, p), gain[p], pedestal[p], read_noise,
                             0.0, 0.0, 0.0, lo, hi, integer)
    for i in prange(defect_index.size):
        p = defect_index[i]
        if gap[p]:
            continue
        if not math.isnan(stuck_value[i]):
            out[p] = min(max(stuck_value[i], lo), hi)
        else:
            sigma = math.sqrt(read_noise * read_noise + extra_sigma[i] * extra_sigma[i])
            out[p] = _record(expected[p] * response[p], pixel_state(key, p), gain[p], pedestal[p], sigma,
                             extra_rate[i], offset[i], toggle_offset[i], lo, hi, integer)


def record_frames(expected: np.ndarray, response: PixelResponse, seed: int, first_frame: int,
                  dtype: np.dtype, out: np.ndarray | None = None) -> np.ndarray:
    """Raw frames ``(n, ny, nx)`` of ``dtype`` recorded from expected photons ``(n, ny, nx)`` (float32).

    Frame ``i`` of the batch is frame ``first_frame + i`` of the run: its noise is keyed by (seed, that
    number), so batches of any size give the same frames.  Integer outputs are rounded and clipped to the
    dtype's range (the largest value is kept for the gap marker on unsigned detectors).
    """
    dtype = np.dtype(dtype)
    if out is None:
        out = np.empty(expected.shape, dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = float(info.min), float(info.max)
        if response.marker >= hi:  # keep the marker distinguishable from a saturated pixel
            hi = float(info.max) - 1.0
        integer = True
    else:
        lo, hi, integer = -np.inf, np.inf, False
    gap = response.gap.reshape(-1)
    counting = bool(response.read_noise == 0 and np.all(response.gain == 1) and not np.any(response.pedestal))
    for i in range(expected.shape[0]):
        _record_frame(np.ascontiguousarray(expected[i], dtype=np.float32).reshape(-1),
                      stream_key(seed, STREAM_NOISE, first_frame + i), response.response.reshape(-1),
                      response.gain.reshape(-1), response.pedestal.reshape(-1), float(response.read_noise), gap,
                      float(response.marker), response.defect_index, response.extra_rate, response.offset,
                      response.toggle_offset, response.extra_sigma, response.stuck_value, lo, hi, integer, counting,
                      out[i].reshape(-1))
    return out
