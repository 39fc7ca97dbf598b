"""Bragg-peak finding on top of the sigma-clipped background (DESIGN.md algorithm 6, with a 3x3 detection).

For every valid pixel the excess over the local background and its noise are, in normalised units (photons
when a gain is given),

    v = signal / norm - bg(r)          sigma_p^2 = std(r)^2 + noise^2

with ``bg`` and ``std`` the clipped mean and pixel standard deviation of the radial profile, interpolated
linearly in r between bin centres (clamped at the ends).  Pixels outside ``binning.radial_range``, masked or
invalid in this frame (NaN signal) have no ``v`` and are called *missing* below; so are patch positions
outside the image, and zingers once flagged.

1. Zingers.  A pixel with v >= cutoff_peak * sigma_p whose 8 valid neighbours hold, together, less than
   ``min_spread`` times its excess is a zinger: it is treated as missing from then on, so that it is never
   a peak and never hides or biases a Bragg spot nearby.  A Bragg spot of rms width 0.3 px centred on a
   pixel still puts 22% of its maximum into its neighbours (0.25 px: 10%, the limit of the default 0.1);
   sharper spots are single-pixel events, indistinguishable from zingers.
2. A pixel is a peak when
   a. it is the maximum of v over the valid pixels of its ``patch_size`` x ``patch_size`` patch (ties go to
      the lowest flat index, so a plateau gives one peak); when one of its 8 neighbours is missing the patch
      is 5x5, so that a spot split by a masked line or a gap one pixel wide is not found twice;
   b. the 3x3 box around it is a detection: B = sum of v >= cutoff_peak * sqrt(sum of sigma_p^2) over its
      valid pixels, plus (cutoff_peak^2 - 1) / 6 photons (divided by the pixel's norm): the Cornish-Fisher
      skewness term of a Poisson count, without which the Gaussian threshold lets through the upper tail of
      low backgrounds (1-2 photons per pixel), the main source of false peaks measured on simulated frames.  This is where braggsieve departs from the pixel-by-pixel rule of pyFAI and DESIGN.md
      ("a candidate pixel exceeds bg + n sigma, with >= connected such pixels in the patch"): a spot of rms
      width ~1 px puts only ~15% of its photons in its brightest pixel, so the box sum is about twice as
      sensitive; measured on simulated frames, recall for reflections of SNR >= 5 rose from 0.79 to the
      figures of docs/peaks.md at equal precision;
   c. its 8 neighbours on their own are significant: B - v >= max(min_spread * v, spread_snr * sqrt(sum of
      their sigma_p^2)).  A Bragg spot spreads over its neighbours, a zinger or hot pixel that escaped rule
      1 does not -- this replaces the ``connected`` count as the guard against single bright pixels;
   e. v >= cutoff_peak * sigma_p / 4: implied by b for any box whose noise is uniform within a factor 4/3
      (v is the box maximum), stated as a rule so that only these few pixels are examined further;
   d. with ``near_mask="reject"``: no patch position is missing.  The default ``"keep"`` keeps peaks next to
      gaps and masked pixels, judged on their valid pixels alone, because on current detectors the pixels
      next to a gap are sound and dropping them loses the reflections that graze a module edge; the same
      choice whatever ``noise`` is (pyFAI's rejection only fires when noise == 0).

Per peak:
  * intensity = sum over the valid pixels (``npix``) of the 5x5 box centred on the pixel nearest the centroid
    of v * norm * gain: background-subtracted
    counts in detector units (ADU for integrating detectors, counts for counting ones); norm and gain are
    undone pixel by pixel.  The box holds 95% of a spot of rms width 1 px and, centred on the centroid
    rather than on the brightest pixel, its content does not jump when noise moves the maximum;
  * sigma = sqrt(sum var_p * gain^2 + (sum norm * gain)^2 * sem(r)^2): the pixel variances of the error model
    (photons^2, converted to counts^2) plus the uncertainty of the background level; snr = intensity / sigma;
  * row, col: Gaussian-windowed centroid (window rms 1.3 px, over the valid pixels of the 7x7 box around the
    maximum, iterated to its fixed point from the centroid of the positive excess of the 5x5 box), pixel
    centres at integer indices; it is unbiased for symmetric spots and, unlike a plain centroid, weights down
    the noise of the outer pixels.  The window is wider than the spot on purpose: the fixed point's noise
    grows as (1 + sigma_spot^2 / sigma_window^2); measured on simulated spots of rms 0.5, 1.0 and 1.6 px
    (benchmarks/peaks_centroid.py, docs/peaks.md), 1.3 px is within 1.1-1.25x the Cramer-Rao bound on all;
  * maximum = v * norm * gain of the peak pixel; background = bg(r) * norm * gain there (counts per pixel);
    resolution = d-spacing (Angstrom) of the pixel nearest the centroid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from ..errors import ParameterError
from ..params import option
from .records import PEAK_FIELDS, PeakList
from .scratch import scratch

NEAR_MASK = ("keep", "reject")


@dataclass(frozen=True)
class PeakParams:
    """Peak finding: detection threshold, patch, zinger guards."""

    cutoff_peak: float = option(4.4, "a peak's 3x3 box must hold an excess over the background of at least K "
                                "times its noise, sqrt(sum of std(r)^2 + NOISE^2) over the box, std(r) being the "
                                "clipped pixel standard deviation of the radial bin", metavar="K")
    patch_size: int = option(3, "side of the square patch, in pixels (3 or 5), over which a peak must be the "
                             "local maximum", choices=(3, 5))
    spread_snr: float = option(3.0, "the 8 neighbours of a peak's maximum must on their own exceed S times their "
                               "noise: a Bragg spot spreads over its neighbours, a zinger or hot pixel does not",
                               metavar="S")
    min_spread: float = option(0.1, "a pixel whose 8 neighbours hold together less than this fraction of its "
                               "excess is a zinger, ignored like a masked pixel (0 disables)", metavar="F")
    noise: float = option(1.0, "noise floor in normalised units (photons with --gain), added in quadrature to "
                          "std(r)")
    near_mask: str = option("keep", "peaks whose patch touches a masked pixel, a gap or the image border: keep "
                            "(judged and integrated on their valid pixels) or reject", choices=NEAR_MASK)

    def __post_init__(self):
        if not self.cutoff_peak > 0:
            raise ParameterError(f"--cutoff-peak must be positive, got {self.cutoff_peak}")
        if self.patch_size not in (3, 5):
            raise ParameterError(f"--patch-size must be 3 or 5, got {self.patch_size}")
        if self.spread_snr < 0:
            raise ParameterError(f"--spread-snr must be >= 0, got {self.spread_snr}")
        if not 0 <= self.min_spread < 1:
            raise ParameterError(f"--min-spread must be in [0, 1), got {self.min_spread}")
        if self.noise < 0:
            raise ParameterError(f"--noise must be >= 0, got {self.noise}")
        if self.near_mask not in NEAR_MASK:
            raise ParameterError(f"--near-mask must be one of {', '.join(NEAR_MASK)}, got {self.near_mask!r}")


# Columns of the per-peak float output of the kernel, in this order.
_ROW, _COL, _INT, _SIG, _MAX, _BG, _RES = range(7)
_WINDOW_SIGMA = 1.3  # rms width (px) of the Gaussian window of the centroid (benchmarks/peaks_centroid.py)
_CENTROID_HALF = 3   # the centroid uses the 7x7 box around the maximum
_START_HALF = 2      # and starts from the centroid of the positive excess of the 5x5 box
_BOX_HALF = 2        # the intensity is summed over the 5x5 box around the pixel nearest the centroid


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


@nb.njit(cache=True, inline="always")
def _pixel_var(radius, std, f, i, j, r0, inv_step, noise):
    """sigma_p^2 = std(r)^2 + noise^2 of pixel (i, j) in frame f."""
    sd = _interp(std, f, (radius[i, j] - r0) * inv_step, std.shape[1])
    return sd * sd + noise * noise


# Values of the per-pixel ``mark`` array.
_NONE, _ZINGER, _PEAK, _MAYBE, _STRONG = 0, 1, 2, 3, 4


@nb.njit(cache=True, parallel=True, nogil=True)
def _excess(signal, norm, radius, r0, inv_step, r_lo, r_hi, bg, std, noise, cutoff, v_out, mark):
    """Fill ``v_out`` (n, ny, nx) float32 with the excess v (NaN where missing) and ``mark`` with _STRONG where
    v >= cutoff * sigma_p (zinger candidates), _MAYBE where v >= cutoff * sigma_p / 4 (rule 2e), else _NONE."""
    n, ny, nx = signal.shape
    nbins = bg.shape[1]
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        for j in range(nx):
            r = radius[i, j]
            s = signal[f, i, j]
            v = np.nan
            m = _NONE
            if r >= r_lo and r <= r_hi and np.isfinite(s) and norm[i, j] > 0:
                fpos = (r - r0) * inv_step
                if fpos <= 0.0:  # _interp inlined: bg and std share the bin position
                    i0, i1, w = 0, 0, 0.0
                elif fpos >= nbins - 1:
                    i0, i1, w = nbins - 1, nbins - 1, 0.0
                else:
                    i0 = int(fpos)
                    i1 = i0 + 1
                    w = fpos - i0
                b = bg[f, i0] * (1.0 - w) + bg[f, i1] * w  # NaN where the bin's std is NaN too (find_peaks)
                # no branch on the excess (its sign is random on background pixels): selects instead
                excess = s / norm[i, j] - b
                sd = std[f, i0] * (1.0 - w) + std[f, i1] * w
                v2 = excess * excess
                t2 = cutoff * cutoff * (sd * sd + noise * noise)
                positive = np.isfinite(b) & (excess > 0)
                m = _STRONG if positive & (v2 >= t2) else (_MAYBE if positive & (v2 * 16.0 >= t2) else _NONE)
                v = excess if np.isfinite(b) else np.nan
            v_out[f, i, j] = v
            mark[f, i, j] = m


_STRONG_BITS = np.uint64(0x0404040404040404)  # the bit that, among the values _excess writes, only _STRONG has, in 8 bytes


@nb.njit(cache=True, parallel=True, nogil=True)
def _flag_zingers(v, min_spread, mark, words):
    """Rule 1: turn the _STRONG pixels whose 8 valid neighbours hold less than ``min_spread`` of their excess
    into _ZINGER; reads only ``v``, so pixels may be done in any order.  ``words`` is ``mark``'s memory (zero
    padded to whole words) seen as uint64: the few words with no _STRONG byte are skipped 8 pixels at a time."""
    n, ny, nx = v.shape
    flat = mark.reshape(-1)
    chunk = 512
    nchunks = (words.size + chunk - 1) // chunk
    for c in nb.prange(nchunks):
        for w in range(c * chunk, min((c + 1) * chunk, words.size)):
            if words[w] & _STRONG_BITS == 0:
                continue
            for p in range(w * 8, min(w * 8 + 8, flat.size)):
                if flat[p] != _STRONG:
                    continue
                f = p // (ny * nx)
                i = (p // nx) % ny
                j = p % nx
                spread = 0.0
                for ii in range(max(i - 1, 0), min(i + 2, ny)):
                    for jj in range(max(j - 1, 0), min(j + 2, nx)):
                        if (ii != i or jj != j) and np.isfinite(v[f, ii, jj]):
                            spread += v[f, ii, jj]
                if spread < min_spread * v[f, i, j]:
                    flat[p] = _ZINGER


@nb.njit(cache=True, inline="always")
def _usable(v, mark, f, i, j):
    """A pixel that takes part in peaks: valid (finite v) and not a zinger."""
    return np.isfinite(v[f, i, j]) and mark[f, i, j] != _ZINGER


@nb.njit(cache=True, inline="always")
def _is_peak(v, zinger, norm, radius, std, r0, inv_step, noise, f, i, j, half, cutoff, spread_snr, min_spread,
             reject_near_mask):
    """Rule 2 of the module docstring for pixel (f, i, j)."""
    n, ny, nx = v.shape
    v0 = v[f, i, j]
    if zinger[f, i, j] < _MAYBE:  # rule 2e (or a zinger)
        return False
    box = 0.0
    box_var = 0.0
    nb_var = 0.0
    for ii in range(max(i - 1, 0), min(i + 2, ny)):  # a, 3x3 part: the cheapest rejection first
        for jj in range(max(j - 1, 0), min(j + 2, nx)):
            vq = v[f, ii, jj]
            if (vq > v0 or (vq == v0 and (ii < i or (ii == i and jj < j)))) and zinger[f, ii, jj] != _ZINGER:
                return False
    # b and c need every pixel's variance, which costs an interpolation each; first reject on bounds that
    # need none: each sigma_p^2 >= noise^2, so (rounding being monotone) box_var >= floor, the same sum of
    # noise^2, and c implies box - v0 >= min_spread * v0.  These reject exactly the same pixels, sooner.
    noise2 = noise * noise
    floor = 0.0
    for ii in range(max(i - 1, 0), min(i + 2, ny)):
        for jj in range(max(j - 1, 0), min(j + 2, nx)):
            if _usable(v, zinger, f, ii, jj):
                box += v[f, ii, jj]
                floor += noise2
    skew = (cutoff * cutoff - 1.0) / (6.0 * norm[i, j])
    if box - v0 < min_spread * v0 or box < cutoff * np.sqrt(floor) + skew:
        return False
    for ii in range(max(i - 1, 0), min(i + 2, ny)):  # b: the 3x3 detection
        for jj in range(max(j - 1, 0), min(j + 2, nx)):
            if _usable(v, zinger, f, ii, jj):
                q_var = _pixel_var(radius, std, f, ii, jj, r0, inv_step, noise)
                box_var += q_var
                if ii != i or jj != j:
                    nb_var += q_var
    if box < cutoff * np.sqrt(box_var) + skew:
        return False
    if box - v0 < max(min_spread * v0, spread_snr * np.sqrt(nb_var)):  # c: spread over the neighbours
        return False
    h = half
    if h < 2:  # a missing pixel may hide the true maximum, or split a spot: look one pixel further
        for ii in range(i - 1, i + 2):
            for jj in range(j - 1, j + 2):
                if ii < 0 or ii >= ny or jj < 0 or jj >= nx or not _usable(v, zinger, f, ii, jj):
                    h = 2
    for di in range(-h, h + 1):  # a and d: local maximum of its patch
        ii = i + di
        for dj in range(-h, h + 1):
            jj = j + dj
            if ii < 0 or ii >= ny or jj < 0 or jj >= nx or not _usable(v, zinger, f, ii, jj):
                if reject_near_mask:
                    return False
                continue
            vq = v[f, ii, jj]
            if vq > v0 or (vq == v0 and (di < 0 or (di == 0 and dj < 0))):
                return False
    return True


@nb.njit(cache=True, parallel=True, nogil=True)
def _mark_peaks(v, mark, norm, radius, std, r0, inv_step, noise, half, cutoff, spread_snr, min_spread, reject_near_mask,
                counts):
    """Set ``mark = _PEAK`` on peaks and count them per row of each frame: ``counts[f * ny + i]``.  Safe in
    parallel: the other rows' tests only ask whether a pixel is a _ZINGER."""
    n, ny, nx = v.shape
    for k in nb.prange(n * ny):
        f = k // ny
        i = k % ny
        c = 0
        for j in range(nx):
            if mark[f, i, j] < _MAYBE:
                continue
            if _is_peak(v, mark, norm, radius, std, r0, inv_step, noise, f, i, j, half, cutoff, spread_snr, min_spread,
                        reject_near_mask):
                mark[f, i, j] = _PEAK
                c += 1
        counts[k] = c


