"""Radial binning as a CSR sparse matrix: rows are radial bins, columns are pixels.

The matrix is built once per geometry and mask and reused for every frame.  Without pixel splitting each
pixel lies in exactly one bin (coefficient 1, stored as ``coef=None``); with bounding-box splitting a pixel
spanning ``[r - dr, r + dr]`` is shared between the bins it overlaps, in proportion to the overlap.

Bins are uniform in the radial unit.  The default radial range follows pyFAI's CSR engines so that the
same bins are compared: from the smallest to the largest position of the unmasked pixels (their
bounding-box edges with splitting), the lower end clamped at 0, and the upper end widened by one float32
epsilon (``hi * (1 + eps32)``) so that the outermost pixel falls inside the last bin.  pyFAI widens a
user-given upper limit the same way, and so do we.

One deliberate difference: pyFAI truncates a pixel's fractional bin number towards zero, so with a user
radial range pixels up to one bin width *below* the lower limit land in bin 0; here they are outside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..errors import ParameterError
from .params import IntegrationParams

# pyFAI's upper-bound widening of the radial range (regrid_common.pxi: calc_upper_bound).
EPS32 = 1.0 + float(np.finfo(np.float32).eps)

# Bits of a pixel's slot (bin_slots): the lower bin, "upper bin == lower bin", "outside picking's range".
SLOT_BIN = (1 << 28) - 1
SLOT_CLAMPED = 1 << 28
SLOT_PICK_OUT = 1 << 29
SLOT_MASKED = 1 << 30    # (GPU engine) the pixel is masked by the corrections, though inside the radial range


@dataclass(frozen=True)
class RadialBinning:
    """A radial binning of a ``(ny, nx)`` detector, as a CSR matrix.

    Attributes:
        shape: ``(ny, nx)`` of the frames it applies to.
        unit: radial unit (``q_nm^-1``, ``2th_deg`` or ``r_mm``).
        bin_edges: float64 ``(nbins + 1,)``, uniform, in ``unit``.
        radial: float64 ``(nbins,)`` bin centres in ``unit``.
        indptr: int64 ``(nbins + 1,)``; bin ``b`` owns entries ``indptr[b]:indptr[b+1]``.
        indices: int32 ``(nnz,)`` flat pixel indices ``row * nx + col``, increasing within a bin.
        coef: float32 ``(nnz,)`` fraction of the pixel in the bin, or None when every coefficient is 1
            (no splitting).
        pixel_radius: float32 ``(ny, nx)`` radial position of each pixel centre in ``unit``; NaN where
            masked (pixels outside ``radial_range`` keep their position).
        radial_range: ``(lo, hi)`` in ``unit``, the range actually binned (``bin_edges[0], bin_edges[-1]``).
    """

    shape: tuple[int, int]
    unit: str
    bin_edges: np.ndarray
    radial: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    coef: np.ndarray | None
    pixel_radius: np.ndarray
    radial_range: tuple[float, float]

    @property
    def nbins(self) -> int:
        return len(self.radial)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def counts(self) -> np.ndarray:
        """float64 ``(nbins,)``: sum of the coefficients of each bin (pixels per bin without splitting)."""
        rows = np.repeat(np.arange(self.nbins), np.diff(self.indptr))
        return np.bincount(rows, weights=self.coef, minlength=self.nbins).astype(np.float64)


def upper_bound(value: float) -> float:
    """The upper end of a histogram range holding ``value`` (pyFAI's calc_upper_bound)."""
    return value * EPS32 if value > 0 else value / EPS32


@numba.njit(cache=True)
def _csr_no_split(position, valid, lo, delta, nbins):
    """CSR of unsplit pixels: pixel i goes to bin floor((position[i] - lo) / delta) if in [0, nbins)."""
    npix = position.size
    bins = np.full(npix, -1, np.int64)
    indptr = np.zeros(nbins + 1, np.int64)
    for i in range(npix):
        if valid[i]:
            f = np.floor((position[i] - lo) / delta)
            if 0 <= f < nbins:
                bins[i] = int(f)
                indptr[int(f) + 1] += 1
    for b in range(nbins):
        indptr[b + 1] += indptr[b]
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[nbins], np.int32)
    for i in range(npix):
        b = bins[i]
        if b >= 0:
            indices[fill[b]] = i
            fill[b] += 1
    return indptr, indices


@numba.njit(cache=True)
def _bbox_span(c, d, lo, delta, nbins):
    """First and last bin touched by the interval [c - d, c + d], clipped to the range, and its ends in bins."""
    fmin = (c - d - lo) / delta
    fmax = (c + d - lo) / delta
    first = np.floor(fmin)
    last = np.ceil(fmax) - 1.0 if fmax > fmin else first  # an interval ending on an edge stops before it
    return max(int(first), 0), min(int(last), nbins - 1), fmin, fmax


