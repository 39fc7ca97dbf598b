"""Sparse-frames files: the layout of pyFAI's ``sparsify-Bragg``, readable by FabIO's ``SparseImage``.

Layout written (one file for any number of input files; ``E = /entry_0000``, ``S = E/sparse_frames``)::

    /                      @NX_class=NXroot @default=entry_0000 @creator="braggsieve <version>"
    E                      @NX_class=NXentry @default=sparse_frames @pyFAI_sparse_frames=/entry_0000/sparse_frames
    E/program_name, E/start_time, E/end_time
    S (NXdata)             @signal=background_avg @axes=[".", "radius"]
    S/frame_ptr            uint32 (nframes + 1,)   (uint64 beyond 2**32 stored pixels)
    S/index                uint32 (npix,)          flat pixel index row * nx + col, sorted within a frame
    S/intensity            input dtype (npix,)     raw value - dark, not normalised
    S/background_avg       float32 (nframes, nbins) clipped mean, normalised units
    S/background_std       float32 (nframes, nbins) clipped pixel std, normalised units (+ hard link "errors")
    S/radius               float32 (nbins,)        uniform bin centres, @unit
    S/mask                 float32 (ny, nx)        radius of each pixel centre, NaN = masked, @unit
    S/normalization        float32 (ny, nx)        background -> detector counts (flat x solid angle x
                                                   polarisation x ... x gain); absent when all ones
    S/dummy                scalar                  value of masked pixels when densified
    E/sparsify (NXprocess) provenance; configuration/data = JSON {"geometry", "sparsify", "parameters"}
    E/sources (NXcollection) files (str), file_number int32 (nframes,), frame_index int64 (nframes,)

Per-frame arrays are chunked and grown as batches arrive, whole chunks at a time (memory stays bounded).  The
static per-pixel maps (``mask``, ``normalization``) are the fixed cost of every file -- about 10 and 27 MB for
an Eiger 4M in pyFAI's float32/float64 -- so they are stored smaller: ``mask`` is rounded to a power-of-two
quantum of at most 1/4 of a bin (a position error of at most 1/8 bin: the interpolated background moves by at
most 1/8 of its change between two bins), ``normalization`` to 9 mantissa bits (relative error < 1e-3: 0.04
counts on a background of 40 counts, whose noise is 6.3).  Every dataset goes through one codec of
:data:`CODECS`; the default, ``bytedelta`` (HDF5 byte shuffle, then Blosc2 byte-delta + zstd), stores the two
maps of an Eiger 4M in 0.6 + 0.5 MB.  Blosc2 ships with hdf5plugin, which any reader of pyFAI's bitshuffle files
already needs; byte-delta needs its c-blosc2 to be 2.10 or newer.

FabIO recognises such files by their root ``creator`` starting with "pyFAI"; braggsieve writes its own name
there unless the user explicitly asks for ``creator_compat`` (``--fabio-compatible``), which writes
"pyFAI-compatible sparse frames (braggsieve <version>)": docs/sparse.md discusses the choice.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import hdf5plugin
import numpy as np

from .. import __version__
from ..errors import InputError
from ..engine.records import SparseFrames
from .atomic import atomic_output

ENTRY = "entry_0000"
NXDATA = "sparse_frames"
REQUIRED = ("mask", "frame_ptr", "index", "intensity")
_BLOSC2_NOFILTER = 0
_BLOSC2_BYTEDELTA = 35  # c-blosc2's byte-delta filter (the fixed one, c-blosc2 >= 2.10)
_BLOSC2_ZSTD = 5


def _blosc2(clevel: int, blosc_filter: int, shuffle_first: bool = False) -> dict[str, Any]:
    """h5py dataset options for Blosc2 + zstd at ``clevel`` with ``blosc_filter``, after HDF5's own byte shuffle
    of the whole chunk when ``shuffle_first``.  hdf5plugin's ``Blosc2`` class does not list byte-delta, so the
    HDF5 filter values are given directly; decoding needs only the Blosc2 plugin that hdf5plugin installs."""
    return {"shuffle": shuffle_first, "compression": hdf5plugin.BLOSC2_ID,
            "compression_opts": (0, 0, 0, 0, clevel, blosc_filter, _BLOSC2_ZSTD)}


# Codec name -> h5py dataset options for the per-frame arrays ("frames"), the stored intensities when they were
# rounded by --quantise ("rounded") and the static per-pixel maps ("maps").
# bytedelta: HDF5's shuffle gathers each byte plane of a chunk, then Blosc2's byte-delta stores the difference
# of consecutive bytes of a plane -- for the lowest plane of sorted indices the gap to the previous index
# (modulo 256), for a smooth map the step between neighbouring pixels -- and zstd packs the result.  Rounded
# intensities have mostly-zero low bits that the delta would scramble: shuffle + zstd alone suits them.
# Measured on 20 simulated Eiger 4M hits (3.9 M stored pixels, docs/sparse.md): bytes per stored pixel for
# index / intensity: bytedelta 0.69 / 0.51, zstd 0.88 / 0.56, bslz4 1.43 / 0.71; radius map at bin/4: 0.60 /
# 1.50 / 3.9 MB.  zstd levels above 6 buy 1-7 % for 2-10x the time.  ``zstd`` suits readers whose c-blosc2
# predates 2.10; ``bslz4`` writes everything with bitshuffle-LZ4 as pyFAI does.
_ZSTD_FRAMES = dict(hdf5plugin.Blosc2(cname="zstd", clevel=5, filters=hdf5plugin.Blosc2.SHUFFLE))
_BSLZ4 = dict(hdf5plugin.Bitshuffle(cname="lz4"))
CODECS = {
    "bytedelta": {"frames": _blosc2(6, _BLOSC2_BYTEDELTA, shuffle_first=True),
                  "rounded": _blosc2(6, _BLOSC2_NOFILTER, shuffle_first=True),
                  "maps": _blosc2(6, _BLOSC2_BYTEDELTA, shuffle_first=True)},
    "zstd": {"frames": _ZSTD_FRAMES, "rounded": _ZSTD_FRAMES,
             "maps": dict(hdf5plugin.Blosc2(cname="zstd", clevel=5, filters=hdf5plugin.Blosc2.BITSHUFFLE))},
    "bslz4": {"frames": _BSLZ4, "rounded": _BSLZ4, "maps": _BSLZ4},
}
_CHUNK_PIXELS = 1 << 18   # index/intensity chunk (1 MB of uint32)
_TEXT = h5py.string_dtype()


def quantised_radius(radius_map: np.ndarray, bin_width: float, fraction: int = 4) -> np.ndarray:
    """float32 copy of ``radius_map`` rounded to a power-of-two quantum <= ``bin_width / fraction`` (NaN kept).

    Multiples of a power of two have trailing zero bits in float32, and neighbouring pixels share their upper
    bits, which is what bitshuffle compresses."""
    quantum = 2.0 ** np.floor(np.log2(bin_width / fraction))
    return (np.round(np.asarray(radius_map, np.float64) / quantum) * quantum).astype(np.float32)


def rounded_mantissa(values: np.ndarray, bits: int = 9) -> np.ndarray:
    """float32 copy of ``values`` with the mantissa rounded to ``bits`` bits (relative error <= 2**-(bits+1))."""
    v = np.ascontiguousarray(values, dtype=np.float32)
    drop = 23 - bits
    word = v.view(np.uint32).astype(np.uint64)
    word = ((word + (1 << (drop - 1))) >> drop) << drop
    out = word.astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(v), out, v)


@dataclass(frozen=True)
class _StoredMap:
    """A static per-pixel map as its compressed chunks: float32 ``shape``, ``chunks``, and for each chunk its
    offset, filter mask and bytes (as ``read_direct_chunk`` gives them)."""

    shape: tuple[int, int]
    chunks: tuple[int, int]
    pieces: tuple[tuple[tuple[int, int], int, bytes], ...]


def _compressed_map(values: np.ndarray, options: dict[str, Any]) -> _StoredMap:
    """Compress the float32 map ``values`` with the dataset ``options`` (in an in-memory HDF5 file)."""
    chunks = (min(256, values.shape[0]), values.shape[1])
    with h5py.File(io.BytesIO(), "w") as memory:
        dataset = memory.create_dataset("map", data=values, chunks=chunks, **options)
        pieces = []
        for row in range(0, values.shape[0], chunks[0]):
            mask, data = dataset.id.read_direct_chunk((row, 0))
            pieces.append(((row, 0), mask, bytes(data)))
    return _StoredMap(tuple(values.shape), chunks, tuple(pieces))


# The compressed static maps of the last SparseWriter, keyed by a digest of its inputs: a run that writes many
# files with the same geometry (the parts of ``process`` and ``stream``) rounds and compresses its maps once
# (0.25 s an Eiger 4M file) and then copies their chunks.
_MAPS_LOCK = threading.Lock()
_LAST_MAPS: tuple[bytes, dict[str, _StoredMap]] | None = None


def _digest(*items) -> bytes:
    """A digest of arrays (dtype, shape, bytes; None allowed) and plain values."""
    h = hashlib.blake2b(digest_size=32)
    for item in items:
        if isinstance(item, np.ndarray):
            array = np.ascontiguousarray(item)
            h.update(f"{array.dtype.str}{array.shape}".encode())
            h.update(memoryview(array).cast("B"))
        else:
            h.update(repr(item).encode())
    return h.digest()


def _static_maps(radius_map: np.ndarray, normalization: np.ndarray | None, bin_width: float, fraction: int,
                 compression: str) -> dict[str, _StoredMap]:
    """The compressed ``mask`` (radius) map and, when given, ``normalization`` map of a sparse file (see the
    module docstring), reused while the inputs stay the same."""
    global _LAST_MAPS
    key = _digest(radius_map, normalization, bin_width, fraction, compression)
    with _MAPS_LOCK:
        if _LAST_MAPS is not None and _LAST_MAPS[0] == key:
            return _LAST_MAPS[1]
    options = CODECS[compression]["maps"]
    rmap = quantised_radius(radius_map, bin_width, fraction) if fraction else np.asarray(radius_map, np.float32)
    maps = {"mask": _compressed_map(rmap, options)}
    if normalization is not None:
        maps["normalization"] = _compressed_map(rounded_mantissa(normalization), options)
    with _MAPS_LOCK:
        _LAST_MAPS = (key, maps)
    return maps


def _write_map(group: h5py.Group, name: str, stored: _StoredMap, options: dict[str, Any]) -> h5py.Dataset:
    """Create dataset ``name`` with the filter pipeline of ``options`` and copy the compressed chunks into it."""
    dataset = group.create_dataset(name, shape=stored.shape, dtype=np.float32, chunks=stored.chunks, **options)
    for offset, mask, data in stored.pieces:
        dataset.id.write_direct_chunk(offset, data, mask)
    return dataset


class _ChunkAppender:
    """Rows appended to a resizable chunked dataset, written as whole chunks (the tail, less than one chunk, is
    held in memory until :meth:`flush`), so that each chunk is compressed and written once.

    Measured on 20 Eiger 4M frames in batches of 8: the earlier writer (dataset created from the first batch,
    then grown batch by batch) left the file 0.1 MB larger than its datasets for the same stored bytes."""

    def __init__(self, group: h5py.Group, name: str, dtype, row_shape: tuple[int, ...], chunk_rows: int,
                 filters: dict[str, Any]):
        self.dataset = group.create_dataset(name, shape=(0,) + row_shape, maxshape=(None,) + row_shape,
                                            dtype=dtype, chunks=(chunk_rows,) + row_shape, **filters)
        self._chunk_rows = chunk_rows
        self._tail = np.empty((0,) + row_shape, dtype)

    def append(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._tail.dtype)
        pending = np.concatenate([self._tail, values]) if len(self._tail) else values
        whole = len(pending) - len(pending) % self._chunk_rows
        if whole:
            self._write(pending[:whole])
        self._tail = pending[whole:].copy()

    def flush(self) -> None:
        if len(self._tail):
            self._write(self._tail)
            self._tail = self._tail[:0]

    def _write(self, values: np.ndarray) -> None:
        start = self.dataset.shape[0]
        self.dataset.resize(start + len(values), axis=0)
        self.dataset[start:] = values


class SparseWriter:
    """Write sparse frames batch by batch; the file appears (atomically) when the ``with`` block succeeds.

    Args:
        path: output file.
        radius_map: float ``(ny, nx)``: radial position of each pixel centre, NaN = masked (the binning's
            ``pixel_radius``).
        radial: ``(nbins,)`` uniform bin centres; unit: their unit name.
        dtype: dtype of the stored intensities (``SparseFrames.intensity.dtype``).
        normalization: float ``(ny, nx)`` turning normalised background into detector counts, or None.
        dummy: value of masked pixels when densified (default 0 for integers, NaN for floats).
        configuration: JSON-ready dict stored in ``sparsify/configuration/data`` (keys ``geometry``,
            ``sparsify``, ...).
        provenance: an :class:`~braggsieve.io.provenance.Provenance` (finished when the file is closed).
        instrument: optional dict ``distance`` (m), ``x_pixel_size``/``y_pixel_size`` (m), ``beam_center_x``/
            ``beam_center_y`` (pixels), ``wavelength`` (m), written like pyFAI's NXdetector.
        creator_compat: write a root ``creator`` that FabIO's ``fabio.open`` recognises (see module docstring).
        radius_fraction: the radius map is rounded to at most 1/radius_fraction of a bin (0 = exact float32).
        compression: a key of :data:`CODECS`: ``bytedelta`` (default), ``zstd`` or ``bslz4`` (as pyFAI).
        rounded: the intensities were rounded to power-of-two steps (engine.pick.quantise_intensities), which
            compress better without the byte-delta filter.
    """

    def __init__(self, path: str | os.PathLike, *, radius_map: np.ndarray, radial: np.ndarray, unit: str,
                 dtype, normalization: np.ndarray | None = None, dummy=None,
                 configuration: dict[str, Any] | None = None, provenance=None,
                 instrument: dict[str, float] | None = None, creator_compat: bool = False,
                 radius_fraction: int = 4, compression: str = "bytedelta", rounded: bool = False):
        if compression not in CODECS:
            raise ValueError(f"unknown compression {compression!r}; choose one of {', '.join(CODECS)}")
        self._codec = CODECS[compression]
        self._compression = compression
        self._rounded = rounded
        self.path = os.fspath(path)
        self.shape = tuple(radius_map.shape)
        self.dtype = np.dtype(dtype)
        radial = np.asarray(radial, dtype=np.float64)
        self._radial = radial
        self._unit = unit
        self._radius_map = radius_map
        self._radius_fraction = radius_fraction
        self._normalization = normalization
        self._dummy = dummy
        self._configuration = configuration or {}
        self._provenance = provenance
        self._instrument = instrument
        self._creator_compat = creator_compat
        self._frame_ptr = [0]
        self._sources: list[str] = []
        self._stack = contextlib.ExitStack()
        self._h5: h5py.File | None = None

    def __enter__(self) -> "SparseWriter":
        tmp = self._stack.enter_context(atomic_output(self.path))
        self._h5 = self._stack.enter_context(h5py.File(tmp, "w"))
        self._write_static()
        self._open_appenders()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._finish()
        finally:
            return self._stack.__exit__(exc_type, exc, tb)

    @property
    def nframes(self) -> int:
        return len(self._frame_ptr) - 1

    def _write_static(self) -> None:
        h5 = self._h5
        version = f"braggsieve {__version__}"
        h5.attrs.update({"NX_class": "NXroot", "default": ENTRY,
                         "creator": f"pyFAI-compatible sparse frames ({version})" if self._creator_compat
                         else version})
        entry = h5.create_group(ENTRY)
        entry.attrs.update({"NX_class": "NXentry", "default": NXDATA,
                            "pyFAI_sparse_frames": f"/{ENTRY}/{NXDATA}"})
        entry.create_dataset("program_name", data="braggsieve", dtype=_TEXT)
        entry.create_dataset("start_time", data=self._provenance.start_time if self._provenance else "",
                             dtype=_TEXT)
        data = entry.create_group(NXDATA)
        data.attrs.update({"NX_class": "NXdata", "signal": "background_avg"})
        data.attrs.create("axes", [".", "radius"], dtype=_TEXT)
        radius = data.create_dataset("radius", data=self._radial.astype(np.float32))
        radius.attrs.update({"interpretation": "spectrum", "unit": self._unit, "long_name": f"bin centre ({self._unit})"})
        width = (self._radial[-1] - self._radial[0]) / (len(self._radial) - 1) if len(self._radial) > 1 else 1.0
        maps = _static_maps(self._radius_map, self._normalization, width, self._radius_fraction, self._compression)
        mask = _write_map(data, "mask", maps["mask"], self._codec["maps"])
        mask.attrs.update({"interpretation": "image", "unit": self._unit,
                           "long_name": "radial position of each pixel centre; NaN = masked pixel"})
        if "normalization" in maps:
            norm = _write_map(data, "normalization", maps["normalization"], self._codec["maps"])
            norm.attrs["interpretation"] = "image"
        dummy = self._dummy
        if dummy is None:
            dummy = 0 if self.dtype.kind in "iu" else np.nan
        data.create_dataset("dummy", data=self.dtype.type(dummy) if self.dtype.kind in "iu" else float(dummy))
        sources = entry.create_group("sources")
        sources.attrs["NX_class"] = "NXcollection"

    def _open_appenders(self) -> None:
        data, sources = self._h5[f"{ENTRY}/{NXDATA}"], self._h5[f"{ENTRY}/sources"]
        nbins = len(self._radial)
        rows = max(1, min(64, (1 << 16) // max(nbins, 1)))
        frames = self._codec["frames"]
        self._appenders = {
            "index": _ChunkAppender(data, "index", np.uint32, (), _CHUNK_PIXELS, frames),
            "intensity": _ChunkAppender(data, "intensity", self.dtype, (), _CHUNK_PIXELS,
                                        self._codec["rounded"] if self._rounded else frames),
            "background_avg": _ChunkAppender(data, "background_avg", np.float32, (nbins,), rows, frames),
            "background_std": _ChunkAppender(data, "background_std", np.float32, (nbins,), rows, frames),
            "file_number": _ChunkAppender(sources, "file_number", np.int32, (), 4096, frames),
            "frame_index": _ChunkAppender(sources, "frame_index", np.int64, (), 4096, frames),
        }

    def append(self, sparse: SparseFrames, sources: Sequence[str], file_number: np.ndarray,
               frame_index: np.ndarray) -> None:
        """Add a batch of frames, in input order.

        Args:
            sparse: the picked pixels and backgrounds of ``sparse.nframes`` frames.
            sources: the input file names (the whole list, which may grow between calls).
            file_number: int ``(nframes,)``, index into ``sources`` of each frame's file.
            frame_index: int ``(nframes,)``, index of each frame inside its file.
        """
        if sparse.intensity.dtype != self.dtype:
            raise ValueError(f"intensity dtype {sparse.intensity.dtype} differs from the file's {self.dtype}")
        n = sparse.nframes
        nbins = len(self._radial)
        if sparse.background_avg.shape != (n, nbins):
            raise ValueError(f"background of shape {sparse.background_avg.shape} for {n} frames of {nbins} bins")
        append = self._appenders
        append["index"].append(sparse.index)
        append["intensity"].append(sparse.intensity)
        append["background_avg"].append(sparse.background_avg)
        append["background_std"].append(sparse.background_std)
        append["file_number"].append(file_number)
        append["frame_index"].append(frame_index)
        base = self._frame_ptr[-1] - int(sparse.frame_ptr[0])
        self._frame_ptr.extend((np.asarray(sparse.frame_ptr[1:], np.int64) + base).tolist())
        self._sources = [os.fspath(s) for s in sources]

    def _finish(self) -> None:
        entry = self._h5[ENTRY]
        data = entry[NXDATA]
        ptr = np.asarray(self._frame_ptr, np.int64)
        data.create_dataset("frame_ptr", data=ptr.astype(np.uint32 if ptr[-1] < 2**32 else np.uint64))
        for appender in self._appenders.values():
            appender.flush()
        data["background_avg"].attrs.update({"interpretation": "spectrum", "signal": 1,
                                             "long_name": "clipped background mean, normalised units"})
        data["background_std"].attrs.update({"interpretation": "spectrum",
                                             "long_name": "clipped background pixel std, normalised units"})
        data["errors"] = data["background_std"]
        sources = entry["sources"]
        sources.create_dataset("files", data=np.array(self._sources, dtype=object), dtype=_TEXT)
        process = entry.create_group("sparsify")
        if self._provenance is not None:
            from .provenance import write_provenance
            provenance = self._provenance.finish()
            write_provenance(process, provenance)
            config = json.loads(process["configuration/data"][()])
            del process["configuration/data"]
            entry.create_dataset("end_time", data=provenance.end_time, dtype=_TEXT)
        else:
            process.attrs["NX_class"] = "NXprocess"
            process.create_group("configuration").attrs["NX_class"] = "NXnote"
            process.create_dataset("configuration/type", data="text/json", dtype=_TEXT)
            config = {}
        config.update(self._configuration)
        process.create_dataset("configuration/data", data=json.dumps(config, indent=1), dtype=_TEXT)
        if self._instrument:
            self._write_instrument(entry, self._instrument)

    @staticmethod
    def _write_instrument(entry: h5py.Group, info: dict[str, float]) -> None:
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        detector = instrument.create_group("detector")
        detector.attrs["NX_class"] = "NXdetector"
        units = {"distance": "m", "x_pixel_size": "m", "y_pixel_size": "m", "beam_center_x": "pixel",
                 "beam_center_y": "pixel"}
        for name, unit in units.items():
            if info.get(name) is not None:
                detector.create_dataset(name, data=float(info[name])).attrs["units"] = unit
        if info.get("wavelength") is not None:
            mono = instrument.create_group("monochromator")
            mono.attrs["NX_class"] = "NXmonochromator"
            mono.create_dataset("wavelength", data=float(info["wavelength"]) * 1e10).attrs["units"] = "Angstrom"


@dataclass(frozen=True)
class SparseBatch:
    """Frames ``start .. stop-1`` of a sparse file, ready for :class:`braggsieve.engine.densify.Densifier`."""

    start: int
    frame_ptr: np.ndarray       # int64 (n + 1,), absolute offsets into the file's index/intensity
    index: np.ndarray           # uint32 (frame_ptr[-1] - frame_ptr[0],)
    intensity: np.ndarray
    background_avg: np.ndarray  # float32 (n, nbins)
    background_std: np.ndarray  # float32 (n, nbins)


class SparseFile:
    """Read a sparse-frames file written by braggsieve or by pyFAI's ``sparsify-Bragg`` (or LIMA2).

    The NXdata group is found as FabIO does (root ``@default`` -> entry ``@pyFAI_sparse_frames`` or
    ``@default``).  Static arrays are read on opening; per-frame data with :meth:`read`.  Use as a context
    manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot open as HDF5 ({exc})", self.path) from None
        try:
            self._locate()
        except BaseException:
            self._h5.close()
            raise

    def _locate(self) -> None:
        h5 = self._h5
        entry_name = h5.attrs.get("default")
        if isinstance(entry_name, bytes):
            entry_name = entry_name.decode()
        if not entry_name or entry_name not in h5:
            raise InputError("not a sparse-frames file: no root @default entry", self.path)
        self.entry = h5[entry_name]
        data_name = self.entry.attrs.get("pyFAI_sparse_frames") or self.entry.attrs.get("default")
        if isinstance(data_name, bytes):
            data_name = data_name.decode()
        if not data_name or data_name not in self.entry:
            raise InputError(f"not a sparse-frames file: entry {self.entry.name} names no NXdata group", self.path)
        data = self.entry[data_name]
        missing = [name for name in REQUIRED + ("radius", "background_avg") if name not in data]
        if missing:
            raise InputError(f"not a sparse-frames file: {data.name} lacks {', '.join(missing)}", self.path)
        self._data = data
        try:
            self.radius_map = data["mask"][()]
            self.radial = data["radius"][()].astype(np.float64)
            self.frame_ptr = data["frame_ptr"][()].astype(np.int64)
            self.normalization = data["normalization"][()] if "normalization" in data else None
            dtype = data["intensity"].dtype
            self.dtype = np.dtype(dtype)
            self.dummy = self.dtype.type(data["dummy"][()]) if "dummy" in data else None
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"unreadable sparse-frames data ({exc})", self.path) from None
        self.unit = data["radius"].attrs.get("unit") or data["mask"].attrs.get("unit") or ""
        self.creator = str(self._h5.attrs.get("creator", ""))
        self.nframes = len(self.frame_ptr) - 1
        if self.radius_map.ndim != 2:
            raise InputError(f"{data.name}/mask is not an image (shape {self.radius_map.shape})", self.path)
        if data["background_avg"].shape != (self.nframes, len(self.radial)):
            raise InputError(f"{data.name}/background_avg has shape {data['background_avg'].shape}, expected "
                             f"({self.nframes}, {len(self.radial)})", self.path)
        if data["index"].shape[0] < self.frame_ptr[-1] or data["intensity"].shape[0] < self.frame_ptr[-1]:
            raise InputError(f"{data.name}: frame_ptr points beyond index/intensity (truncated file?)", self.path)

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the dense frames."""
        return tuple(self.radius_map.shape)

    @property
    def configuration(self) -> dict[str, Any]:
        """The JSON configuration (``{"geometry": ..., "sparsify": ...}``), {} when absent or unreadable."""
        try:
            return json.loads(self.entry["sparsify/configuration/data"][()])
        except (KeyError, ValueError, TypeError):
            return {}

    @property
    def sources(self) -> tuple[list[str], np.ndarray, np.ndarray] | None:
        """(file names, file_number ``(nframes,)``, frame_index ``(nframes,)``) or None (pyFAI files)."""
        if "sources/files" not in self.entry:
            return None
        group = self.entry["sources"]
        return list(group["files"].asstr()[()]), group["file_number"][()], group["frame_index"][()]

    def instrument(self) -> dict[str, float]:
        """``distance``, pixel sizes (m), beam centre (pixels), ``wavelength`` (m) found in the entry's
        NXdetector/NXmonochromator (pyFAI and braggsieve write them), else {}."""
        info: dict[str, float] = {}
        for group in self.entry.values():
            if not isinstance(group, h5py.Group) or group.attrs.get("NX_class") != "NXinstrument":
                continue
            for sub in group.values():
                kind = sub.attrs.get("NX_class") if isinstance(sub, h5py.Group) else None
                if kind == "NXdetector":
                    for name in ("distance", "x_pixel_size", "y_pixel_size", "beam_center_x", "beam_center_y"):
                        if name in sub:
                            info[name] = float(sub[name][()])
                elif kind == "NXmonochromator" and "wavelength" in sub:
                    info["wavelength"] = float(sub["wavelength"][()]) * 1e-10  # stored in Angstrom
        return info

    def read(self, start: int = 0, stop: int | None = None) -> SparseBatch:
        """Frames ``start .. stop-1`` (default: to the end)."""
        stop = self.nframes if stop is None else min(stop, self.nframes)
        if not 0 <= start <= stop:
            raise InputError(f"frame range {start}:{stop} outside 0:{self.nframes}", self.path)
        ptr = self.frame_ptr[start:stop + 1]
        data = self._data
        try:
            index = data["index"][ptr[0]:ptr[-1]]
            intensity = data["intensity"][ptr[0]:ptr[-1]]
            avg = data["background_avg"][start:stop].astype(np.float32)
            std = (data["background_std"][start:stop].astype(np.float32) if "background_std" in data
                   else np.zeros_like(avg))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read frames {start}:{stop} ({exc})", self.path) from None
        return SparseBatch(start, ptr, index.astype(np.uint32, copy=False), intensity, avg, std)

    def stored_bytes(self) -> int:
        """Size of the file on disk."""
        return os.path.getsize(self.path)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> "SparseFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