@nb.njit(cache=True, inline="always")
def _centroid(v, zinger, f, i, j):
    """Gaussian-windowed centroid (row, col) over the 7x7 box around pixel (f, i, j), iterated to its fixed
    point from the centroid of the positive excess of the 5x5 box; stops at the last estimate when the window's
    weighted sum is not positive or the estimate leaves the peak pixel's neighbourhood (> 1 px)."""
    n, ny, nx = v.shape
    i0, i1 = max(i - _CENTROID_HALF, 0), min(i + _CENTROID_HALF + 1, ny)
    j0, j1 = max(j - _CENTROID_HALF, 0), min(j + _CENTROID_HALF + 1, nx)
    wsum = 0.0
    wi = 0.0
    wj = 0.0
    for ii in range(max(i - _START_HALF, 0), min(i + _START_HALF + 1, ny)):
        for jj in range(max(j - _START_HALF, 0), min(j + _START_HALF + 1, nx)):
            if _usable(v, zinger, f, ii, jj) and v[f, ii, jj] > 0:
                wsum += v[f, ii, jj]
                wi += v[f, ii, jj] * ii
                wj += v[f, ii, jj] * jj
    row = wi / wsum
    col = wj / wsum
    inv = 0.5 / (_WINDOW_SIGMA * _WINDOW_SIGMA)
    col_weight = np.empty(j1 - j0)  # the window is separable: one exp per row and per column
    for _ in range(20):
        wsum = 0.0
        wi = 0.0
        wj = 0.0
        for jj in range(j0, j1):
            col_weight[jj - j0] = np.exp(-(jj - col) ** 2 * inv)
        for ii in range(i0, i1):
            row_weight = np.exp(-(ii - row) ** 2 * inv)
            for jj in range(j0, j1):
                if _usable(v, zinger, f, ii, jj):
                    w = v[f, ii, jj] * row_weight * col_weight[jj - j0]
                    wsum += w
                    wi += w * ii
                    wj += w * jj
        if not wsum > 0:
            break
        new_row = wi / wsum
        new_col = wj / wsum
        if abs(new_row - i) > 1.0 or abs(new_col - j) > 1.0:  # diverging on noise: keep the last estimate
            break
        moved = abs(new_row - row) + abs(new_col - col)
        row = new_row
        col = new_col
        if moved < 1e-4:
            break
    return row, col


