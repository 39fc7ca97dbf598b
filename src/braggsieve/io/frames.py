"""Frame sources: one sequence of 2-D frames over HDF5/NeXus files, Eiger master files and fabio images.

``open_frames(paths)`` concatenates its inputs in the order given (each glob pattern expanded in natural
order: ``f_9`` before ``f_10``), applies an optional frame range to the whole sequence and gives

* ``shape`` (ny, nx), ``dtype`` (the raw dtype, native byte order), ``nframes`` (after the range),
* ``iter_batches(batch_size)``: ``(frames (n, ny, nx) ndarray in the raw dtype, FrameIds)`` read chunk by chunk,
  so memory stays bounded whatever the run length,
* ``read_into(out, start)``: decode frames straight into a caller's buffer (e.g. pinned memory for a GPU),
* ``metadata`` (:class:`~braggsieve.io.metadata.DetectorMetadata` of the first input) and ``sources``.

Supported inputs:

* HDF5/NeXus: the dataset at ``h5path`` (default ``/entry/data/data``); a 2-D dataset is one frame, a 3-D
  dataset is (frames, slow, fast).
* Eiger master files: when ``h5path`` is absent and the file's ``/entry/data`` holds ``data_000001``,
  ``data_000002``, ... (external links to the data files), these are read one after the other, up to the
  ``detectorSpecific/nimages`` x ``ntrigger`` frames the master file announces.
* Everything fabio reads: CBF (also ``.cbf.bz2``/``.cbf.gz``), EDF (multi-frame too), TIFF (multi-page too), ...

Bad input (missing file, unreadable or truncated file, missing dataset, wrong dimensionality, frame shapes that
differ between files) raises :class:`~braggsieve.errors.InputError` naming the file.  The first frame is read
when the source is opened, so that a broken first file is reported before any output is created.
"""
from __future__ import annotations

import glob
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import h5py
import hdf5plugin  # noqa: F401  (registers the HDF5 compression filters: bitshuffle-LZ4, ...)
import numpy as np

from ..errors import InputError, ParameterError
from .metadata import DetectorMetadata, read_detector_metadata, with_markers
from .readers import is_hdf5, reason

log = logging.getLogger(__name__)

DEFAULT_H5PATH = "/entry/data/data"
_EIGER_DATA = re.compile(r"^data_(\d{6})$")
# Formats that always hold exactly one frame: their frame count is known without decoding them.
_SINGLE_FRAME_SUFFIXES = (".cbf", ".cbf.bz2", ".cbf.gz", ".mccd", ".img", ".img.gz", ".img.bz2")


@dataclass(frozen=True)
class FrameRange:
    """A python-style slice ``START:STOP[:STEP]`` (0-based, STOP excluded, negatives count from the end)
    over the whole concatenated sequence of input frames."""

    start: int | None = None
    stop: int | None = None
    step: int | None = None

    def __post_init__(self):
        if self.step is not None and self.step <= 0:
            raise ParameterError(f"frame range {self}: STEP must be positive")

    @classmethod
    def parse(cls, text: str) -> "FrameRange":
        """Parse ``"START:STOP[:STEP]"`` (any part may be empty) or a single index ``"I"`` (frame I only)."""
        parts = text.strip().split(":")
        if len(parts) > 3:
            raise ParameterError(f"frame range {text!r} is not START:STOP[:STEP]")
        try:
            values = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise ParameterError(f"frame range {text!r} is not START:STOP[:STEP] of integers") from None
        if len(values) == 1:
            (index,) = values
            if index is None:
                raise ParameterError("empty frame range")
            return cls(index, index + 1 if index != -1 else None, None)
        return cls(*values)

    def indices(self, nframes: int) -> range:
        """The selected frame positions in a sequence of ``nframes`` frames."""
        return range(nframes)[slice(self.start, self.stop, self.step)]

    def __str__(self) -> str:
        show = ["" if v is None else str(v) for v in (self.start, self.stop)]
        return ":".join(show + ([str(self.step)] if self.step is not None else []))


@dataclass(frozen=True)
class FrameIds:
    """Where each frame of a batch comes from.

    Attributes (shape ``(n,)``):
        source: int32, index into :attr:`FrameSource.sources` (the input file as given, e.g. the Eiger master).
        index: int64, 0-based frame index inside that input file.
        position: int64, 0-based position in the source's selected sequence (0 .. nframes-1).
    """

    source: np.ndarray
    index: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