@numba.njit(cache=True)
def _csr_bbox(position, half_width, valid, lo, delta, nbins):
    """CSR with bounding-box splitting: each pixel's share of a bin is the overlap of [r - dr, r + dr]
    with the bin divided by the interval's length; a pixel overlapping the range is kept whole, the part
    beyond an end of the range going to the end bin (pyFAI does the same)."""
    npix = position.size
    indptr = np.zeros(nbins + 1, np.int64)
    for i in range(npix):
        if not valid[i]:
            continue
        bmin, bmax, fmin, fmax = _bbox_span(position[i], half_width[i], lo, delta, nbins)
        for b in range(bmin, bmax + 1):
            indptr[b + 1] += 1
    for b in range(nbins):
        indptr[b + 1] += indptr[b]
    fill = indptr[:-1].copy()
    indices = np.empty(indptr[nbins], np.int32)
    coef = np.empty(indptr[nbins], np.float32)
    for i in range(npix):
        if not valid[i]:
            continue
        bmin, bmax, fmin, fmax = _bbox_span(position[i], half_width[i], lo, delta, nbins)
        width = fmax - fmin
        for b in range(bmin, bmax + 1):
            # the end bins also take the part of the pixel beyond the range ends (as pyFAI)
            lower = fmin if b == bmin else float(b)
            upper = fmax if b == bmax else b + 1.0
            share = (upper - lower) / width if bmin < bmax else 1.0
            indices[fill[b]] = i
            coef[fill[b]] = share
            fill[b] += 1
    return indptr, indices, coef


def build_binning(radial_map: np.ndarray, params: IntegrationParams, mask: np.ndarray | None = None,
                  radial_delta: np.ndarray | None = None) -> RadialBinning:
    """Build the CSR radial binning of a detector.

    Args:
        radial_map: float ``(ny, nx)`` radial position of each pixel centre in ``params.unit``
            (e.g. ``geometry.radial_map(poni, unit)``); NaN or inf marks a pixel without a position.
        params: number of bins, unit, optional radial range, pixel splitting (``no`` or ``bbox``).
        mask: bool ``(ny, nx)``, True = bad pixel, left out of every bin.
        radial_delta: float ``(ny, nx)`` half-width of each pixel in ``params.unit``; required for
            ``split="bbox"``, ignored otherwise.

    Raises ParameterError when shapes disagree, the splitting lacks ``radial_delta``, or no pixel is left.
    """
    radial_map = np.asarray(radial_map, dtype=np.float64)
    if radial_map.ndim != 2:
        raise ParameterError(f"radial map must be 2-D (ny, nx), got shape {radial_map.shape}")
    shape = radial_map.shape
    valid = np.isfinite(radial_map)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ParameterError(f"mask shape {mask.shape} does not match the detector {shape}")
        valid &= ~mask.astype(bool)
    split = params.split == "bbox"
    half_width = np.zeros(shape)
    if split:
        if radial_delta is None:
            raise ParameterError("bbox pixel splitting needs the pixels' radial half-widths (radial_delta)")
        half_width = np.asarray(radial_delta, dtype=np.float64)
        if half_width.shape != shape:
            raise ParameterError(f"radial_delta shape {half_width.shape} does not match the detector {shape}")
        valid &= np.isfinite(half_width)
    if not valid.any():
        raise ParameterError("no pixel left to integrate: every pixel is masked or has no radial position")

    if params.radial_range is None:
        lo = max(0.0, float(np.min((radial_map - half_width)[valid])))
        hi = max(0.0, float(np.max((radial_map + half_width)[valid])))
    else:
        lo, hi = (float(v) for v in params.radial_range)
    hi = upper_bound(hi)
    if not hi > lo:
        raise ParameterError(f"empty radial range [{lo}, {hi}] {params.unit}")
    nbins = params.bins
    delta = (hi - lo) / nbins
    edges = np.linspace(lo, hi, nbins + 1)

    position = radial_map.ravel()
    if split:
        indptr, indices, coef = _csr_bbox(position, half_width.ravel(), valid.ravel(), lo, delta, nbins)
    else:
        indptr, indices = _csr_no_split(position, valid.ravel(), lo, delta, nbins)
        coef = None
    pixel_radius = np.where(valid, radial_map, np.nan).astype(np.float32)
    return RadialBinning(shape=(int(shape[0]), int(shape[1])), unit=params.unit, bin_edges=edges,
                         radial=0.5 * (edges[1:] + edges[:-1]), indptr=indptr, indices=indices, coef=coef,
                         pixel_radius=pixel_radius, radial_range=(lo, hi))