@nb.njit(cache=True, parallel=True, nogil=True)
def _measure_peaks(v, zinger, variance, norm, gain, radius, r0, inv_step, noise, bg, std, sem, dspacing, offsets,
                   out_float, out_npix, out_index):
    """Measure every peak (module docstring); row ``k`` of the batch writes its peaks from ``offsets[k]`` on.

    Peaks are the pixels marked _PEAK by :func:`_mark_peaks`.  ``variance`` is (n, ny, nx) photons^2 or (0, 0, 0)
    to use sigma_p^2 instead; ``gain`` is (ny, nx) or (1, 1); ``dspacing`` is (ny, nx) Angstrom or (1, 1).
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
            if zinger[f, i, j] != _PEAK:
                continue
            row, col = _centroid(v, zinger, f, i, j)
            ci = min(max(int(np.floor(row + 0.5)), 0), ny - 1)
            cj = min(max(int(np.floor(col + 0.5)), 0), nx - 1)
            total = 0.0
            variance_sum = 0.0
            scale_sum = 0.0
            npix = 0
            for ii in range(max(ci - _BOX_HALF, 0), min(ci + _BOX_HALF + 1, ny)):
                for jj in range(max(cj - _BOX_HALF, 0), min(cj + _BOX_HALF + 1, nx)):
                    if not _usable(v, zinger, f, ii, jj):
                        continue
                    g = gain[ii, jj] if gain_map else gain[0, 0]
                    scale = np.float64(norm[ii, jj]) * g
                    total += v[f, ii, jj] * scale
                    scale_sum += scale
                    if have_variance:
                        variance_sum += np.float64(variance[f, ii, jj]) * g * g
                    else:
                        variance_sum += _pixel_var(radius, std, f, ii, jj, r0, inv_step, noise) * scale * scale
                    npix += 1
            fpos = (radius[i, j] - r0) * inv_step
            s_bg = _interp(sem, f, fpos, nbins)
            variance_sum += scale_sum * scale_sum * s_bg * s_bg
            g0 = gain[i, j] if gain_map else gain[0, 0]
            out_float[p, _ROW] = row
            out_float[p, _COL] = col
            out_float[p, _INT] = total
            out_float[p, _SIG] = np.sqrt(variance_sum)
            out_float[p, _MAX] = v[f, i, j] * norm[i, j] * g0
            out_float[p, _BG] = _interp(bg, f, fpos, nbins) * norm[i, j] * g0
            if dspacing.shape[0] > 1:
                out_float[p, _RES] = dspacing[ci, cj]
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
    bg = np.where(np.isfinite(std), bg, np.nan)  # a bin without a usable std has no background either
    if bg.shape[0] != n:
        raise ParameterError(f"profile has {bg.shape[0]} frames, the batch {n}")
    radial = np.asarray(binning.radial, dtype=np.float64)
    # fractional bin position (r - r0) * inv_step, as pick.pick_pixels forms it
    inv_step = 1.0 / (float(radial[1] - radial[0]) if len(radial) > 1 else 1.0)
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

    v = scratch("peaks_excess", (n, ny, nx), np.float32)
    size = n * ny * nx
    words = scratch("peaks_mark", (-(-size // 8),), np.uint64)
    mark = words.view(np.uint8)
    mark[size:] = _NONE
    mark = mark[:size].reshape(n, ny, nx)
    r0, noise = float(radial[0]), float(params.noise)
    _excess(signal, norm, radius, r0, inv_step, r_lo, r_hi, bg, std, noise, float(params.cutoff_peak), v, mark)
    _flag_zingers(v, float(params.min_spread), mark, words)
    counts = np.empty(n * ny, np.int64)
    _mark_peaks(v, mark, norm, radius, std, r0, inv_step, noise, params.patch_size // 2, float(params.cutoff_peak),
                float(params.spread_snr), float(params.min_spread), params.near_mask == "reject", counts)
    offsets = np.zeros(n * ny + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    out_float = np.empty((total, 7), np.float64)
    out_npix = np.empty(total, np.int32)
    out_index = np.empty(total, np.int64)
    _measure_peaks(v, mark, variance, norm, gain, radius, r0, inv_step, noise, bg, std, sem, dspacing, offsets,
                   out_float, out_npix, out_index)
    intensity = out_float[:, _INT]
    sigma = out_float[:, _SIG]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(sigma > 0, intensity / sigma, 0.0)
    fields = {"row": out_float[:, _ROW], "col": out_float[:, _COL], "intensity": intensity, "sigma": sigma,
              "snr": snr, "npix": out_npix, "maximum": out_float[:, _MAX], "background": out_float[:, _BG],
              "resolution": out_float[:, _RES], "index": out_index}
    return PeakList(frame_ptr=offsets[::ny].copy(),
                    **{name: np.ascontiguousarray(fields[name], dtype=dtype) for name, dtype in PEAK_FIELDS.items()})
