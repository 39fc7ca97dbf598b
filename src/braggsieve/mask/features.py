"""The bad-pixel features F1-F6 of the robust mask maker (after Sadri et al. 2022, section 3), streamed.

Series are arrays ``(frames, *units, rows, cols)``: ``units`` is ``()`` for a single image per frame
(counting detectors, (frames, ny, nx)) or ``(cells, modules)`` for multi-module detectors with memory cells
(AGIPD-like (frames, cells, modules, 512, 128)).  One gain stage is one series (a forced-gain dark run).
Frames arrive in batches; per-pixel state is a few float64 arrays of the size of one frame, so memory does
not grow with the number of frames.

* F1 -- each frame's robust mean per unit (a regular sample of at most ``frame_sample`` pixels); frames
  more than lambda robust sigmas from the others (per unit) are removed from the statistics.
* F2 / F3 -- per-pixel temporal mean / standard deviation of the dark series.
* F4 / F5 -- per-pixel temporal mean and std of the gain-indicator data per stage.
* F6 -- per-pixel mean over the flat frames of the distance from a robust local plane, in sigmas
  (:func:`braggsieve.mask.robust.local_plane_snr`), after subtracting the dark mean.

F2, F3, F5 and F6 are compared with the robust Gaussian of the same feature over a ``block`` of
neighbouring pixels (an ASIC, 64 x 64 by default): the pixel is bad when ``|SNR| > lambda``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .bits import Bit, flag
from .params import COUNTING_MIN_SIGMA, MaskParams
from .robust import local_plane_snr, robust_gaussian_fit


def valid_range(dtype: np.dtype, counting: bool) -> tuple[float, float]:
    """Closed range of valid sample values: counting detectors mark bad pixels with negative values (Pilatus
    -1/-2) or the dtype's maximum (Eiger 0xFFFFFFFF); integrating detectors have no markers."""
    if not counting:
        return -math.inf, math.inf
    high = math.inf
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(dtype, np.signedinteger):
        high = float(np.iinfo(dtype).max) - 1.0
    return 0.0, high


@njit(cache=True, parallel=True)
def _accumulate(frames, include, npix, sign, low, high, shift, count, s1, s2, vmin, vmax):
    nframes, total = frames.shape
    for p in prange(total):
        unit = p // npix
        for f in range(nframes):
            if not include[f, unit]:
                continue
            x = float(frames[f, p])
            if not (x >= low and x <= high):
                continue
            if count[p] == 0 and sign > 0 and np.isnan(shift[p]):
                shift[p] = x
            d = x - shift[p]
            count[p] += sign
            s1[p] += sign * d
            s2[p] += sign * d * d
            if sign > 0:
                if x < vmin[p]:
                    vmin[p] = x
                if x > vmax[p]:
                    vmax[p] = x


