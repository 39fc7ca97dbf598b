"""The mask maker: dark (and flat) series in, uint32 bit mask out, streaming frames in batches.

Series are anything that follows :class:`Series` (files through ``braggsieve.io.series``, arrays through
:class:`ArraySeries`); this module knows nothing about files.  One dark series per gain stage, in stage
order; optional flat series, the i-th for the i-th stage.  See :mod:`braggsieve.mask.features` for F1-F6.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import InputError, ParameterError
from .bits import Bit, flag
from .features import (FlatStatistics, SeriesStatistics, dark_bits, frame_locations, gain_bits, outlier_frames,
                       valid_range)
from .params import MaskParams

log = logging.getLogger(__name__)


class Series(Protocol):
    """A series of frames (frames, *units, rows, cols), optionally with gain-indicator data of that shape."""

    name: str
    nframes: int
    frame_shape: tuple[int, ...]
    dtype: np.dtype
    has_gain: bool

    def batches(self, size: int, cells: slice | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Consecutive (frames, gain or None) batches of at most ``size`` frames; with ``cells``, only that
        slice of the first unit axis (memory cells of a 5-D series)."""

    def read(self, indices: np.ndarray, cells: slice | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames (and gain) at sorted ``indices`` (and ``cells``, as in :meth:`batches`)."""


@dataclass
class ArraySeries:
    """A :class:`Series` over in-memory arrays."""

    frames: np.ndarray
    gain: np.ndarray | None = None
    name: str = "array"

    def __post_init__(self):
        if self.gain is not None and self.gain.shape != self.frames.shape:
            raise InputError(f"gain data {self.gain.shape} and frames {self.frames.shape} differ in shape", self.name)

    nframes = property(lambda self: self.frames.shape[0])
    frame_shape = property(lambda self: tuple(self.frames.shape[1:]))
    dtype = property(lambda self: self.frames.dtype)
    has_gain = property(lambda self: self.gain is not None)

    def batches(self, size, cells=None):
        for start in range(0, self.nframes, size):
            yield self.read(np.arange(start, min(start + size, self.nframes)), cells)

    def read(self, indices, cells=None):
        select = (indices,) if cells is None else (indices, cells)
        return self.frames[select], None if self.gain is None else self.gain[select]


@dataclass
class CellGroup:
    """A :class:`Series` restricted to a slice of memory cells (the first unit axis of a 5-D series)."""

    series: Series
    cells: slice

    def __post_init__(self):
        self.name = self.series.name
        self.nframes = self.series.nframes
        self.frame_shape = (len(range(*self.cells.indices(self.series.frame_shape[0]))),) + \
            tuple(self.series.frame_shape[1:])
        self.dtype = self.series.dtype
        self.has_gain = self.series.has_gain

    def batches(self, size, cells=None):
        return self.series.batches(size, self.cells)

    def read(self, indices, cells=None):
        return self.series.read(indices, self.cells)


@dataclass
class MaskResult:
    """What the mask maker found.

    ``stage_bits`` uint32 (stages, *units, rows, cols); ``bits`` = OR over stages (*units, rows, cols);
    ``outlier_frames[s]`` bool (frames, *units) of stage s (F1); ``counts``: bit name -> number of
    (stage, unit, pixel) entries with that bit; ``bad_pixels``: entries of ``bits`` that are bad;
    ``features``: per stage, SNR maps {"F2", "F3", "F6"} float32 (empty unless asked for);
    ``groups``: the cell groups processed one after the other (1 = a single pass).
    """

    stage_bits: np.ndarray
    counting: bool
    outlier_frames: list[np.ndarray]
    counts: dict[str, int]
    features: list[dict[str, np.ndarray]] = field(default_factory=list)
    groups: int = 1

    @property
    def bits(self) -> np.ndarray:
        return np.bitwise_or.reduce(self.stage_bits, axis=0)

    @property
    def bad_pixels(self) -> int:
        return int(np.count_nonzero(self.bits))


#: Working-memory model of one group, bytes per pixel entry (one pixel of one cell and module): statistics
#: of a series (count, shift, sums, min, max: 6 x 8 B), kept per dark series and its gain data; 4 B of bits
#: and 8 B of SNR maps per stage; 64 B per flat series (statistics + F6 sums); about 80 B of float64
#: temporaries while the block fits run; and the batch of frames being read (plus 21 B per flat sample).
SERIES_STATE_BYTES = 48
STAGE_BYTES = 4
FEATURE_BYTES = 8
FLAT_BYTES = 64
FINAL_BYTES = 80
FLAT_SAMPLE_BYTES = 21


def entry_bytes(darks: Sequence[Series], flats: Sequence[Series], params: MaskParams,
                keep_features: bool) -> int:
    """Estimated working memory per pixel entry of the mask maker (see the constants above), bytes."""
    dark = darks[0]
    per_stage = SERIES_STATE_BYTES * (2 if dark.has_gain else 1) + STAGE_BYTES + FEATURE_BYTES * keep_features
    sample = dark.dtype.itemsize * (2 if dark.has_gain else 1) + (FLAT_SAMPLE_BYTES if flats else 0)
    return len(darks) * per_stage + len(flats) * FLAT_BYTES + FINAL_BYTES + params.batch * sample


def cell_groups(darks: Sequence[Series], flats: Sequence[Series], params: MaskParams,
                keep_features: bool) -> list[slice | None]:
    """Split the memory cells (first unit axis of 5-D series) into consecutive groups whose working memory
    (:func:`entry_bytes`) fits ``params.memory_limit`` GB; ``[None]`` (one pass) for 3-D series or when
    everything fits.  A single cell above the limit is still one group (logged)."""
    shape = darks[0].frame_shape
    per_entry = entry_bytes(darks, flats, params, keep_features)
    total = per_entry * int(np.prod(shape, dtype=np.int64))
    budget = params.memory_limit * 1e9
    if len(shape) < 4 or total <= budget:
        return [None]
    cells = shape[0]
    per_cell = total / cells
    size = int(budget // per_cell)
    if size < 1:
        log.warning("one memory cell needs %.2f GB, above --memory-limit %.2f GB", per_cell / 1e9,
                    params.memory_limit)
        size = 1
    return [slice(start, min(start + size, cells)) for start in range(0, cells, size)]


def _check_inputs(darks: Sequence[Series], flats: Sequence[Series], params: MaskParams) -> None:
    if not darks:
        raise ParameterError("at least one dark series is needed")
    if len(flats) > len(darks):
        raise ParameterError(f"{len(flats)} flat series for {len(darks)} gain stages: give at most one per stage")
    shape = darks[0].frame_shape
    if len(shape) < 2:
        raise InputError(f"frames must be at least 2-D images, got frame shape {shape}", darks[0].name)
    for series in list(darks) + list(flats):
        if series.frame_shape != shape:
            raise InputError(f"frame shape {series.frame_shape} differs from the first dark series' {shape}",
                             series.name)
        if series.nframes < params.min_frames:
            raise InputError(f"{series.nframes} frames; robust statistics need at least {params.min_frames} "
                             f"(--min-frames)", series.name)
    if len({s.has_gain for s in darks}) > 1:
        raise InputError("some dark series have gain-indicator data and others not", darks[0].name)


def _dark_stage(series: Series, exclude: np.ndarray, params: MaskParams, counting: bool,
                tick: Callable[[int], None]) -> tuple[SeriesStatistics, SeriesStatistics | None, np.ndarray]:
    units, pixels = series.frame_shape[:-2], series.frame_shape[-2:]
    valid = valid_range(series.dtype, counting)
    stats = SeriesStatistics(units, pixels, valid)
    gain = SeriesStatistics(units, pixels) if series.has_gain else None
    locations = []
    for frames, gain_frames in series.batches(params.batch):
        stats.add(frames)
        if gain is not None:
            gain.add(gain_frames)
        locations.append(frame_locations(frames, exclude, params, counting, valid))
        tick(frames.shape[0])
    outliers = outlier_frames(np.concatenate(locations), params, counting)
    bad = np.flatnonzero(outliers.reshape(outliers.shape[0], -1).any(axis=1))
    for start in range(0, bad.size, params.batch):
        indices = bad[start:start + params.batch]
        frames, gain_frames = series.read(indices)
        stats.remove(frames, outliers[indices])
        if gain is not None:
            gain.remove(gain_frames, outliers[indices])
    if bad.size:
        log.info("%s: %d frame(s) rejected as outliers (F1)", series.name, bad.size)
    return stats, gain, outliers


def _mask_group(darks: Sequence[Series], flats: Sequence[Series], out: np.ndarray, params: MaskParams,
                counting: bool, keep_features: bool, tick: Callable[[float], None]):
    """F1-F6 on series of one cell group: (stage bits uint32 (stages, *units, rows, cols), outlier frames per
    stage, SNR maps per stage or empty dicts).  ``out``: pixels kept out of every fit."""
    stage_bits, features, outliers, dark_means, gain_stats = [], [], [], [], []
    for stage, series in enumerate(darks):
        stats, gain, rejected = _dark_stage(series, out, params, counting, tick)
        bits, snr = dark_bits(stats, out, params, counting)
        stage_bits.append(bits)
        features.append(snr if keep_features else {})
        outliers.append(rejected)
        dark_means.append(stats.mean if stage < len(flats) else None)
        gain_stats.append(gain)
        del stats
    if gain_stats[0] is not None:
        for bits, extra in zip(stage_bits, gain_bits(gain_stats, out, params)):
            bits |= extra
    del gain_stats
    for stage, series in enumerate(flats):
        shape = series.frame_shape
        flat = FlatStatistics(shape[:-2], shape[-2:], params, counting, valid_range(series.dtype, counting))
        for frames, _ in series.batches(params.batch):
            flat.add(frames, dark_means[stage], out)
            tick(frames.shape[0])
        bits, snr = flat.bits(out)
        stage_bits[stage] |= bits
        if keep_features:
            features[stage].update(snr)
    features = [{k: v.astype(np.float32) for k, v in f.items()} for f in features]
    return np.stack(stage_bits), outliers, features


def make_mask(darks: Sequence[Series], flats: Sequence[Series] = (), *, params: MaskParams = MaskParams(),
              counting: bool, exclude: np.ndarray | None = None, input_mask: np.ndarray | None = None,
              progress: Callable[[float], None] | None = None, keep_features: bool = False) -> MaskResult:
    """Run F1-F6 on one dark series per gain stage (and optional flat series) and combine the bits.

    ``exclude`` bool broadcastable to (*units, rows, cols): gaps and ASIC edges (bit GAP, left out of every
    fit).  ``input_mask`` bool of that shape: the input file's own bad pixels (bit INPUT_MASK, also left
    out).  ``progress(n)`` is called after every batch with the number of frames done (divided by the number
    of cell groups).  ``keep_features``: also return the SNR maps (float32, 8 B per pixel entry and stage).

    Memory: 5-D series are processed in groups of memory cells whose working state fits
    ``params.memory_limit`` (:func:`cell_groups`), each group in its own pass over the files (reading only
    its cells); every feature is computed per (cell, module), so the result is the same, bit for bit, as
    in one pass.  The result itself (uint32 per stage and pixel entry) is allocated once, in full.
    """
    _check_inputs(darks, flats, params)
    shape = darks[0].frame_shape
    gaps = np.zeros(shape, dtype=bool) if exclude is None else np.broadcast_to(exclude, shape)
    given = np.zeros(shape, dtype=bool) if input_mask is None else np.broadcast_to(input_mask, shape)
    groups = cell_groups(darks, flats, params, keep_features)
    if len(groups) > 1:
        log.info("%d memory cells in %d groups of <= %d (--memory-limit %g GB): one pass over the files per "
                 "group", shape[0], len(groups), groups[0].stop, params.memory_limit)
    tick = progress or (lambda n: None)
    group_tick = (lambda n: tick(n / len(groups))) if len(groups) > 1 else tick
    result = np.empty((len(darks),) + shape, dtype=np.uint32)
    outliers = [np.empty((s.nframes,) + shape[:-2], dtype=bool) for s in darks]
    features: list[dict[str, np.ndarray]] = [{} for _ in darks]
    counts = dict.fromkeys((b.name for b in Bit), 0)
    for group in groups:
        view = () if group is None else (group,)
        part = lambda series: series if group is None else CellGroup(series, group)  # noqa: E731
        gap, mine = gaps[view], given[view]
        bits, rejected, snr = _mask_group([part(s) for s in darks], [part(s) for s in flats], gap | mine,
                                          params, counting, keep_features, group_tick)
        bits[:, mine] |= flag(Bit.INPUT_MASK)
        bits[:, gap] = flag(Bit.GAP) | np.where(mine[gap], flag(Bit.INPUT_MASK), 0).astype(np.uint32)
        result[(slice(None),) + view] = bits
        for stage in range(len(darks)):
            outliers[stage][(slice(None),) + view] = rejected[stage]
            for name, values in snr[stage].items():
                features[stage].setdefault(name, np.empty(shape, dtype=np.float32))[view] = values
        for b in Bit:
            counts[b.name] += int(np.count_nonzero(bits & flag(b)))
        del bits
    if counts["NO_DATA"] + counts["GAP"] and not _any_good_data(result):
        raise InputError("no pixel has enough valid samples (all NaN, markers or gaps?)", darks[0].name)
    return MaskResult(result, counting, outliers, counts, features if keep_features else [], len(groups))


def _any_good_data(result: np.ndarray) -> bool:
    """True when some entry of some stage is neither NO_DATA nor GAP."""
    unusable = np.uint32(flag(Bit.NO_DATA) | flag(Bit.GAP))
    return any(np.any((stage & unusable) == 0) for stage in result)
