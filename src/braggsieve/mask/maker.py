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

    def batches(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Consecutive (frames, gain or None) batches of at most ``size`` frames."""

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames (and gain) at sorted ``indices``."""


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

    def batches(self, size):
        for start in range(0, self.nframes, size):
            yield self.read(np.arange(start, min(start + size, self.nframes)))

    def read(self, indices):
        return self.frames[indices], None if self.gain is None else self.gain[indices]


@dataclass
class MaskResult:
    """What the mask maker found.

    ``stage_bits`` uint32 (stages, *units, rows, cols); ``bits`` = OR over stages (*units, rows, cols);
    ``outlier_frames[s]`` bool (frames, *units) of stage s (F1); ``counts``: bit name -> number of
    (stage, unit, pixel) entries with that bit; ``bad_pixels``: entries of ``bits`` that are bad;
    ``features``: per stage, SNR maps {"F2", "F3", "F6"} float32.
    """

    stage_bits: np.ndarray
    counting: bool
    outlier_frames: list[np.ndarray]
    features: list[dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def bits(self) -> np.ndarray:
        return np.bitwise_or.reduce(self.stage_bits, axis=0)

    @property
    def counts(self) -> dict[str, int]:
        return {b.name: int(np.count_nonzero(self.stage_bits & flag(b))) for b in Bit}

    @property
    def bad_pixels(self) -> int:
        return int(np.count_nonzero(self.bits))


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


def make_mask(darks: Sequence[Series], flats: Sequence[Series] = (), *, params: MaskParams = MaskParams(),
              counting: bool, exclude: np.ndarray | None = None, input_mask: np.ndarray | None = None,
              progress: Callable[[int], None] | None = None) -> MaskResult:
    """Run F1-F6 on one dark series per gain stage (and optional flat series) and combine the bits.

    ``exclude`` bool broadcastable to (*units, rows, cols): gaps and ASIC edges (bit GAP, left out of every
    fit).  ``input_mask`` bool of that shape: the input file's own bad pixels (bit INPUT_MASK, also left
    out).  ``progress(n)`` is called after every batch with the number of frames done.
    """
    _check_inputs(darks, flats, params)
    shape = darks[0].frame_shape
    gaps = np.zeros(shape, dtype=bool) if exclude is None else np.broadcast_to(exclude, shape)
    given = np.zeros(shape, dtype=bool) if input_mask is None else np.broadcast_to(input_mask, shape)
    out = gaps | given
    tick = progress or (lambda n: None)
    stage_bits, features, outliers, dark_stats, gain_stats = [], [], [], [], []
    for series in darks:
        stats, gain, rejected = _dark_stage(series, out, params, counting, tick)
        bits, snr = dark_bits(stats, out, params, counting)
        stage_bits.append(bits)
        features.append(snr)
        outliers.append(rejected)
        dark_stats.append(stats)
        gain_stats.append(gain)
    if gain_stats[0] is not None:
        for bits, extra in zip(stage_bits, gain_bits(gain_stats, out, params)):
            bits |= extra
    for stage, series in enumerate(flats):
        flat = FlatStatistics(shape[:-2], shape[-2:], params, counting, valid_range(series.dtype, counting))
        for frames, _ in series.batches(params.batch):
            flat.add(frames, dark_stats[stage].mean, out)
            tick(frames.shape[0])
        bits, snr = flat.bits(out)
        stage_bits[stage] |= bits
        features[stage].update(snr)
    result = np.stack(stage_bits)
    result[:, given] |= flag(Bit.INPUT_MASK)
    result[:, gaps] = flag(Bit.GAP) | np.where(given[gaps], flag(Bit.INPUT_MASK), 0).astype(np.uint32)
    if np.all(result & flag(Bit.NO_DATA) | (result & flag(Bit.GAP))):
        raise InputError("no pixel has enough valid samples (all NaN, markers or gaps?)", darks[0].name)
    features = [{k: v.astype(np.float32) for k, v in f.items()} for f in features]
    return MaskResult(result, counting, outliers, features)