class _Input:
    """One input file: ``nframes`` frames of one shape and dtype; ``read(start, stop, step, out)`` fills
    ``out`` (len(range(start, stop, step)), ny, nx) with its frames."""

    kind = ""

    def __init__(self, path: str):
        self.path = path
        self.shape: tuple[int, int] = (0, 0)
        self.dtype = np.dtype(np.float32)
        self.nframes = 0

    def read(self, start: int, stop: int, step: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release open handles (reopened on the next read)."""


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=")


def _frame_geometry(path: str, where: str, shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    """(nframes, (ny, nx)) of a dataset shape: 2-D = one frame, 3-D = frames."""
    if len(shape) == 2:
        return 1, (int(shape[0]), int(shape[1]))
    if len(shape) == 3:
        return int(shape[0]), (int(shape[1]), int(shape[2]))
    raise InputError(f"dataset {where} has shape {shape}: expected 2-D (one frame) or 3-D (frames, slow, fast)",
                     path)


class _Hdf5Input(_Input):
    """An HDF5/NeXus file: one dataset, or the ``data_NNNNNN`` datasets of an Eiger master file in order."""

    kind = "hdf5"

    def __init__(self, path: str, h5path: str):
        super().__init__(path)
        self.h5path = h5path
        self._file: h5py.File | None = None
        handle = self._open()
        if h5path in handle and isinstance(handle.get(h5path, getlink=False), h5py.Dataset):
            self.parts = [h5path]
        else:
            self.parts = self._eiger_parts(handle, h5path)
            self.kind = "eiger"
        counts, shapes, dtypes = [], set(), set()
        for part in self.parts:
            dataset = self._dataset(part)
            self._check_virtual_sources(dataset, part)
            count, shape = _frame_geometry(self._part_file(part), part, dataset.shape)
            counts.append(count)
            shapes.add(shape)
            dtypes.add(_native(dataset.dtype))
        if len(shapes) > 1 or len(dtypes) > 1:
            raise InputError(f"the data files of this master file differ in frame shape or dtype: "
                             f"{sorted(shapes)} {sorted(map(str, dtypes))}", path)
        self.shape, self.dtype = shapes.pop(), dtypes.pop()
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self.kind == "eiger":
            self.offsets = np.minimum(self.offsets, self._announced(handle, int(self.offsets[-1])))
        self.nframes = int(self.offsets[-1])
        self.close()  # reopened on the first read: a run of thousands of files keeps one open at a time

    def _open(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except FileNotFoundError:
                raise InputError("no such file", self.path) from None
            except OSError as exc:
                raise InputError(f"cannot open as HDF5 ({reason(exc)})", self.path) from None
        return self._file

    @staticmethod
    def _eiger_parts(handle: h5py.File, h5path: str) -> list[str]:
        group = handle.get(h5path.rsplit("/", 1)[0] or "/") if h5path == DEFAULT_H5PATH else None
        names = sorted(n for n in group.keys() if _EIGER_DATA.match(n)) if isinstance(group, h5py.Group) else []
        if not names:
            raise InputError(f"no dataset {h5path} (use --h5path to name the dataset holding the frames)",
                             handle.filename)
        return [f"{group.name}/{n}" for n in names]

    def _announced(self, handle: h5py.File, stored: int) -> int:
        """Frames of the series according to the master file (nimages x ntrigger), if it says; data files may
        be allocated beyond it, and a series cut short holds fewer (a warning)."""
        specific = handle.get("/entry/instrument/detector/detectorSpecific")
        try:
            nimages = int(specific["nimages"][()]) if specific is not None and "nimages" in specific else None
            ntrigger = int(specific["ntrigger"][()]) if nimages is not None and "ntrigger" in specific else 1
        except (TypeError, ValueError, OSError):
            return stored
        if nimages is None or nimages * max(ntrigger, 1) <= 0:
            return stored
        announced = nimages * max(ntrigger, 1)
        if announced > stored:
            log.warning("%s: the master file announces %d frames, its data files hold %d", self.path, announced,
                        stored)
        return min(announced, stored)

    def _check_virtual_sources(self, dataset: h5py.Dataset, part: str) -> None:
        """A virtual dataset whose source file is missing reads as fill values without any error: refuse it."""
        if not dataset.is_virtual:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        for source in dataset.virtual_sources():
            name = source.file_name
            if name != "." and not os.path.exists(os.path.join(folder, name)) and not os.path.exists(name):
                raise InputError(f"virtual dataset {part} maps frames from {name}, which does not exist", self.path)

    def _part_file(self, part: str) -> str:
        """The file that holds ``part``: the target of an external link, else this file."""
        link = self._open().get(part, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            return os.path.join(os.path.dirname(self.path), link.filename)
        return self.path

    def _dataset(self, part: str) -> h5py.Dataset:
        try:
            dataset = self._open()[part]
        except KeyError:
            target = self._part_file(part)
            why = "no such file" if not os.path.exists(target) else "missing or unreadable"
            raise InputError(f"dataset {part} ({why}: {target})", self.path) from None
        except OSError as exc:
            raise InputError(f"cannot open dataset {part} ({reason(exc)})", self._part_file(part)) from None
        if not isinstance(dataset, h5py.Dataset):
            raise InputError(f"{part} is a group, not a dataset (use --h5path)", self.path)
        return dataset

    def read(self, start: int, stop: int, step: int, out: np.ndarray) -> None:
        filled = 0
        for number, part in enumerate(self.parts):
            lo, hi = int(self.offsets[number]), int(self.offsets[number + 1])
            if stop <= lo or start >= hi:
                continue
            first = start if start >= lo else start + -(-(lo - start) // step) * step
            if first >= min(stop, hi):
                continue
            local = range(first - lo, min(stop, hi) - lo, step)
            dataset = self._dataset(part)
            dest = out[filled:filled + len(local)]
            try:
                if dataset.ndim == 2:
                    dataset.read_direct(dest[0])
                else:
                    dataset.read_direct(dest, np.s_[local.start:local.stop:local.step])
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read frames {local.start}:{local.stop} of {part} "
                                 f"({reason(exc)}); truncated or corrupt file?", self._part_file(part)) from None
            filled += len(local)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _FabioInput(_Input):
    """An image file read through fabio (CBF, EDF, TIFF, ...), one or several frames."""

    kind = "fabio"

    def __init__(self, path: str, probe: bool):
        super().__init__(path)
        self._first: np.ndarray | None = None  # frame 0, kept from the probe until it is read once
        if probe or not path.lower().endswith(_SINGLE_FRAME_SUFFIXES):
            image = self._open_image()
            self.nframes = int(getattr(image, "nframes", 1) or 1)
            self.shape = tuple(int(n) for n in image.data.shape)
            self.dtype = _native(image.data.dtype)
            self._first = image.data if probe else None
            image.close()
            if len(self.shape) != 2:
                raise InputError(f"frame has shape {self.shape}: expected a 2-D image", path)
        else:  # shape and dtype are checked when the frame is read
            self.nframes = 1
            self.shape, self.dtype = None, None

    def _open_image(self):
        import fabio

        if not os.path.exists(self.path):
            raise InputError("no such file", self.path)
        try:
            return fabio.open(self.path)
        except Exception as exc:  # fabio raises anything from IOError to ValueError on corrupt files
            raise InputError(f"cannot read image ({reason(exc)})", self.path) from None

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (0-based) of this file, as stored."""
        if index == 0 and self._first is not None:
            first, self._first = self._first, None
            return first
        image = self._open_image()
        try:
            data = image.data if index == 0 else image.getframe(index).data
        except Exception as exc:
            raise InputError(f"cannot read frame {index} ({reason(exc)})", self.path) from None
        finally:
            image.close()
        return data

    def read(self, start: int, stop: int, step: int, out: np.ndarray) -> None:
        for slot, index in enumerate(range(start, stop, step)):
            data = self.frame(index)
            if data.shape != out.shape[1:]:
                raise InputError(f"frame shape {data.shape} differs from the first input's {out.shape[1:]}",
                                 self.path)
            if _native(data.dtype) != out.dtype:
                raise InputError(f"frame dtype {data.dtype} differs from the first input's {out.dtype}", self.path)
            out[slot] = data

    def close(self) -> None:
        self._first = None


def expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Input paths in the order given, each glob pattern (``*``, ``?``, ``[...]``) expanded in natural order."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    expanded: list[str] = []
    for path in map(os.fspath, paths):
        if glob.has_magic(path) and not os.path.exists(path):
            matches = sorted(glob.glob(path), key=_natural_key)
            if not matches:
                raise InputError("no file matches this pattern", path)
            expanded.extend(matches)
        else:
            expanded.append(path)
    if not expanded:
        raise ParameterError("no input file given")
    return expanded


def _natural_key(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


class FrameSource:
    """A sequence of 2-D frames over several input files (see the module docstring).

    Attributes:
        sources: the input files, in order (globs expanded).
        shape: (ny, nx) of every frame.
        dtype: raw dtype of the frames (native byte order).
        nframes: number of frames selected by the frame range.
        metadata: DetectorMetadata of the first input file; its ``pixel_mask`` also holds the detector markers
            (Pilatus -1/-2, Eiger 0xFFFFFFFF) of the first selected frame.
        h5path: the HDF5 dataset path used for HDF5 inputs.
        workers: threads decoding image files (CBF, EDF, TIFF, ...) of one batch in parallel.
    """

    def __init__(self, paths, h5path: str = DEFAULT_H5PATH, frames: FrameRange | str | None = None,
                 workers: int | None = None):
        self.sources = expand_paths(paths)
        self.h5path = h5path
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._inputs: list[_Input] = []
        for number, path in enumerate(self.sources):
            if not os.path.exists(path):
                raise InputError("no such file", path)
            self._inputs.append(_Hdf5Input(path, h5path) if is_hdf5(path) else _FabioInput(path, number == 0))
        first = self._inputs[0]
        self.shape: tuple[int, int] = first.shape
        self.dtype: np.dtype = first.dtype
        for item in self._inputs[1:]:
            if item.shape is not None and item.shape != self.shape:
                raise InputError(f"frame shape {item.shape} differs from {self.shape} of {first.path}", item.path)
            if item.dtype is not None and item.dtype != self.dtype:
                raise InputError(f"frame dtype {item.dtype} differs from {self.dtype} of {first.path}", item.path)
        self._offsets = np.concatenate([[0], np.cumsum([i.nframes for i in self._inputs])]).astype(np.int64)
        frames = FrameRange.parse(frames) if isinstance(frames, str) else (frames or FrameRange())
        self.frame_range = frames
        self._selection = frames.indices(int(self._offsets[-1]))
        self.nframes = len(self._selection)
        if self.nframes == 0:
            raise ParameterError(f"frame range {frames} selects no frame of the {int(self._offsets[-1])} "
                                 f"frame(s) in {self.sources[0]}" + (" ..." if len(self.sources) > 1 else ""))
        self.metadata: DetectorMetadata = read_detector_metadata(self.sources[0])
        probe = np.empty((1, *self.shape), self.dtype)
        self.read_into(probe, 0)
        self.metadata = with_markers(self.metadata, probe[0])

    # -- reading ------------------------------------------------------------------------------------------
    def frame_ids(self, start: int, count: int) -> FrameIds:
        """FrameIds of ``count`` selected frames starting at position ``start``."""
        positions = np.arange(start, start + count, dtype=np.int64)
        flat = np.asarray(self._selection[start:start + count], dtype=np.int64)
        source = np.searchsorted(self._offsets, flat, side="right").astype(np.int32) - 1
        return FrameIds(source=source, index=flat - self._offsets[source], position=positions)

    def read_into(self, out: np.ndarray, start: int) -> FrameIds:
        """Decode the selected frames ``start, start+1, ...`` into ``out`` (n, ny, nx), C-contiguous, of this
        source's dtype (e.g. a pinned host buffer); reads ``min(n, nframes - start)`` frames and returns their
        FrameIds (its length says how many were read; the rest of ``out`` is left as it was)."""
        if out.ndim != 3 or tuple(out.shape[1:]) != self.shape:
            raise ValueError(f"read_into needs an (n, {self.shape[0]}, {self.shape[1]}) buffer, got {out.shape}")
        if out.dtype != self.dtype or not out.flags.c_contiguous:
            raise ValueError(f"read_into needs a C-contiguous {self.dtype} buffer, got {out.dtype}")
        if not 0 <= start <= self.nframes:
            raise IndexError(f"start {start} outside 0..{self.nframes}")
        count = min(out.shape[0], self.nframes - start)
        ids = self.frame_ids(start, count)
        step = self._selection.step
        jobs, filled = [], 0
        for number in np.unique(ids.source):
            local = ids.index[ids.source == number]
            jobs.append((self._inputs[number], int(local[0]), int(local[-1]) + 1, out[filled:filled + len(local)]))
            filled += len(local)

        def run(job):
            item, first, stop, dest = job
            item.read(first, stop, step, dest)
            if item is not self._inputs[ids.source[-1]]:
                item.close()

        if len(jobs) > 1 and self.workers > 1 and all(isinstance(job[0], _FabioInput) for job in jobs):
            if self._pool is None:  # image files decode in parallel (bz2, CBF byte offset release the GIL)
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="braggsieve-decode")
            list(self._pool.map(run, jobs))
        else:
            for job in jobs:
                run(job)
        return ids

    def iter_batches(self, batch_size: int = 16, prefetch: bool = True,
                     buffers: Sequence[np.ndarray] | None = None) -> Iterator[tuple[np.ndarray, FrameIds]]:
        """Yield ``(frames, ids)`` for consecutive batches of at most ``batch_size`` frames, in input order.

        ``frames`` is a new (n, ny, nx) array of the raw dtype for each batch, or, with ``buffers`` (arrays of
        shape (batch_size, ny, nx) and the source's dtype, C-contiguous: e.g. the pinned buffers of a GPU engine,
        ``engine.batch_buffers``), the first n frames of ``buffers[k % len(buffers)]`` for batch k, decoded in
        place.  A buffer is then read again len(buffers) batches later, and with ``prefetch`` that read starts when
        the batch before it is yielded: the caller may keep at most len(buffers) - 2 earlier batches besides the
        current one (len(buffers) - 1 without ``prefetch``).  With ``prefetch`` the next batch is read in a background thread while the caller works on
        the current one, so at most two batches (plus those the caller keeps) are in memory."""
        if batch_size < 1:
            raise ParameterError(f"batch size must be at least 1, got {batch_size}")
        if buffers is not None and (len(buffers) < 2 or any(
                b.shape != (batch_size, *self.shape) or b.dtype != self.dtype or not b.flags.c_contiguous
                for b in buffers)):
            raise ValueError(f"iter_batches needs at least 2 C-contiguous ({batch_size}, {self.shape[0]}, "
                             f"{self.shape[1]}) {self.dtype} buffers")

        def read(start):
            count = min(batch_size, self.nframes - start)
            if buffers is None:
                out = np.empty((count, *self.shape), self.dtype)
            else:
                out = buffers[(start // batch_size) % len(buffers)][:count]
            return out, self.read_into(out, start)

        starts = range(0, self.nframes, batch_size)
        if not prefetch:
            try:
                yield from map(read, starts)
            finally:
                self.close()
            return
        reader = ThreadPoolExecutor(1, thread_name_prefix="braggsieve-prefetch")
        pending = reader.submit(read, starts[0])
        try:
            for following in [*starts[1:], None]:
                batch = pending.result()
                pending = reader.submit(read, following) if following is not None else None
                yield batch
        finally:
            if pending is not None:
                pending.cancel()
            reader.shutdown(wait=True)
            self.close()

    def input_of(self, source: int) -> tuple[str, str]:
        """(kind, path) of input ``source``: kind is "hdf5", "eiger" (master file) or "fabio"."""
        item = self._inputs[source]
        return item.kind, item.path

    def frames_per_source(self) -> list[int]:
        """Number of frames in each input file (before the frame range)."""
        return [i.nframes for i in self._inputs]

    def close(self) -> None:
        """Close open files and stop the decoding threads (both come back on the next read)."""
        for item in self._inputs:
            item.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return self.nframes

    def __repr__(self) -> str:
        return (f"FrameSource({len(self.sources)} file(s), {self.nframes} frame(s) of {self.shape} {self.dtype}, "
                f"first {self.sources[0]})")


def open_frames(paths, h5path: str = DEFAULT_H5PATH, frames: FrameRange | str | None = None,
                workers: int | None = None) -> FrameSource:
    """Open ``paths`` (a path, a glob pattern, or a list of them) as one sequence of frames; see FrameSource.
    ``workers``: threads that decode image files in parallel (default: the number of cores, at most 8)."""
    return FrameSource(paths, h5path=h5path, frames=frames, workers=workers)
