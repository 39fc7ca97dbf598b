"""One part of a run: a block of frames -> one sigma-clip per frame -> sparse file + CXI peaks + JSON record.

A part is the unit of work of ``braggsieve process`` (one Dask task each) and of ``braggsieve stream`` (one
block of received frames).  Its files, in ``parts/`` of the output folder::

    part_NNNNN.h5     sparse frames (braggsieve.io.sparse layout: picked pixels + clipped background)
    part_NNNNN.cxi    peaks per frame (braggsieve.io.cxi layout), images linked / copied / absent
    part_NNNNN.json   the record: per frame its position, source file and index, peaks, pixels kept and the
                      CRC-32 of the raw frame and of its results -- written last

Each file is written under a temporary name and renamed when complete, the record last: a part is complete
exactly when its record exists, so an interrupted run leaves no half-written part, and a resumed run skips the
parts that have a record.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..engine.peaks import PeakParams
from ..engine.pick import PickParams
from ..io.atomic import atomic_output, atomic_outputs
from ..io.cxi import CxiWriter
from ..io.frames import FrameIds
from .sparse import open_sparse_writer

PART_FIELDS = ("position", "source", "index", "npeaks", "kept", "input_crc32", "result_crc32")


@dataclass(frozen=True)
class PartPaths:
    """The files of part ``number`` in ``folder`` (the run's ``parts/`` folder)."""

    folder: Path
    number: int

    def _path(self, suffix: str) -> Path:
        return Path(self.folder) / f"part_{self.number:05d}{suffix}"

    sparse = property(lambda self: self._path(".h5"))
    cxi = property(lambda self: self._path(".cxi"))
    record = property(lambda self: self._path(".json"))

    def is_complete(self) -> bool:
        """True when the record exists (written after the other files)."""
        return self.record.exists() and self.sparse.exists() and self.cxi.exists()


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A part record: ``{"part", "start", "stop", "sources", "seconds", "frames": {field: list}}``."""
    with open(path) as handle:
        return json.load(handle)


def frame_checksums(frames: np.ndarray) -> np.ndarray:
    """uint32 ``(n,)``: CRC-32 of each raw frame's bytes (C order, native byte order)."""
    return np.array([zlib.crc32(np.ascontiguousarray(frame)) for frame in frames], dtype=np.uint32)


def result_checksums(results) -> np.ndarray:
    """uint32 ``(n,)``: CRC-32 of everything a frame's results hold (picked pixels and their values, clipped
    background mean and std, every peak field), so two runs agree frame by frame exactly when it agrees."""
    sparse, peaks = results.sparse, results.peaks
    out = np.empty(sparse.nframes, np.uint32)
    for i in range(sparse.nframes):
        lo, hi = int(sparse.frame_ptr[i]), int(sparse.frame_ptr[i + 1])
        crc = zlib.crc32(np.ascontiguousarray(sparse.index[lo:hi]))
        crc = zlib.crc32(np.ascontiguousarray(sparse.intensity[lo:hi]), crc)
        crc = zlib.crc32(np.ascontiguousarray(sparse.background_avg[i], dtype=np.float32), crc)
        crc = zlib.crc32(np.ascontiguousarray(sparse.background_std[i], dtype=np.float32), crc)
        lo, hi = int(peaks.frame_ptr[i]), int(peaks.frame_ptr[i + 1])
        for name in peaks.__dataclass_fields__:
            if name != "frame_ptr":
                crc = zlib.crc32(np.ascontiguousarray(getattr(peaks, name)[lo:hi]), crc)
        out[i] = crc
    return out


def engine_for(setup):
    """The engine of ``setup`` (its device), made once per process and setup (a Dask worker keeps it)."""
    from ..engine.device import select_engine
    from ..geometry import pixels

    cached = _ENGINE.get("setup")
    if cached is not setup:
        d_spacing = pixels.d_spacing(setup.poni) if setup.poni.wavelength is not None else None
        _ENGINE["engine"] = select_engine(setup.device, setup.binning, setup.corrections, setup.integration,
                                          setup.clip, setup.param(PickParams), setup.param(PeakParams), d_spacing)
        _ENGINE["setup"] = setup
    return _ENGINE["engine"]


_ENGINE: dict[str, Any] = {}


def write_part(paths: PartPaths, batches: Iterable[tuple[np.ndarray, FrameIds, list | None]], setup, *,
               shape: tuple[int, int], dtype, sources: list[str], images: str, provenance,
               extra: dict[str, Any] | None = None,
               on_batch: Callable[[FrameIds, Any], None] | None = None) -> dict[str, Any]:
    """Process and write one part; returns its record (also written to ``paths.record``).

    Args:
        batches: ``(frames (n, ny, nx) raw dtype, FrameIds, image refs or None)`` in order; ``FrameIds.source``
            indexes ``sources``.
        setup: the run's pipeline.setup.RunSetup (its params hold PickParams and PeakParams).
        shape, dtype: the frames' (ny, nx) and raw dtype.  images: CxiWriter's mode ("link", "copy", "none").
        provenance: io.provenance.Provenance of the run (stored in both files).
        extra: JSON-ready items added to the record (e.g. the part's frame range).
        on_batch: called as ``on_batch(ids, results)`` (engine FrameResults) after each batch is written.
    """
    engine = engine_for(setup)
    started = time.perf_counter()
    columns: dict[str, list[np.ndarray]] = {name: [] for name in PART_FIELDS}
    with open_sparse_writer(paths.sparse, setup, setup.param(PickParams), dtype, provenance) as sparse_writer, \
            atomic_output(paths.cxi) as cxi_tmp:
        cxi = CxiWriter(cxi_tmp, shape, dtype, images=images, link_dir=paths.cxi.parent)
        pending = collections.deque()  # (frames, ids, refs) of the batches handed to the engine, in order

        def frames_only():
            for frames, ids, refs in batches:
                pending.append((frames, ids, refs))
                yield frames

        try:
            for results in engine.process_many(frames_only()):  # the GPU overlaps the batches in flight
                (frames, ids, refs), sparse = pending.popleft(), results.sparse
                if sparse.intensity.dtype != sparse_writer.dtype:
                    sparse = dataclasses.replace(sparse, intensity=sparse.intensity.astype(sparse_writer.dtype))
                sparse_writer.append(sparse, sources, ids.source, ids.index)
                cxi.append(results.peaks, frames=frames if images == "copy" else None, refs=refs)
                for name, values in (("position", ids.position), ("source", ids.source), ("index", ids.index),
                                     ("npeaks", results.peaks.npeaks), ("kept", np.diff(sparse.frame_ptr)),
                                     ("input_crc32", frame_checksums(frames)),
                                     ("result_crc32", result_checksums(results))):
                    columns[name].append(np.asarray(values, dtype=np.int64))
                if on_batch is not None:
                    on_batch(ids, results)
        except BaseException:
            with contextlib.suppress(Exception):
                cxi.close()
            raise
        cxi.close(provenance)
    record = {"part": paths.number, **(extra or {}), "sources": list(sources),
              "seconds": round(time.perf_counter() - started, 3),
              "frames": {name: np.concatenate(values).tolist() if values else [] for name, values in columns.items()}}
    with atomic_outputs([paths.record]) as (tmp,):
        tmp.write_text(json.dumps(record))
    return record