def bin_slots(radius: np.ndarray, radial: np.ndarray, radial_range) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's place between the bin centres, as the CPU's peak finder and picking form it per frame (the
    GPU engine's static form of it).

    Args:
        radius: float32 radii of the pixels (NaN where statically masked), any shape.
        radial: float64 bin centres ``(nbins,)``, evenly spaced.  radial_range: (r_lo, r_hi) of the binning.

    Returns:
        ``slot`` (int32, radius's shape): the lower bin i0 | SLOT_CLAMPED where the upper bin is i0 too
        | SLOT_PICK_OUT where r == r_hi (inside the peak finder's [r_lo, r_hi], outside picking's
        [r_lo, r_hi)); -1 outside both.  ``w`` (float64): the upper bin's weight.  With fpos = (r - r0) *
        inv_step (float64, inv_step = 1 / step): i0 = i1 = 0 for fpos <= 0, i0 = i1 = nbins - 1 for fpos >=
        nbins - 1 (w = 0 at both ends), else i0 = int(fpos), i1 = i0 + 1, w = fpos - i0 -- peaks._excess
        exactly, and pick._classify's clamped interpolation for finite tables.
    """
    r = np.asarray(radius, np.float32).astype(np.float64)
    radial = np.asarray(radial, np.float64)
    last = len(radial) - 1
    if last >= SLOT_BIN:
        raise ParameterError(f"at most {SLOT_BIN} bins, got {last + 1}")
    lo, hi = (float(v) for v in radial_range)
    inv_step = 1.0 / (float(radial[1] - radial[0]) if last > 0 else 1.0)
    with np.errstate(invalid="ignore"):
        fpos = (r - float(radial[0])) * inv_step
        low, high = fpos <= 0.0, fpos >= last
        in_peak = (r >= lo) & (r <= hi)
        in_pick = in_peak & (r < hi)
    inner = in_peak & ~low & ~high
    i0 = np.zeros(r.shape, np.int64)
    i0[inner] = fpos[inner].astype(np.int64)  # truncation of a positive float, as int() on the CPU
    i0[in_peak & high & ~low] = last
    w = np.zeros(r.shape, np.float64)
    w[inner] = fpos[inner] - i0[inner]
    slot = i0 | np.where(inner, 0, SLOT_CLAMPED) | np.where(in_pick, 0, SLOT_PICK_OUT)
    slot = np.where(in_peak, slot, -1).astype(np.int32)
    return slot, w


def tile_bin_ranges(slot: np.ndarray, shape: tuple[int, int], tile_h: int, tile_w: int = 32,
                    halo: int = 3) -> np.ndarray:
    """The bins whose tables each tile of a pixel grid reads (the GPU engine copies them to shared memory).

    Args:
        slot: int32 ``(ny * nx,)`` slots of :func:`bin_slots` (-1: the pixel reads no bin).  shape: (ny, nx).
        tile_h, tile_w: tile size in pixels (rows, columns); halo: pixels read around each tile.

    Returns:
        int32 ``(ceil(ny / tile_h), ceil(nx / tile_w), 2)``: for the tile at (row block, column block), the first
        bin and the number of bins read by its pixels and those of the halo around it (bin i0 and, unless
        clamped, i0 + 1 of each pixel); (0, 0) when none of them reads a bin.
    """
    ny, nx = shape
    slot = np.asarray(slot).reshape(ny, nx)
    inside = slot >= 0
    first = slot & SLOT_BIN
    last = first + ((slot & SLOT_CLAMPED) == 0)
    rows, cols = -(-ny // tile_h), -(-nx // tile_w)
    none = np.iinfo(np.int32).max
    lo = np.full((rows * tile_h + 2 * halo, cols * tile_w + 2 * halo), none, np.int64)
    hi = np.full(lo.shape, -1, np.int64)
    lo[halo:halo + ny, halo:halo + nx] = np.where(inside, first, none)
    hi[halo:halo + ny, halo:halo + nx] = np.where(inside, last, -1)

    def per_tile(a, reduce):  # over each tile's window of (tile_h + 2 halo) x (tile_w + 2 halo) pixels
        by_col = np.stack([reduce(a[:, c * tile_w:(c + 1) * tile_w + 2 * halo], axis=1) for c in range(cols)],
                          axis=1)
        return np.stack([reduce(by_col[r * tile_h:(r + 1) * tile_h + 2 * halo], axis=0) for r in range(rows)])

    first_bin, last_bin = per_tile(lo, np.min), per_tile(hi, np.max)
    count = np.where(last_bin >= 0, last_bin - first_bin + 1, 0)
    return np.stack([np.where(count > 0, first_bin, 0), count], axis=-1).astype(np.int32)