class SeriesStatistics:
    """Running per-pixel count, mean, standard deviation, minimum and maximum of a series.

    ``unit_shape`` and ``pixel_shape`` (rows, cols) describe one frame.  Sums are float64, taken relative to
    each pixel's first valid value (exact for integer data).  Samples outside ``valid`` are skipped.
    """

    def __init__(self, unit_shape: tuple[int, ...], pixel_shape: tuple[int, int],
                 valid: tuple[float, float] = (-math.inf, math.inf)):
        self.unit_shape = tuple(unit_shape)
        self.pixel_shape = tuple(pixel_shape)
        self.units = int(np.prod(self.unit_shape, dtype=np.int64))
        self.npix = int(np.prod(self.pixel_shape, dtype=np.int64))
        size = self.units * self.npix
        self.valid = valid
        self._shift = np.full(size, np.nan)
        self._count = np.zeros(size, dtype=np.int64)
        self._s1 = np.zeros(size)
        self._s2 = np.zeros(size)
        self._min = np.full(size, np.inf)
        self._max = np.full(size, -np.inf)

    def _update(self, frames: np.ndarray, include: np.ndarray | None, sign: int) -> None:
        frames = np.ascontiguousarray(frames).reshape(frames.shape[0], -1)
        if include is None:
            include = np.ones((frames.shape[0], self.units), dtype=bool)
        include = np.ascontiguousarray(include, dtype=bool).reshape(frames.shape[0], self.units)
        _accumulate(frames, include, self.npix, sign, float(self.valid[0]), float(self.valid[1]), self._shift,
                    self._count, self._s1, self._s2, self._min, self._max)

    def add(self, frames: np.ndarray, include: np.ndarray | None = None) -> None:
        """Add a batch ``(n, *unit_shape, rows, cols)``; ``include`` (n, *unit_shape) bool selects frames."""
        self._update(frames, include, 1)

    def remove(self, frames: np.ndarray, include: np.ndarray) -> None:
        """Take back frames added before (e.g. F1 outliers); minimum and maximum keep them."""
        self._update(frames, include, -1)

    def _shaped(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape(self.unit_shape + self.pixel_shape)

    @property
    def count(self) -> np.ndarray:
        """Valid samples per pixel, int64 (*unit_shape, rows, cols)."""
        return self._shaped(self._count)

    @property
    def mean(self) -> np.ndarray:
        """Temporal mean per pixel, float64; NaN without samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._shaped(self._shift + self._s1 / self._count)

    @property
    def std(self) -> np.ndarray:
        """Temporal standard deviation (ddof=1) per pixel, float64; NaN with fewer than 2 samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (self._s2 - self._s1 * self._s1 / self._count) / (self._count - 1)
            return self._shaped(np.sqrt(np.maximum(var, 0.0)))

    @property
    def constant(self) -> np.ndarray:
        """True where every valid sample had the same value (and there was at least one)."""
        return self._shaped((self._count > 0) & (self._min == self._max))


def _as_float(frames: np.ndarray, valid: tuple[float, float]) -> np.ndarray:
    values = frames.astype(np.float64)
    values[~((values >= valid[0]) & (values <= valid[1]))] = np.nan
    return values


def frame_locations(frames: np.ndarray, exclude: np.ndarray, params: MaskParams, counting: bool,
                    valid: tuple[float, float]) -> np.ndarray:
    """F1 values: robust mean of each frame and unit, float64 (n, *units), from a regular pixel sample.

    ``frames`` (n, *units, rows, cols); ``exclude`` bool (*units, rows, cols) or (rows, cols): pixels kept
    out (gaps).
    """
    n = frames.shape[0]
    unit_shape = frames.shape[1:-2]
    npix = frames.shape[-2] * frames.shape[-1]
    stride = max(1, npix // params.frame_sample)
    flat = frames.reshape(n, -1, npix)[:, :, ::stride]
    sample = _as_float(flat, valid)
    keep = np.broadcast_to(exclude, unit_shape + frames.shape[-2:]).reshape(-1, npix)[:, ::stride]
    sample[:, keep] = np.nan
    min_sigma = COUNTING_MIN_SIGMA if counting else 0.0
    mu = robust_gaussian_fit(sample, lam=params.lam, likely=params.likely, min_sigma=min_sigma)[0]
    return mu.reshape((n,) + unit_shape)


def outlier_frames(locations: np.ndarray, params: MaskParams, counting: bool) -> np.ndarray:
    """F1: bool (frames, *units), True for frames whose robust mean is more than lambda sigmas off."""
    min_sigma = COUNTING_MIN_SIGMA if counting else 0.0
    mu, sigma, _ = robust_gaussian_fit(locations, axis=0, lam=params.lam, likely=params.likely,
                                       min_sigma=min_sigma)
    return _beyond(locations, mu, sigma, params.lam) | ~np.isfinite(locations)


def _beyond(values, mu, sigma, lam):
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = (values - mu) / sigma
    return np.abs(np.where(values == mu, 0.0, snr)) > lam


def block_snr(values: np.ndarray, exclude: np.ndarray, params: MaskParams, min_sigma: float) -> np.ndarray:
    """Each pixel's feature value against the robust Gaussian of its block, in robust sigmas.

    ``values`` float (*units, rows, cols); ``exclude`` bool broadcastable to it (kept out of the fits, their
    SNR is still computed).  Blocks are ``params.block`` tiles of (rows, cols); edge tiles are smaller.
    Returns float64 of the shape of ``values``; a block whose sigma is 0 gives 0 for pixels equal to its
    mean and +-inf for the others; NaN where the value is NaN or the block has < 2 usable pixels.
    """
    rows, cols = values.shape[-2:]
    brow, bcol = params.block
    nrow, ncol = -(-rows // brow), -(-cols // bcol)
    lead = values.shape[:-2]
    padded = np.full(lead + (nrow * brow, ncol * bcol), np.nan)
    padded[..., :rows, :cols] = np.where(np.broadcast_to(exclude, values.shape), np.nan, values)
    tiles = padded.reshape(lead + (nrow, brow, ncol, bcol)).swapaxes(-3, -2)
    mu, sigma, _ = robust_gaussian_fit(tiles.reshape(lead + (nrow, ncol, brow * bcol)), lam=params.lam,
                                       likely=params.likely, min_sigma=min_sigma)
    full_mu = np.repeat(np.repeat(mu, brow, axis=-2), bcol, axis=-1)[..., :rows, :cols]
    full_sigma = np.repeat(np.repeat(sigma, brow, axis=-2), bcol, axis=-1)[..., :rows, :cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = (values - full_mu) / full_sigma
    return np.where(values == full_mu, 0.0, snr)


def dark_bits(stats: SeriesStatistics, exclude: np.ndarray, params: MaskParams,
              counting: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bits of F2 (offset), F3 (noise), constant pixels and missing data for one dark series.

    Returns (uint32 (*units, rows, cols), {"F2": snr, "F3": snr}).  Counting detectors use a minimum sigma
    of 1/6 count and call a constant dark pixel dead (stuck) only when its constant count is not 0 (no
    counts in the dark is normal).
    """
    min_sigma = COUNTING_MIN_SIGMA if counting else 0.0
    shape = stats.unit_shape + stats.pixel_shape
    no_data = stats.count < params.min_frames
    out = np.broadcast_to(exclude, shape) | no_data
    snr2 = block_snr(stats.mean, out, params, min_sigma)
    snr3 = block_snr(stats.std, out, params, min_sigma)
    bits = np.zeros(shape, dtype=np.uint32)
    bits[no_data] |= flag(Bit.NO_DATA)
    bits[_over(np.abs(snr2), params.lam, no_data)] |= flag(Bit.OFFSET)
    bits[_over(snr3, params.lam, no_data)] |= flag(Bit.NOISY)
    dead = _over(-snr3, params.lam, no_data)
    if counting:  # stuck: the same non-zero count in every frame (Poisson(r): probability <= 0.37**frames)
        dead |= stats.constant & (stats.mean != 0) & ~no_data
    else:
        dead |= stats.constant & ~no_data
    bits[dead] |= flag(Bit.DEAD)
    return bits, {"F2": snr2, "F3": snr3}


def _over(snr: np.ndarray, lam: float, no_data: np.ndarray) -> np.ndarray:
    return (snr > lam) & ~no_data


def _median_sign(delta: np.ndarray) -> np.ndarray:
    """+1 or -1 per unit: the sign of the median of the finite ``delta`` (*units, rows, cols) of each unit
    (+1 for a unit without any), shaped (*units, 1, 1)."""
    flat = delta.reshape(delta.shape[:-2] + (-1,))
    flat = np.where(np.isfinite(flat), flat, np.nan)
    finite = np.isfinite(flat).any(axis=-1)
    median = np.nanmedian(np.where(finite[..., None], flat, 0.0), axis=-1)
    return np.where(median >= 0, 1.0, -1.0)[..., None, None]


def gain_bits(stages: list[SeriesStatistics], exclude: np.ndarray, params: MaskParams) -> list[np.ndarray]:
    """F4 and F5 from the gain-indicator statistics of each stage (one dark series per stage, in order).

    F4 (every stage's mask): consecutive stages H, H+1 whose indicator means are not separated by more than
    lambda combined standard deviations, ``s * (mu[H+1] - mu[H]) / sqrt(sd[H]^2 + sd[H+1]^2) <= lambda``,
    ``s`` = the sign of the median separation of the pixel's unit (module and cell; so that swapped levels
    count as not separated, and units are independent of each other).
    F5 (that stage's mask): the indicator mean against its block's robust Gaussian.
    """
    shape = stages[0].unit_shape + stages[0].pixel_shape
    common = np.zeros(shape, dtype=np.uint32)
    for low, high in zip(stages, stages[1:]):
        delta = high.mean - low.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            separation = delta / np.hypot(low.std, high.std)
        sign = _median_sign(np.where(np.broadcast_to(exclude, shape), np.nan, delta))
        unseparated = ~(sign * separation > params.lam)
        unseparated &= (low.count >= params.min_frames) & (high.count >= params.min_frames)
        common[unseparated] |= flag(Bit.GAIN_STAGES)
    result = []
    for stage in stages:
        no_data = stage.count < params.min_frames
        snr5 = block_snr(stage.mean, np.broadcast_to(exclude, shape) | no_data, params, 0.0)
        bits = common.copy()
        bits[_over(np.abs(snr5), params.lam, no_data)] |= flag(Bit.GAIN_LEVEL)
        bits[no_data] |= flag(Bit.NO_DATA)
        result.append(bits)
    return result


class FlatStatistics:
    """F6 accumulator: per-pixel sum of local-plane SNR over flat frames, plus the raw series statistics."""

    def __init__(self, unit_shape: tuple[int, ...], pixel_shape: tuple[int, int], params: MaskParams,
                 counting: bool, valid: tuple[float, float]):
        self.params = params
        self.counting = counting
        self.raw = SeriesStatistics(unit_shape, pixel_shape, valid)
        self._snr_sum = np.zeros(tuple(unit_shape) + tuple(pixel_shape))
        self._snr_count = np.zeros(self._snr_sum.shape, dtype=np.int64)

    def add(self, frames: np.ndarray, dark_mean: np.ndarray, exclude: np.ndarray) -> None:
        """Add flat frames (n, *units, rows, cols); ``dark_mean`` (*units, rows, cols) is subtracted first."""
        self.raw.add(frames)
        values = _as_float(frames, self.raw.valid) - dark_mean
        values[:, np.broadcast_to(exclude, values.shape[1:])] = np.nan
        min_sigma = COUNTING_MIN_SIGMA if self.counting else 0.0
        snr = local_plane_snr(values, tile=self.params.window, lam=self.params.lam, likely=self.params.likely,
                              min_sigma=min_sigma)
        finite = np.isfinite(snr)
        self._snr_sum += np.where(finite, snr, 0.0).sum(axis=0)
        self._snr_count += finite.sum(axis=0)

    @property
    def mean_snr(self) -> np.ndarray:
        """F6: mean local SNR per pixel over the flat frames, float64; NaN where never fitted."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._snr_sum / self._snr_count

    def bits(self, exclude: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Bits of F6 (over/under-responding) and dead (constant under illumination); also NO_DATA."""
        params = self.params
        no_data = (self._snr_count < params.min_frames) | (self.raw.count < params.min_frames)
        feature = self.mean_snr
        snr6 = block_snr(feature, np.broadcast_to(exclude, feature.shape) | no_data, params, 0.0)
        bits = np.zeros(feature.shape, dtype=np.uint32)
        bits[_over(snr6, params.lam, no_data)] |= flag(Bit.OVER_RESPONDING)
        bits[_over(-snr6, params.lam, no_data)] |= flag(Bit.UNDER_RESPONDING)
        bits[self.raw.constant & (self.raw.count >= params.min_frames)] |= flag(Bit.DEAD)
        bits[no_data & ~self.raw.constant] |= flag(Bit.NO_DATA)
        return bits, {"F6": snr6}
