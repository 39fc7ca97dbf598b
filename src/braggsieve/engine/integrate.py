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


@numba.njit(cache=True)
def _accumulate(value, weight, csig, cvar, coef, n, with_scatter, out):
    """Sums of the first n gathered pixels into out[0:7] (float64); the scatter VV takes a second pass
    over the pixels (after the mean) and is NaN unless ``with_scatter``."""
    count = 0.0
    omega = 0.0
    omega2 = 0.0
    vsum = 0.0
    wsum = 0.0
    p = 0.0
    for i in range(n):
        w = weight[i]
        count += coef[i]
        omega += w
        omega2 += w * w
        vsum += csig[i]
        wsum += cvar[i]
        p += w * w * value[i]
    scatter = 0.0 if with_scatter else np.nan
    if with_scatter and omega > 0:
        mean = vsum / omega
        for i in range(n):
            d = value[i] - mean
            scatter += weight[i] * weight[i] * d * d
    out[_COUNT] = count
    out[_SIGNAL] = vsum
    out[_VARIANCE] = wsum
    out[_NORM] = omega
    out[_NORM2] = omega2
    out[_NORM2_VALUE] = p
    out[_SCATTER] = scatter


@numba.njit(cache=True)
def _gather(signal, variance, norm, indices, coef, has_coef, start, stop, value, weight, csig, cvar, cc):
    """Copy the valid pixels of CSR row [start, stop) of one frame into the buffers; returns their number."""
    n = 0
    for j in range(start, stop):
        idx = indices[j]
        s = signal[idx]
        var = variance[idx]
        if np.isnan(s) or np.isnan(var):
            continue
        c = coef[j] if has_coef else 1.0
        if c == 0.0:
            continue
        nrm = np.float64(norm[idx])
        value[n] = s / nrm
        weight[n] = c * nrm
        csig[n] = c * s
        cvar[n] = c * c * var
        cc[n] = c
        n += 1
    return n


@numba.njit(parallel=True, cache=True)
def _bin_sums_kernel(signal, variance, norm, indptr, indices, coef, has_coef, out):
    """out (7, nframes, nbins) <- sums of every (frame, bin); signal/variance (nframes, npix)."""
    nframes = signal.shape[0]
    nbins = indptr.size - 1
    for k in numba.prange(nbins * nframes):
        b = k // nframes
        f = k - b * nframes
        start, stop = indptr[b], indptr[b + 1]
        size = stop - start
        value = np.empty(size)
        weight = np.empty(size)
        csig = np.empty(size)
        cvar = np.empty(size)
        cc = np.empty(size)
        n = _gather(signal[f], variance[f], norm, indices, coef, has_coef, start, stop,
                    value, weight, csig, cvar, cc)
        acc = np.empty(7)
        _accumulate(value, weight, csig, cvar, cc, n, True, acc)
        for q in range(7):
            out[q, f, b] = acc[q]


@numba.njit(parallel=True, cache=True)
def _sigma_clip_kernel(signal, variance, norm, indptr, indices, coef, has_coef, azimuthal, hybrid,
                       cutoff, cycles, out):
    """Sigma-clip every (frame, bin); out (7, nframes, nbins) <- sums of the surviving pixels."""
    nframes = signal.shape[0]
    nbins = indptr.size - 1
    for k in numba.prange(nbins * nframes):
        b = k // nframes
        f = k - b * nframes
        start, stop = indptr[b], indptr[b + 1]
        size = stop - start
        value = np.empty(size)
        weight = np.empty(size)
        csig = np.empty(size)
        cvar = np.empty(size)
        cc = np.empty(size)
        n = _gather(signal[f], variance[f], norm, indices, coef, has_coef, start, stop,
                    value, weight, csig, cvar, cc)
        acc = np.empty(7)
        # hybrid clips with the azimuthal scatter and reports W, which every integration also keeps
        scatter = azimuthal or hybrid
        _accumulate(value, weight, csig, cvar, cc, n, scatter, acc)
        for _ in range(cycles):
            if acc[_NORM] == 0.0 or acc[_COUNT] == 0.0:
                break
            mean = acc[_SIGNAL] / acc[_NORM]
            std = np.sqrt((acc[_SCATTER] if scatter else acc[_VARIANCE]) / acc[_NORM2])
            npix = max(3.0, acc[_COUNT])
            limit = max(cutoff, np.sqrt(2.0 * np.log(npix / np.sqrt(2.0 * np.pi)))) * std
            kept = 0
            for i in range(n):  # discard outliers, compacting the survivors to the front
                if abs(value[i] - mean) > limit:
                    continue
                value[kept] = value[i]
                weight[kept] = weight[i]
                csig[kept] = csig[i]
                cvar[kept] = cvar[i]
                cc[kept] = cc[i]
                kept += 1
            if kept == n:
                break
            n = kept
            _accumulate(value, weight, csig, cvar, cc, n, scatter, acc)
        for q in range(7):
            out[q, f, b] = acc[q]


def _flat_inputs(pre: Preprocessed, binning: RadialBinning):
    if pre.signal.shape[1:] != binning.shape:
        raise ParameterError(f"frames of shape {pre.signal.shape[1:]} do not match the binning {binning.shape}")
    nframes = pre.signal.shape[0]
    coef = binning.coef if binning.coef is not None else np.empty(0, np.float32)
    return (pre.signal.reshape(nframes, -1), pre.variance.reshape(nframes, -1), pre.norm.ravel(),
            binning.indptr, binning.indices, coef, binning.coef is not None)


def bin_sums(pre: Preprocessed, binning: RadialBinning) -> BinSums:
    """Partial sums of every bin for a batch (no clipping); pixels with NaN signal are left out."""
    out = np.empty((7, pre.nframes, binning.nbins))
    _bin_sums_kernel(*_flat_inputs(pre, binning), out)
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
    _sigma_clip_kernel(*_flat_inputs(pre, binning), error_model == "azimuthal", error_model == "hybrid",
                       float(clip.cutoff_clip), int(clip.cycles), out)
    return profile_from_sums(BinSums.from_stack(out), binning, error_model)

