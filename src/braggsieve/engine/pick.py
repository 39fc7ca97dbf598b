"""Picking: keep the pixels that stand above the clipped background (Kieffer et al. 2025, section 3).

A pixel of frame ``f`` at radial position ``r`` (its centre, in the binning's unit) is kept when

    signal / norm - bg_f(r)  >  max(noise, cutoff_pick * sqrt(std_f(r)**2 + noise**2))

with ``bg_f`` and ``std_f`` the clipped mean and pixel standard deviation of the radial profile (normalised
units), interpolated linearly in ``r`` between bin centres and clamped to the first/last bin, and ``r`` inside
``binning.radial_range``.  With ``cutoff_spot`` S > 0, the 8 neighbours (valid, inside the range) of every pixel
whose excess exceeds ``S * sqrt(std_f(r)**2 + noise**2)`` are kept too: the faint wings of Bragg spots, which
lie below the picking threshold, would otherwise be replaced by background on densification and the spots'
integrated intensities would shrink.  Pixels that the preprocessing invalidated for this frame only because they reached
the saturation cut-off are kept too (their raw value is stored), so that densified frames still show the
overloads of the strongest reflections instead of a hole filled with background.

What is stored per kept pixel is the raw value minus the dark (rounded half up and clamped to the range of an
integer dtype), in the input's dtype, as pyFAI's sparsify-Bragg does.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numba
import numpy as np

from ..errors import ParameterError
from ..params import option
from .records import RadialProfile, SparseFrames


@dataclass(frozen=True)
class PickParams:
    """Picking of the Bragg pixels kept by sparsify."""

    cutoff_pick: float = option(2.0, "keep a pixel when it exceeds the background by more than K times "
                                "sqrt(std^2 + noise^2) (std: the background's pixel standard deviation, normalised "
                                "units)", metavar="K")
    noise: float = option(1.0, "noise floor added in quadrature to the background std, in normalised units "
                          "(photons for a counting detector); a kept pixel always exceeds the background by at "
                          "least NOISE")

    cutoff_spot: float = option(0.0, "also keep the 8 neighbours of every pixel exceeding the background by more than "
                                "S times sqrt(std^2 + noise^2), so that the faint wings of Bragg spots survive "
                                "(0 = off; 4 costs about 20%% more pixels on simulated Eiger 4M hits, see docs/sparse.md)", metavar="S")

    def __post_init__(self):
        if self.cutoff_spot < 0:
            raise ParameterError(f"--cutoff-spot must be >= 0, got {self.cutoff_spot}")
        if self.cutoff_pick < 0:
            raise ParameterError(f"--cutoff-pick must be >= 0, got {self.cutoff_pick}")
        if self.noise < 0:
            raise ParameterError(f"--noise must be >= 0, got {self.noise}")


def filled_background(profile: RadialProfile) -> tuple[np.ndarray, np.ndarray]:
    """Background mean and std as float32 ``(nframes, nbins)``, empty bins (NaN) filled by linear interpolation
    from the neighbouring valid bins of the same frame (clamped at the ends; 0 for a frame without any)."""
    mean = np.atleast_2d(np.asarray(profile.mean, dtype=np.float64))
    std = np.atleast_2d(np.asarray(profile.std, dtype=np.float64))
    radial = np.asarray(profile.radial, dtype=np.float64)
    out_mean = np.zeros(mean.shape, np.float32)
    out_std = np.zeros(std.shape, np.float32)
    for f in range(mean.shape[0]):  # per frame, not per pixel: nbins values each
        valid = np.isfinite(mean[f]) & np.isfinite(std[f])
        if valid.all():
            out_mean[f], out_std[f] = mean[f], std[f]
        elif valid.any():
            out_mean[f] = np.interp(radial, radial[valid], mean[f, valid])
            out_std[f] = np.interp(radial, radial[valid], std[f, valid])
    return out_mean, out_std


@numba.njit(cache=True, parallel=True)
def _classify(signal, raw, norm, pixel_radius, r_lo, r_hi, r0, inv_step, bg, std, noise, cutoff, spot_cutoff,
              saturation):
    """uint8 (n, ny, nx): 0 = background, 1 = above the picking threshold (or overloaded), 2 = also above the
    spot threshold (its 8 neighbours are kept too).  bg and std are interpolated linearly between bin centres
    (clamped at the ends); sigma = sqrt(std^2 + noise^2)."""
    nframes, ny, nx = signal.shape
    last = bg.shape[1] - 1
    noise2 = noise * noise
    state = np.empty((nframes, ny, nx), np.uint8)
    for row in numba.prange(nframes * ny):
        f, i = row // ny, row % ny
        for j in range(nx):
            state[f, i, j] = 0
            r = pixel_radius[i, j]
            if not (r >= r_lo and r < r_hi):  # also false for NaN (statically masked)
                continue
            s = signal[f, i, j]
            if not np.isfinite(s):
                if raw[f, i, j] >= saturation:  # dynamically invalid: keep overloads only
                    state[f, i, j] = 2 if spot_cutoff > 0 else 1
                continue
            fpos = min(max((r - r0) * inv_step, 0.0), float(last))
            pos = min(int(fpos), max(last - 1, 0))
            frac = fpos - pos
            nxt = min(pos + 1, last)
            excess = s / norm[i, j] - ((1.0 - frac) * bg[f, pos] + frac * bg[f, nxt])
            if excess <= noise:
                continue
            sd = (1.0 - frac) * std[f, pos] + frac * std[f, nxt]
            sigma2 = sd * sd + noise2
            if excess * excess > cutoff * cutoff * sigma2:  # excess > cutoff * sigma, both positive
                spot = spot_cutoff > 0 and excess * excess > spot_cutoff * spot_cutoff * sigma2
                state[f, i, j] = 2 if spot else 1
    return state


@numba.njit(cache=True, inline="always")
def _is_kept(state, f, i, j, grow, pixel_radius, r_lo, r_hi):
    """Picked, or (with ``grow``) a valid pixel inside the range next to a spot pixel."""
    if state[f, i, j] > 0:
        return True
    if not grow:
        return False
    r = pixel_radius[i, j]
    if not (r >= r_lo and r < r_hi):
        return False
    ny, nx = state.shape[1], state.shape[2]
    for di in range(-1, 2):
        for dj in range(-1, 2):
            ii, jj = i + di, j + dj
            if 0 <= ii < ny and 0 <= jj < nx and state[f, ii, jj] == 2:
                return True
    return False


@numba.njit(cache=True, parallel=True)
def _count_rows(state, grow, pixel_radius, r_lo, r_hi):
    nframes, ny, nx = state.shape
    counts = np.zeros(nframes * ny, np.int64)
    for row in numba.prange(nframes * ny):
        f, i = row // ny, row % ny
        c = 0
        for j in range(nx):
            if _is_kept(state, f, i, j, grow, pixel_radius, r_lo, r_hi):
                c += 1
        counts[row] = c
    return counts


@numba.njit(cache=True, parallel=True)
def _fill_rows(state, grow, pixel_radius, r_lo, r_hi, raw, dark, has_dark, row_start, index, intensity, is_integer,
               lo, hi):
    nframes, ny, nx = state.shape
    for row in numba.prange(nframes * ny):
        f, i = row // ny, row % ny
        k = row_start[row]
        for j in range(nx):
            if _is_kept(state, f, i, j, grow, pixel_radius, r_lo, r_hi):
                index[k] = i * nx + j
                if has_dark:
                    value = np.float64(raw[f, i, j]) - dark[i, j]
                    if is_integer:
                        value = min(max(np.floor(value + 0.5), lo), hi)
                    intensity[k] = value
                else:
                    intensity[k] = raw[f, i, j]
                k += 1


def pick_pixels(frames_raw: np.ndarray, pre, binning, profile: RadialProfile, params: PickParams,
                corrections) -> SparseFrames:
    """Keep the pixels above background of a batch of frames.

    Args:
        frames_raw: ``(n, ny, nx)`` (or ``(ny, nx)``) frames in the detector's raw dtype.
        pre: the engine's ``Preprocessed`` of these frames: ``signal`` float32 ``(n, ny, nx)`` (NaN = invalid)
            and ``norm`` float32 ``(ny, nx)``.
        binning: the ``RadialBinning`` (``pixel_radius``, ``radial``, ``radial_range``).
        profile: the clipped background of these frames (``mean``/``std`` ``(n, nbins)``, normalised units).
        params: :class:`PickParams`.
        corrections: the ``Corrections`` (``dark`` float32 or None, ``saturation`` or None).

    Returns:
        :class:`~braggsieve.engine.records.SparseFrames` with indices sorted within each frame and
        ``background_avg``/``background_std`` the (gap-filled) background used for picking.
    """
    raw = frames_raw[None] if frames_raw.ndim == 2 else frames_raw
    signal = pre.signal[None] if pre.signal.ndim == 2 else pre.signal
    nframes, ny, nx = raw.shape
    if signal.shape != raw.shape or binning.pixel_radius.shape != (ny, nx):
        raise ParameterError(f"pick_pixels: frames {raw.shape}, signal {signal.shape} and binning "
                             f"{binning.pixel_radius.shape} disagree")
    bg, std = filled_background(profile)
    radial = np.asarray(binning.radial, dtype=np.float64)
    step = radial[1] - radial[0] if len(radial) > 1 else 1.0
    r_lo, r_hi = (float(v) for v in binning.radial_range)
    saturation = corrections.saturation
    saturation = np.inf if saturation is None else float(saturation)
    norm = np.ascontiguousarray(pre.norm, dtype=np.float32)
    if norm.ndim == 0:
        norm = np.full((ny, nx), norm, np.float32)
    pixel_radius = np.ascontiguousarray(binning.pixel_radius, dtype=np.float32)
    state = _classify(signal, raw, norm, pixel_radius, r_lo, r_hi, float(radial[0]), 1.0 / step,
                      bg.astype(np.float64), std.astype(np.float64), float(params.noise), float(params.cutoff_pick),
                      float(params.cutoff_spot), saturation)
    grow = params.cutoff_spot > 0
    counts = _count_rows(state, grow, pixel_radius, r_lo, r_hi)
    row_start = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=row_start[1:])
    total = int(row_start[-1])
    out_dtype = raw.dtype
    if out_dtype.itemsize == 8 and out_dtype.kind in "iu":  # as pyFAI: 64-bit integers are stored on 32 bits
        out_dtype = np.dtype(np.int32 if out_dtype.kind == "i" else np.uint32)
    index = np.empty(total, np.uint32)
    intensity = np.empty(total, out_dtype)
    dark = corrections.dark
    has_dark = dark is not None
    dark_arr = np.ascontiguousarray(dark, dtype=np.float32) if has_dark else np.zeros((1, 1), np.float32)
    is_integer = out_dtype.kind in "iu"
    lo, hi = ((float(np.iinfo(out_dtype).min), float(np.iinfo(out_dtype).max)) if is_integer else (0.0, 0.0))
    _fill_rows(state, grow, pixel_radius, r_lo, r_hi, raw, dark_arr, has_dark, row_start, index, intensity, is_integer, lo, hi)
    frame_ptr = row_start[::ny].copy()
    return SparseFrames(frame_ptr=frame_ptr, index=index, intensity=intensity, background_avg=bg,
                        background_std=std, radial=radial, unit=binning.unit)


def quantise_intensities(sparse: SparseFrames, fraction: float, gain=1.0) -> SparseFrames:
    """Noise-aware lossy rounding of the stored intensities (an option beyond pyFAI).

    Each stored value I (detector units) is rounded to the nearest multiple (ties to even) of the largest power of two
    ``step <= fraction * sigma``, with ``sigma = sqrt(max(I, 1) * gain)`` the pixel's own Poisson noise in
    detector units (``gain`` in ADU per photon, a scalar or a ``(ny, nx)`` map, 1 for counting detectors); a step below 1 means no rounding.
    The rounding error's variance, at most ``step**2 / 12 <= fraction**2 / 12`` of the pixel's Poisson
    variance, is negligible next to it for fraction <= 1; low bits that are zero in whole blocks of values
    compress to nothing under bitshuffle.  Values stay in their dtype, so FabIO reads the file unchanged.
    """
    if fraction < 0:
        raise ParameterError(f"quantisation fraction must be >= 0, got {fraction}")
    if fraction == 0 or len(sparse.intensity) == 0:
        return sparse
    values = sparse.intensity.astype(np.float64)
    gain = np.asarray(gain, dtype=np.float64)
    if gain.ndim == 2:  # per-pixel gain map
        gain = gain.ravel()[sparse.index]
    sigma = np.sqrt(np.maximum(values, 1.0) * gain)
    step = np.exp2(np.floor(np.log2(np.maximum(fraction * sigma, 1.0))))
    rounded = np.rint(values / step) * step  # ties to even: half up would bias integers by +1/2
    if sparse.intensity.dtype.kind in "iu":
        info = np.iinfo(sparse.intensity.dtype)
        rounded = np.clip(rounded, info.min, info.max)
    return replace(sparse, intensity=rounded.astype(sparse.intensity.dtype))
