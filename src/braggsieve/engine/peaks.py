"""Bragg-peak finding on top of the sigma-clipped background (DESIGN.md algorithm 6).

For every valid pixel the excess over the local background is, in normalised units (photons when a gain is
given),

    v = signal / norm - bg(r)          threshold t(r) = max(noise, cutoff_peak * sqrt(std(r)^2 + noise^2))

with ``bg`` and ``std`` the clipped mean and pixel standard deviation of the radial profile, interpolated
linearly in r between bin centres (clamped at the ends).  Pixels outside ``binning.radial_range``, masked or
invalid in this frame (NaN signal) have no ``v`` and are called *missing* below; so are patch positions
outside the image.

A pixel is a peak when
  1. ``v >= t(r)`` (it is a candidate);
  2. it is the maximum of ``v`` over the valid pixels of its ``patch_size`` x ``patch_size`` patch (ties go to
     the pixel with the lowest flat index, so a plateau gives exactly one peak);
  3. at least ``connected`` candidate pixels of the patch, itself included, form one 8-connected group with
     it.  Unlike pyFAI, which counts candidates anywhere in the patch, a candidate must touch the group:
     a zinger (one bright pixel) next to an unrelated noise pixel two pixels away is not a peak;
  4. it is not a zinger: its 8 valid neighbours hold, together, at least ``min_spread`` times its own excess
     (sum of their v).  A zinger that happens to touch a noise pixel above threshold passes rule 3 (at
     cut-off 3 this is ~1% of zingers) but not this one: its neighbours are background.  A Bragg spot of rms
     width 0.25 px centred on a pixel still puts 10% of its maximum into its neighbours; sharper spots are
     single-pixel events, indistinguishable from zingers.  Zingers are then ignored like missing pixels
     (rules 2, 3 and the integration), so a zinger near a spot does not hide it -- unless it sits on the
     spot's flank, where its neighbours are bright enough to pass the test;
  5. with ``near_mask="reject"``: no patch position is missing.  The default ``"keep"`` keeps peaks next to
     gaps and masked pixels, as long as rules 2-4 hold on the valid pixels alone (a missing pixel is never
     a candidate and never counts towards ``connected``), because on current detectors the pixels next to a
     gap are sound and dropping them loses the reflections that graze a module edge.  This choice is the
     same whatever ``noise`` is (pyFAI's rejection only fires when noise == 0).

Per peak, over the valid pixels of the patch (``npix`` of them):
  * intensity = sum of v * norm * gain: the background-subtracted counts in detector units (ADU for
    integrating detectors, counts for counting ones); norm and gain are undone pixel by pixel;
  * sigma = sqrt(sum var_p * gain^2 + (sum norm * gain)^2 * sem(r)^2), the pixel variances of the error
    model (photons^2, converted to counts^2) plus the uncertainty of the background level;
  * snr = intensity / sigma;
  * row, col: centroid weighted by max(v, 0) * norm (background-subtracted counts), pixel centres at integer
    indices;
  * maximum = v * norm * gain of the peak pixel; background = bg(r) * norm * gain at the peak pixel (counts
    per pixel); resolution = d-spacing (Angstrom) of the pixel nearest the centroid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from ..errors import ParameterError
from ..params import option
from .records import PEAK_FIELDS, PeakList

NEAR_MASK = ("keep", "reject")


@dataclass(frozen=True)
class PeakParams:
    """Peak finding: threshold, patch and connectivity."""

    cutoff_peak: float = option(4.0, "a pixel is a peak candidate when its excess over the background is at "
                                "least K * sqrt(std(r)^2 + NOISE^2), std(r) being the clipped pixel standard "
                                "deviation of its radial bin", metavar="K")
    patch_size: int = option(5, "side of the square patch, in pixels (3 or 5), over which a peak must be the "
                             "local maximum; its pixels are also integrated", choices=(3, 5))
    connected: int = option(2, "a peak needs at least N candidate pixels (itself included) 8-connected to it "
                            "inside its patch; N >= 2 so that single bright pixels (zingers) are never peaks",
                            metavar="N")
    noise: float = option(1.0, "noise floor in normalised units (photons with --gain): added in quadrature to "
                          "std(r), and the minimum excess of a candidate")
    min_spread: float = option(0.05, "the 8 neighbours of a peak's maximum pixel must hold together at least "
                               "this fraction of its excess (0 disables): rejects zingers that touch a noise "
                               "pixel", metavar="F")
    near_mask: str = option("keep", "peaks whose patch touches a masked pixel, a gap or the image border: keep "
                            "(judged on their valid pixels) or reject", choices=NEAR_MASK)

    def __post_init__(self):
        if not self.cutoff_peak > 0:
            raise ParameterError(f"--cutoff-peak must be positive, got {self.cutoff_peak}")
        if self.patch_size not in (3, 5):
            raise ParameterError(f"--patch-size must be 3 or 5, got {self.patch_size}")
        if not 2 <= self.connected <= self.patch_size ** 2:
            raise ParameterError(f"--connected must be between 2 and {self.patch_size ** 2} (a single pixel is "
                                 f"never a peak), got {self.connected}")
        if self.noise < 0:
            raise ParameterError(f"--noise must be >= 0, got {self.noise}")
        if not 0 <= self.min_spread < 1:
            raise ParameterError(f"--min-spread must be in [0, 1), got {self.min_spread}")
        if self.near_mask not in NEAR_MASK:
            raise ParameterError(f"--near-mask must be one of {', '.join(NEAR_MASK)}, got {self.near_mask!r}")


# Columns of the per-peak float output of the kernel, in this order.
_ROW, _COL, _INT, _SIG, _MAX, _BG, _RES = range(7)


@nb.njit(cache=True, inline="always")
def _interp(table, frame, fpos, nbins):
    """Linear interpolation of ``table[frame, :]`` at fractional bin position ``fpos``, clamped at the ends."""
    if fpos <= 0.0:
        return table[frame, 0]
    if fpos >= nbins - 1:
        return table[frame, nbins - 1]
    i0 = int(fpos)
    w = fpos - i0
    return table[frame, i0] * (1.0 - w) + table[frame, i0 + 1] * w


@nb.njit(cache=True, parallel=True)
def _excess(signal, norm, radius, r0, step, r_lo, r_hi, bg, std, cutoff, noise, v_out, cand_out):
    """Fill ``v_out`` (n, ny, nx) float32 with the excess v (NaN where missing) and ``cand_out`` uint8 with
    1 for candidates."""
    n, ny, nx = signal.shape
    nbins = bg.shape[1]
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        for j in range(nx):
            r = radius[i, j]
            s = signal[f, i, j]
            v = np.nan
            c = 0
            if r >= r_lo and r <= r_hi and np.isfinite(s) and norm[i, j] > 0:
                fpos = (r - r0) / step if step > 0 else 0.0
                b = _interp(bg, f, fpos, nbins)
                sd = _interp(std, f, fpos, nbins)
                if np.isfinite(b) and np.isfinite(sd):
                    v = s / norm[i, j] - b
                    t = max(noise, cutoff * np.sqrt(sd * sd + noise * noise))
                    if v >= t:
                        c = 1
            v_out[f, i, j] = v
            cand_out[f, i, j] = c


@nb.njit(cache=True, parallel=True)
def _flag_zingers(v, cand, min_spread):
    """Rule 4: mark candidates whose 8 valid neighbours hold less than ``min_spread`` of their excess as
    zingers (``cand = 2``); reads only ``v``, so rows may be done in any order."""
    n, ny, nx = v.shape
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        for j in range(nx):
            if cand[f, i, j] != 1:
                continue
            spread = 0.0
            for ii in range(max(i - 1, 0), min(i + 2, ny)):
                for jj in range(max(j - 1, 0), min(j + 2, nx)):
                    if (ii != i or jj != j) and np.isfinite(v[f, ii, jj]):
                        spread += v[f, ii, jj]
            if spread < min_spread * v[f, i, j]:
                cand[f, i, j] = 2


@nb.njit(cache=True, inline="always")
def _usable(v, cand, f, i, j):
    """A pixel that takes part in peaks: valid (finite v) and not a zinger."""
    return np.isfinite(v[f, i, j]) and cand[f, i, j] != 2


@nb.njit(cache=True, inline="always")
def _is_peak(v, cand, f, i, j, half, connected, reject_near_mask):
    """Rules 2, 3 and 5 of the module docstring for candidate (f, i, j) (rule 4 is in ``cand``)."""
    n, ny, nx = v.shape
    v0 = v[f, i, j]
    size = 2 * half + 1
    group = np.zeros((size, size), dtype=np.uint8)  # 1 = candidate, 2 = candidate joined to the group
    for di in range(-half, half + 1):
        ii = i + di
        for dj in range(-half, half + 1):
            jj = j + dj
            if ii < 0 or ii >= ny or jj < 0 or jj >= nx or not np.isfinite(v[f, ii, jj]):
                if reject_near_mask:
                    return False
                continue
            if cand[f, ii, jj] == 2:  # a zinger neither competes nor counts
                continue
            vq = v[f, ii, jj]
            if vq > v0 or (vq == v0 and (di < 0 or (di == 0 and dj < 0))):
                return False
            if cand[f, ii, jj] == 1:
                group[di + half, dj + half] = 1
    group[half, half] = 2
    count = 1
    grew = True
    while grew and count < connected:  # grow the 8-connected group from the centre, inside the patch
        grew = False
        for a in range(size):
            for b in range(size):
                if group[a, b] != 1:
                    continue
                touches = False
                for aa in range(max(a - 1, 0), min(a + 2, size)):
                    for bb in range(max(b - 1, 0), min(b + 2, size)):
                        if group[aa, bb] == 2:
                            touches = True
                if touches:
                    group[a, b] = 2
                    count += 1
                    grew = True
    return count >= connected


@nb.njit(cache=True, parallel=True)
def _count_peaks(v, cand, half, connected, reject_near_mask, counts):
    """Number of peaks in each row of each frame: ``counts[f * ny + i]``."""
    n, ny, nx = v.shape
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        c = 0
        for j in range(nx):
            if cand[f, i, j] == 1 and _is_peak(v, cand, f, i, j, half, connected, reject_near_mask):
                c += 1
        counts[k] = c


@nb.njit(cache=True, parallel=True)
def _measure_peaks(v, cand, variance, norm, gain, radius, r0, step, bg, std, sem, dspacing, half, connected,
                   reject_near_mask, offsets, out_float, out_npix, out_index):
    """Measure every peak (module docstring); row ``k`` of the batch writes its peaks from ``offsets[k]`` on.

    ``variance`` is (n, ny, nx) photons^2 or (0, 0, 0) to use the bin's pixel std instead; ``gain`` is (ny, nx)
    or (1, 1); ``dspacing`` is (ny, nx) Angstrom or (1, 1) for none.
    """
    n, ny, nx = v.shape
    nbins = bg.shape[1]
    gain_map = gain.shape[0] > 1
    have_variance = variance.shape[0] > 0
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        p = offsets[k]
        for j in range(nx):
            if not (cand[f, i, j] == 1 and _is_peak(v, cand, f, i, j, half, connected, reject_near_mask)):
                continue
            total = 0.0
            var = 0.0
            scale_sum = 0.0
            wsum = 0.0
            wi = 0.0
            wj = 0.0
            npix = 0
            for ii in range(max(i - half, 0), min(i + half + 1, ny)):
                for jj in range(max(j - half, 0), min(j + half + 1, nx)):
                    if not _usable(v, cand, f, ii, jj):
                        continue
                    vq = v[f, ii, jj]
                    g = gain[ii, jj] if gain_map else gain[0, 0]
                    scale = np.float64(norm[ii, jj]) * g
                    total += vq * scale
                    scale_sum += scale
                    if have_variance:
                        var += np.float64(variance[f, ii, jj]) * g * g
                    else:
                        sd = _interp(std, f, (radius[ii, jj] - r0) / step if step > 0 else 0.0, nbins)
                        var += sd * sd * scale * scale
                    if vq > 0:
                        w = vq * scale
                        wsum += w
                        wi += w * ii
                        wj += w * jj
                    npix += 1
            fpos = (radius[i, j] - r0) / step if step > 0 else 0.0
            s_bg = _interp(sem, f, fpos, nbins)
            var += scale_sum * scale_sum * s_bg * s_bg
            g0 = gain[i, j] if gain_map else gain[0, 0]
            row = wi / wsum
            col = wj / wsum
            out_float[p, _ROW] = row
            out_float[p, _COL] = col
            out_float[p, _INT] = total
            out_float[p, _SIG] = np.sqrt(var)
            out_float[p, _MAX] = v[f, i, j] * norm[i, j] * g0
            out_float[p, _BG] = _interp(bg, f, fpos, nbins) * norm[i, j] * g0
            if dspacing.shape[0] > 1:
                out_float[p, _RES] = dspacing[min(max(int(np.floor(row + 0.5)), 0), ny - 1),
                                              min(max(int(np.floor(col + 0.5)), 0), nx - 1)]
            else:
                out_float[p, _RES] = np.nan
            out_npix[p] = npix
            out_index[p] = i * nx + j
            p += 1


def _as_batch(table: np.ndarray) -> np.ndarray:
    """A per-bin profile array as float64 (nframes, nbins)."""
    table = np.asarray(table, dtype=np.float64)
    return table[None, :] if table.ndim == 1 else np.ascontiguousarray(table)


def find_peaks(pre, binning, profile, params: PeakParams, corrections, d_spacing: np.ndarray | None = None
               ) -> PeakList:
    """Find the Bragg peaks of a batch of preprocessed frames (algorithm in the module docstring).

    Args:
        pre: ``Preprocessed`` of the batch: ``signal`` float32 (n, ny, nx) photons (NaN = invalid), ``variance``
            float32 (n, ny, nx) photons^2 or None, ``norm`` float32 (ny, nx).
        binning: ``RadialBinning``: ``pixel_radius`` (ny, nx) (NaN = masked), ``radial`` bin centres (uniform),
            ``radial_range``.
        profile: the sigma-clipped ``RadialProfile`` of the same batch: ``mean``, ``std``, ``sem`` (n, nbins) or
            (nbins,) in normalised units.
        params: :class:`PeakParams`.
        corrections: ``Corrections`` (its ``gain``, ADU per photon, scalar or (ny, nx), converts to counts).
        d_spacing: optional (ny, nx) map in Angstrom for the ``resolution`` field (NaN without it).

    Returns:
        :class:`~braggsieve.engine.records.PeakList` with peaks ordered by frame, then by the flat index of
        their maximum pixel.  Frames with no valid pixel (NaN profile) have no peak.
    """
    signal = np.asarray(pre.signal)
    if signal.ndim == 2:
        signal = signal[None]
    n, ny, nx = signal.shape
    if binning.pixel_radius.shape != (ny, nx):
        raise ParameterError(f"frames of shape {(ny, nx)} do not match the binning's {binning.pixel_radius.shape}")
    bg, std, sem = (_as_batch(a) for a in (profile.mean, profile.std, profile.sem))
    if bg.shape[0] != n:
        raise ParameterError(f"profile has {bg.shape[0]} frames, the batch {n}")
    radial = np.asarray(binning.radial, dtype=np.float64)
    step = float(radial[1] - radial[0]) if len(radial) > 1 else 0.0
    r_lo, r_hi = (float(x) for x in binning.radial_range)
    norm = np.ascontiguousarray(pre.norm, dtype=np.float32)
    radius = np.ascontiguousarray(binning.pixel_radius, dtype=np.float32)
    gain = np.asarray(getattr(corrections, "gain", 1.0), dtype=np.float64)
    gain = gain.reshape(1, 1) if gain.ndim == 0 else np.ascontiguousarray(gain)
    variance = pre.variance
    variance = (np.zeros((0, 0, 0), np.float32) if variance is None
                else np.ascontiguousarray(variance, dtype=np.float32).reshape(n, ny, nx))
    dspacing = (np.full((1, 1), np.nan) if d_spacing is None
                else np.ascontiguousarray(d_spacing, dtype=np.float64))
    signal = np.ascontiguousarray(signal, dtype=np.float32)

    v = np.empty((n, ny, nx), np.float32)
    cand = np.empty((n, ny, nx), np.uint8)
    _excess(signal, norm, radius, float(radial[0]), step, r_lo, r_hi, bg, std, float(params.cutoff_peak),
            float(params.noise), v, cand)
    half = params.patch_size // 2
    reject = params.near_mask == "reject"
    counts = np.empty(n * ny, np.int64)
    _flag_zingers(v, cand, float(params.min_spread))
    _count_peaks(v, cand, half, params.connected, reject, counts)
    offsets = np.zeros(n * ny + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    out_float = np.empty((total, 7), np.float64)
    out_npix = np.empty(total, np.int32)
    out_index = np.empty(total, np.int64)
    _measure_peaks(v, cand, variance, norm, gain, radius, float(radial[0]), step, bg, std, sem, dspacing, half,
                   params.connected, reject, offsets, out_float, out_npix, out_index)
    intensity = out_float[:, _INT]
    sigma = out_float[:, _SIG]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(sigma > 0, intensity / sigma, 0.0)
    fields = {"row": out_float[:, _ROW], "col": out_float[:, _COL], "intensity": intensity, "sigma": sigma,
              "snr": snr, "npix": out_npix, "maximum": out_float[:, _MAX], "background": out_float[:, _BG],
              "resolution": out_float[:, _RES], "index": out_index}
    return PeakList(frame_ptr=offsets[::ny].copy(),
                    **{name: np.ascontiguousarray(fields[name], dtype=dtype) for name, dtype in PEAK_FIELDS.items()})
