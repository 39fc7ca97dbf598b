"""CSR azimuthal integration and iterative sigma-clipping (DESIGN.md algorithms 2-4), numba-parallel.

Per bin and frame, with c the CSR coefficient, w = c * norm and v = signal / norm of each valid pixel:

    count = sum c              Omega = sum w           OmegaOmega = sum w**2
    V = sum c * signal         W = sum c**2 * var      P = sum w**2 * v
    VV = sum w**2 * (v - V / Omega)**2                  (scatter around the bin mean)

    mean = V / Omega;  std = sqrt(S / OmegaOmega);  sem = sqrt(S) / Omega
    with S = W (poisson, explicit variance) or VV (azimuthal).

VV is computed in two passes (mean first), so it is exact for any norm; pyFAI's Cython engine updates it
pixel by pixel with a formula that is exact only when norm is constant in the bin, so with polarisation or
a tilted detector the two differ slightly (see docs/engine.md).  ``merge_sums`` combines the sums of two
disjoint sets of pixels exactly, thanks to P: for each part A with mean m_A and the union's mean m,
``sum_A w**2 (v - m)**2 = VV_A + 2 (m_A - m) (P_A - m_A OmegaOmega_A) + (m_A - m)**2 OmegaOmega_A``.

Sigma-clipping follows pyFAI's Cython CSR engine: integrate; then up to ``cycles`` times discard the pixels
with ``|v - mean| > k * std``, ``k = max(cutoff, sqrt(2 ln(n / sqrt(2 pi))))`` (Chauvenet) with
``n = max(3, count)``, and integrate the survivors again; stop as soon as a cycle discards nothing.
``hybrid`` clips with the azimuthal std and reports the Poisson one (the last integration is Poisson).
Bins are independent: each (bin, frame) gathers its pixels once into contiguous buffers and runs all its
iterations there.  A bin with no valid pixel has count 0 and NaN mean, std and sem.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..errors import ParameterError
from .corrections import Preprocessed
from .csr import RadialBinning
from .params import ClipParams
from .records import RadialProfile
from .scratch import scratch

# Rows of the (7, nframes, nbins) float64 sums array, in BinSums field order.
_COUNT, _SIGNAL, _VARIANCE, _NORM, _NORM2, _NORM2_VALUE, _SCATTER = range(7)


@dataclass(frozen=True)
class BinSums:
    """Partial sums of a set of pixels, float64 ``(nframes, nbins)`` each (see the module docstring):
    count, signal (V), variance (W), norm (Omega), norm2 (OmegaOmega), norm2_value (P), scatter (VV)."""

    count: np.ndarray
    signal: np.ndarray
    variance: np.ndarray
    norm: np.ndarray
    norm2: np.ndarray
    norm2_value: np.ndarray
    scatter: np.ndarray

    @classmethod
    def from_stack(cls, stack: np.ndarray) -> "BinSums":
        return cls(*stack)


@numba.njit(cache=True, inline="always")
def _add(sums, value, weight, cvar, c):
    """``sums`` = (count, omega, omega2, V, W, P) plus one pixel: v, w = c * norm, c**2 * var, c."""
    count, omega, omega2, vsum, wsum, p = sums
    return (count + c, omega + weight, omega2 + weight * weight, vsum + value * weight, wsum + cvar,
            p + weight * weight * value)


@numba.njit(cache=True, inline="always")
def _store(buf, n, has_coef, with_scatter, sums, out):
    """Write the sums of the first n pixels of ``buf`` into out[0:7] (float64); the scatter VV takes a
    second pass over the pixels (after the mean) and is NaN unless ``with_scatter``.  Without
    coefficients the count is n."""
    count, omega, omega2, vsum, wsum, p = sums
    if not has_coef:
        count = float(n)
    scatter = 0.0 if with_scatter else np.nan
    if with_scatter and omega > 0:
        mean = vsum / omega
        for i in range(n):
            d = buf[0, i] - mean
            scatter += buf[1, i] * buf[1, i] * d * d
    out[_COUNT] = count
    out[_SIGNAL] = vsum
    out[_VARIANCE] = wsum
    out[_NORM] = omega
    out[_NORM2] = omega2
    out[_NORM2_VALUE] = p
    out[_SCATTER] = scatter


@numba.njit(cache=True)
def _gather(pixels, norm, coef, has_coef, start, stop, buf, with_scatter, out):
    """Copy the valid pixels of CSR row [start, stop) of one frame (``pixels`` (nnz, 2) signal and variance,
    ``norm`` (nnz,), in CSR order) into ``buf`` (4, stop - start) float64: rows v = signal / norm,
    w = c * norm, c**2 * variance and c (only with coefficients), summing them on the way into out[0:7]
    (see _store); returns their number.  The sums are taken in pixel order, one pixel at a time."""
    n = 0
    sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for j in range(start, stop):
        s = pixels[j, 0]
        var = pixels[j, 1]
        if np.isnan(s) or np.isnan(var):
            continue
        c = coef[j] if has_coef else 1.0
        if c == 0.0:
            continue
        nrm = np.float64(norm[j])
        value = s / nrm
        weight = c * nrm
        cvar = c * c * var
        buf[0, n] = value
        buf[1, n] = weight
        buf[2, n] = cvar
        if has_coef:
            buf[3, n] = c
        sums = _add(sums, value, weight, cvar, c if has_coef else 0.0)
        n += 1
    _store(buf, n, has_coef, with_scatter, sums, out)
    return n


@numba.njit(cache=True)
def _discard_outliers(buf, n, has_coef, with_scatter, mean, limit, out):
    """One clipping cycle: drop the pixels with |v - mean| > limit, compacting the survivors to the front
    of ``buf`` and summing them on the way; returns their number and, when some were dropped, stores
    their sums into out[0:7] (see _store)."""
    kept = 0
    sums = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    for i in range(n):
        if abs(buf[0, i] - mean) > limit:
            continue
        value, weight, cvar = buf[0, i], buf[1, i], buf[2, i]
        buf[0, kept] = value
        buf[1, kept] = weight
        buf[2, kept] = cvar
        c = 0.0
        if has_coef:
            c = buf[3, i]
            buf[3, kept] = c
        sums = _add(sums, value, weight, cvar, c)
        kept += 1
    if kept < n:
        _store(buf, kept, has_coef, with_scatter, sums, out)
    return kept


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter_to_csr(signal, variance, position, pixels):
    """Write (nframes, npix) signal and variance into CSR order, interleaved: pixels (nframes, nnz, 2);
    pixel i goes to entry position[i] (-1: in no bin).  Reads are sequential and writes go to one moving
    cursor per bin, so this runs at memory speed, unlike a bin-by-bin gather (interleaving halves the
    number of write streams, which doubles the speed)."""
    nframes, npix = signal.shape
    chunk = 65536
    nchunks = (npix + chunk - 1) // chunk
    for k in numba.prange(nframes * nchunks):
        f = k // nchunks
        start = (k - f * nchunks) * chunk
        for i in range(start, min(start + chunk, npix)):
            p = position[i]
            if p >= 0:
                pixels[f, p, 0] = signal[f, i]
                pixels[f, p, 1] = variance[f, i]


@numba.njit(cache=True)
def chauvenet_factor(count):
    """Chauvenet's clipping limit, in standard deviations, for a bin of ``count`` pixels (at least 3):
    sqrt(2 ln(n / sqrt(2 pi))), float64."""
    npix = max(3.0, count)
    return np.sqrt(2.0 * np.log(npix / np.sqrt(2.0 * np.pi)))


@numba.njit(cache=True)
def chauvenet_factors(most: int) -> np.ndarray:
    """float64 ``(most + 1,)``: :func:`chauvenet_factor` of 0, 1, ..., ``most`` pixels, the very numbers the
    CPU engine computes (the CUDA engine looks them up instead of computing them)."""
    out = np.empty(most + 1)
    for n in range(most + 1):
        out[n] = chauvenet_factor(float(n))
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _sigma_clip_kernel(pixels, norm, indptr, coef, has_coef, order, azimuthal, hybrid, cutoff, cycles, out):
    """Sigma-clip every (frame, bin): pixels (nframes, nnz, 2) signal and variance and norm (nnz,) in CSR order,
    bins visited in ``order`` (see _bin_order); out (7, nframes, nbins) <- sums of the surviving pixels.  With
    ``cycles`` 0 and ``azimuthal`` these are the plain sums of every valid pixel, scatter included."""
    nframes = pixels.shape[0]
    nbins = indptr.size - 1
    for k in numba.prange(nbins * nframes):
        b = order[k // nframes]
        f = k % nframes
        start, stop = indptr[b], indptr[b + 1]
        buf = np.empty((4, stop - start))
        acc = np.empty(7)
        # hybrid clips with the azimuthal scatter and reports W, which every integration also keeps
        scatter = azimuthal or hybrid
        n = _gather(pixels[f], norm, coef, has_coef, start, stop, buf, scatter, acc)
        for _ in range(cycles):
            if acc[_NORM] == 0.0 or acc[_COUNT] == 0.0:
                break
            mean = acc[_SIGNAL] / acc[_NORM]
            std = np.sqrt((acc[_SCATTER] if scatter else acc[_VARIANCE]) / acc[_NORM2])
            limit = max(cutoff, chauvenet_factor(acc[_COUNT])) * std
            kept = _discard_outliers(buf, n, has_coef, scatter, mean, limit, acc)
            if kept == n:
                break
            n = kept
        for q in range(7):
            out[q, f, b] = acc[q]


@dataclass(frozen=True)
class CsrLayout:
    """What is static between frames, in CSR order, for one binning and one norm map.

    Attributes:
        binning: the binning it was built for.
        norm: float32 ``(nnz,)`` norm of the pixel of each CSR entry.
        position: int32 ``(ny * nx,)`` CSR entry of each pixel (-1: in no bin), or None with pixel
            splitting (a pixel may then sit in several bins and frames are gathered instead).
    """

    binning: RadialBinning
    norm: np.ndarray
    position: np.ndarray | None


def csr_layout(binning: RadialBinning, norm: np.ndarray) -> CsrLayout:
    """Precompute the static CSR-ordered data for ``binning`` and the per-pixel ``norm`` (ny, nx)."""
    position = None
    if binning.coef is None:
        position = np.full(binning.shape[0] * binning.shape[1], -1, np.int32)
        position[binning.indices] = np.arange(binning.nnz, dtype=np.int32)
    return CsrLayout(binning=binning, norm=np.ascontiguousarray(norm, np.float32).ravel()[binning.indices],
                     position=position)


# The layout of the last (binning, norm) pair, as one tuple (norm, layout) so that threads swap it atomically.
# A run integrates batch after batch with the same binning and the same read-only Corrections.norm, so this
# saves rebuilding it for every batch (tens of ms for 4 Mpixel); a writable norm could change in place and is
# never cached.
_last_layout: tuple[np.ndarray, CsrLayout] | None = None


def _layout_for(binning: RadialBinning, norm: np.ndarray) -> CsrLayout:
    global _last_layout
    cached = _last_layout
    if cached is not None and cached[0] is norm and cached[1].binning is binning:
        return cached[1]
    layout = csr_layout(binning, norm)
    if not norm.flags.writeable:
        _last_layout = (norm, layout)
    return layout


def _bin_order(nbins: int) -> np.ndarray:
    """int64 permutation of the bins in which the kernels visit them.  Bin sizes grow with the radius, and
    numba hands each thread one contiguous range of iterations, so in bin order the thread with the outer
    bins does most of the work (70 % of an Eiger 4M's pixels sit in its outer 500 of 1000 bins).  Ordering
    bins by the fractional part of b * golden ratio mixes inner and outer bins in every range."""
    return np.argsort((np.arange(nbins) * 0.6180339887498949) % 1.0, kind="stable")


def _csr_inputs(pre: Preprocessed, binning: RadialBinning):
    """The kernels' inputs: signal and variance (interleaved) and norm in CSR order, indptr, coefficients."""
    if pre.signal.shape[1:] != binning.shape:
        raise ParameterError(f"frames of shape {pre.signal.shape[1:]} do not match the binning {binning.shape}")
    layout = _layout_for(binning, pre.norm)
    nframes = pre.signal.shape[0]
    signal = pre.signal.reshape(nframes, -1)
    variance = pre.variance.reshape(nframes, -1)
    if layout.position is None:  # pixel splitting: a pixel may appear in several bins
        pixels = np.stack([signal[:, binning.indices], variance[:, binning.indices]], axis=-1)
    else:
        pixels = scratch("csr_pixels", (nframes, binning.nnz, 2), np.float32)
        _scatter_to_csr(signal, variance, layout.position, pixels)
    coef = binning.coef if binning.coef is not None else np.empty(0, np.float32)
    return pixels, layout.norm, binning.indptr, coef, binning.coef is not None, _bin_order(binning.nbins)


def bin_sums(pre: Preprocessed, binning: RadialBinning) -> BinSums:
    """Partial sums of every bin for a batch (no clipping); pixels with NaN signal are left out."""
    out = np.empty((7, pre.nframes, binning.nbins))
    _sigma_clip_kernel(*_csr_inputs(pre, binning), True, False, 0.0, 0, out)  # no clipping, scatter kept
    return BinSums.from_stack(out)


def merge_sums(a: BinSums, b: BinSums) -> BinSums:
    """Exact sums of the union of two disjoint sets of pixels, from the sums of each."""
    norm = a.norm + b.norm
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(norm > 0, (a.signal + b.signal) / norm, 0.0)
        scatter = a.scatter + b.scatter
        for part in (a, b):
            filled = part.norm > 0
            part_mean = np.where(filled, part.signal / np.where(filled, part.norm, 1.0), 0.0)
            shift = np.where(filled, part_mean - mean, 0.0)
            scatter = scatter + 2.0 * shift * (part.norm2_value - part_mean * part.norm2) + shift ** 2 * part.norm2
    return BinSums(count=a.count + b.count, signal=a.signal + b.signal, variance=a.variance + b.variance,
                   norm=norm, norm2=a.norm2 + b.norm2, norm2_value=a.norm2_value + b.norm2_value,
                   scatter=scatter)


def profile_from_sums(sums: BinSums, binning: RadialBinning, error_model: str) -> RadialProfile:
    """RadialProfile from partial sums; ``azimuthal`` reports the scatter, every other model W."""
    reported = "azimuthal" if error_model == "azimuthal" else ("poisson" if error_model == "hybrid"
                                                               else error_model)
    spread = sums.scatter if reported == "azimuthal" else sums.variance
    filled = (sums.count > 0) & (sums.norm2 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(filled, sums.signal / sums.norm, np.nan)
        std = np.where(filled, np.sqrt(spread / sums.norm2), np.nan)
        sem = np.where(filled, np.sqrt(spread) / sums.norm, np.nan)
    return RadialProfile(radial=binning.radial, mean=mean, std=std, sem=sem, count=sums.count,
                         sum_signal=sums.signal, sum_variance=spread, sum_norm=sums.norm,
                         sum_norm2=sums.norm2, unit=binning.unit, error_model=reported)


def integrate(pre: Preprocessed, binning: RadialBinning, error_model: str) -> RadialProfile:
    """Azimuthal integration of a batch: ``(nframes, nbins)`` arrays.  ``hybrid`` integrates as poisson."""
    return profile_from_sums(bin_sums(pre, binning), binning, error_model)


def sigma_clip(pre: Preprocessed, binning: RadialBinning, error_model: str, clip: ClipParams) -> RadialProfile:
    """Iterative sigma-clipping of every bin of a batch: the clipped mean and std are the background."""
    out = np.empty((7, pre.nframes, binning.nbins))
    _sigma_clip_kernel(*_csr_inputs(pre, binning), error_model == "azimuthal", error_model == "hybrid",
                       float(clip.cutoff_clip), int(clip.cycles), out)
    return profile_from_sums(BinSums.from_stack(out), binning, error_model)

