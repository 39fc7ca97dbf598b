"""Dark / flat-field series in HDF5 files, for the mask maker: (frames, rows, cols) or
(frames, cells, modules, rows, cols), optionally with gain-indicator data of the same shape.

``HDF5Series(paths, h5path, gain_path)`` joins several files along the frame axis and reads them in
batches (it follows :class:`braggsieve.mask.maker.Series`).  ``write_series`` writes such a file (NXmx-like:
frames at ``/entry/data/data``, bitshuffle-LZ4 through hdf5plugin), batch by batch, one chunk per frame and
memory cell, so that a pass over a group of cells (``braggsieve mask --memory-limit``) reads only that
group's chunks.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Sequence

import h5py
import hdf5plugin
import numpy as np

from ..errors import InputError

DEFAULT_H5PATH = "/entry/data/data"
PIXEL_MASK_PATH = "/entry/instrument/detector/pixel_mask"


def _dataset(handle: h5py.File, h5path: str, path: str) -> h5py.Dataset:
    node = handle.get(h5path)
    if not isinstance(node, h5py.Dataset):
        raise InputError(f"no dataset {h5path} (use --h5path / --gain-path)", path)
    if node.ndim not in (3, 5):
        raise InputError(f"{h5path} has shape {node.shape}: expected (frames, rows, cols) or "
                         f"(frames, cells, modules, rows, cols)", path)
    return node


class HDF5Series:
    """Frames of one or several HDF5 files, joined along the first axis."""

    def __init__(self, paths: Sequence[str | os.PathLike], h5path: str = DEFAULT_H5PATH,
                 gain_path: str | None = None):
        self.paths = [os.fspath(p) for p in paths]
        if not self.paths:
            raise InputError("no input file given")
        self.h5path, self.gain_path = h5path, gain_path
        self.name = self.paths[0] if len(self.paths) == 1 else f"{self.paths[0]} (+{len(self.paths) - 1} files)"
        self._lengths = []
        shape = dtype = None
        for path in self.paths:
            if not os.path.exists(path):
                raise InputError("no such file", path)
            try:
                with h5py.File(path, "r") as handle:
                    data = _dataset(handle, h5path, path)
                    if gain_path is not None:
                        gain = _dataset(handle, gain_path, path)
                        if gain.shape != data.shape:
                            raise InputError(f"gain data {gain_path} {gain.shape} and frames {h5path} "
                                             f"{data.shape} differ in shape", path)
                    if shape is None:
                        shape, dtype = data.shape[1:], data.dtype
                    elif data.shape[1:] != shape:
                        raise InputError(f"frame shape {data.shape[1:]} differs from {self.paths[0]}'s {shape}",
                                         path)
                    self._lengths.append(data.shape[0])
            except OSError as exc:
                raise InputError(f"cannot read HDF5 ({exc}); truncated or corrupt file?", path) from None
        self.frame_shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.nframes = int(sum(self._lengths))
        self.has_gain = gain_path is not None
        self._starts = np.concatenate([[0], np.cumsum(self._lengths)])

    def _read(self, path: str, selection, cells: slice | None) -> tuple[np.ndarray, np.ndarray | None]:
        if cells is not None:
            selection = (selection, cells)
        try:
            with h5py.File(path, "r") as handle:
                frames = handle[self.h5path][selection]
                gain = handle[self.gain_path][selection] if self.has_gain else None
        except OSError as exc:
            raise InputError(f"cannot read frames ({exc}); truncated or corrupt file?", path) from None
        return frames, gain

    def batches(self, size: int, cells: slice | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(frames, gain or None) of at most ``size`` frames each, file after file; with ``cells``, only
        that slice of the first axis after frames (memory cells of a 5-D series)."""
        for path, length in zip(self.paths, self._lengths):
            for start in range(0, length, size):
                yield self._read(path, slice(start, min(start + size, length)), cells)

    def read(self, indices: np.ndarray, cells: slice | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The frames (and gain) at the sorted global ``indices`` (and ``cells``, as in :meth:`batches`)."""
        indices = np.asarray(indices, dtype=np.int64)
        which = np.searchsorted(self._starts, indices, side="right") - 1
        frames, gains = [], []
        for k in np.unique(which):
            local = indices[which == k] - self._starts[k]
            f, g = self._read(self.paths[k], np.sort(local).tolist(), cells)
            frames.append(f)
            gains.append(g)
        return np.concatenate(frames), (np.concatenate(gains) if self.has_gain else None)

    def pixel_mask(self) -> np.ndarray | None:
        """bool (rows, cols) from the first file's NXmx ``pixel_mask`` (low 16 bits: "do not use"), or None
        when there is none or it does not match the frame shape."""
        with h5py.File(self.paths[0], "r") as handle:
            node = handle.get(PIXEL_MASK_PATH)
            if not isinstance(node, h5py.Dataset):
                return None
            mask = np.asarray(node[()])
        mask = mask.reshape(mask.shape[-2:]) if mask.ndim == 3 and mask.shape[0] == 1 else mask
        if mask.shape != self.frame_shape[-2:]:
            return None
        return (mask.astype(np.uint32) & 0xFFFF) != 0


def write_series(path: str | os.PathLike, batches: Iterable[np.ndarray | tuple[np.ndarray, np.ndarray]],
                 nframes: int, *, h5path: str = DEFAULT_H5PATH, gain_path: str | None = None,
                 compression: bool = True) -> None:
    """Write frames (and gain-indicator data, when the batches are (frames, gain) pairs) to ``path``.

    ``nframes`` is the total; each chunk holds one frame (one frame of one memory cell for 5-D series, so
    that reading a group of cells decompresses only theirs); bitshuffle-LZ4 unless ``compression`` is False.
    The caller makes the write atomic (``braggsieve.io.atomic``).
    """
    extra = hdf5plugin.Bitshuffle(cname="lz4") if compression else {}
    with h5py.File(path, "w") as handle:
        data = gain = None
        done = 0
        for batch in batches:
            frames, gains = batch if isinstance(batch, tuple) else (batch, None)
            if data is None:
                chunk = (1,) + frames.shape[1:]
                if frames.ndim == 5:
                    chunk = (1, 1) + frames.shape[2:]
                data = handle.create_dataset(h5path, (nframes,) + frames.shape[1:], dtype=frames.dtype,
                                             chunks=chunk, **extra)
                if gain_path is not None:
                    gain = handle.create_dataset(gain_path, data.shape, dtype=gains.dtype, chunks=data.chunks,
                                                 **extra)
            data[done:done + frames.shape[0]] = frames
            if gain is not None:
                gain[done:done + frames.shape[0]] = gains
            done += frames.shape[0]
        if done != nframes:
            raise ValueError(f"wrote {done} frames, expected {nframes}")
