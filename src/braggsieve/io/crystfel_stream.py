"""Reading the indexing outcome of each frame from a CrystFEL stream file (``indexamajig -o run.stream``).

A stream holds one chunk per frame, between ``----- Begin chunk -----`` and ``----- End chunk -----``; the
lines read here are ``Image filename: <file>``, ``Event: <event>`` (``//<row>`` for a CXI file) and
``indexed_by = <method>`` (``none`` when the frame was not indexed).  Everything else (peaks, reflections,
crystals) is skipped line by line, so memory stays small for any stream size.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import InputError

BEGIN = "----- Begin chunk -----"
END = "----- End chunk -----"


@dataclass(frozen=True)
class StreamChunk:
    """One frame of a stream: the image file as indexamajig named it, its event ('' when none) and the
    indexing method that succeeded (``none`` when indexing failed)."""

    filename: str
    event: str
    indexed_by: str

    @property
    def indexed(self) -> bool:
        return self.indexed_by.lower() != "none"


def read_stream(path: str | os.PathLike) -> Iterator[StreamChunk]:
    """The chunks of a CrystFEL stream, in file order.  Raises InputError for a file that is not a stream
    (no chunk) or a chunk without ``Image filename``."""
    count = 0
    try:
        with open(path, errors="replace") as handle:
            fields: dict[str, str] | None = None
            for number, line in enumerate(handle, 1):
                line = line.strip()
                if line == BEGIN:
                    fields = {}
                elif line == END and fields is not None:
                    if "filename" not in fields:
                        raise InputError(f"line {number}: chunk without 'Image filename'", path)
                    count += 1
                    yield StreamChunk(fields["filename"], fields.get("event", ""), fields.get("indexed_by", "none"))
                    fields = None
                elif fields is not None:
                    if line.startswith("Image filename:"):
                        fields["filename"] = line.split(":", 1)[1].strip()
                    elif line.startswith("Event:"):
                        fields["event"] = line.split(":", 1)[1].strip()
                    elif line.startswith("indexed_by"):
                        fields["indexed_by"] = line.split("=", 1)[1].strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the CrystFEL stream ({exc})", path) from None
    if count == 0:
        raise InputError("not a CrystFEL stream (no '----- Begin chunk -----')", path)


def indexed_frames(path: str | os.PathLike, cxi_offsets: Mapping[str, int], nframes: int
                   ) -> tuple[np.ndarray, int]:
    """(indexed bool (nframes,), chunks that match no frame) from the stream at ``path``.

    ``cxi_offsets``: CXI file name (base name) -> the run's frame number of its row 0; a chunk of
    ``<dir>/<name> //<row>`` is frame ``cxi_offsets[name] + row``.  Frames absent from the stream (e.g. not
    hits, so never given to indexamajig) count as not indexed."""
    indexed = np.zeros(nframes, dtype=bool)
    unmatched = 0
    for chunk in read_stream(path):
        offset = cxi_offsets.get(Path(chunk.filename).name)
        row = chunk.event.lstrip("/").split("/")[0] if chunk.event else "0"
        if offset is None or not row.isdigit() or not 0 <= offset + int(row) < nframes:
            unmatched += 1
            continue
        indexed[offset + int(row)] |= chunk.indexed
    return indexed, unmatched
