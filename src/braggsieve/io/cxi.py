"""CXI peak files for CrystFEL (``indexamajig --peaks=cxi``), written frame batch by frame batch.

Layout (DESIGN.md "Peaks (CXI)"; one row per frame, in input order)::

    /cxi_version                          int 160
    /entry_1/result_1/nPeaks              int32   (frames,)
    /entry_1/result_1/peakXPosRaw         float32 (frames, max_peaks)  centroid column (fast axis)
    /entry_1/result_1/peakYPosRaw         float32 (frames, max_peaks)  centroid row (slow axis)
    /entry_1/result_1/peakTotalIntensity  float32 (frames, max_peaks)  background-subtracted, detector counts
    /entry_1/result_1/peakSNR             float32 (frames, max_peaks)
    /entry_1/result_1/peakSigma, peakNPixels (int32), peakMaximumValue, peakBackground, peakResolution (Angstrom)
    /entry_1/data_1/data                  the frames: an external link / virtual dataset for HDF5 inputs,
                                          a gzip copy for CBF/EDF/TIFF inputs
    /entry_1/data_1/mask                  uint8 (ny, nx), 1 = bad (optional; the .geom's ``mask`` lines point
                                          CrystFEL at it: geometry.crystfel.geom_text(mask=MASK))
    /entry_1/process_1                    provenance (NXprocess)

Positions have pixel centres at integer indices (CrystFEL adds its own half pixel when reading them).  Rows
past ``nPeaks`` are zero.  Peak arrays are chunked and uncompressed (``compression="gzip"`` optional), so that
CrystFEL reads them without HDF5 filter plugins; CrystFEL reads the peaks only from the file that holds the
images, hence ``/entry_1/data_1/data``.  Links use paths relative to the CXI file's folder, so moving the
output together with its inputs keeps them valid.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..engine.records import PEAK_FIELDS, PeakList
from ..errors import InputError
from .provenance import Provenance, write_provenance

RESULT = "/entry_1/result_1"
DATA = "/entry_1/data_1/data"
MASK = "/entry_1/data_1/mask"
# PeakList field -> CXI dataset name (the first four are the ones CrystFEL reads, with nPeaks)
CXI_NAMES = {"col": "peakXPosRaw", "row": "peakYPosRaw", "intensity": "peakTotalIntensity", "snr": "peakSNR",
             "sigma": "peakSigma", "npix": "peakNPixels", "maximum": "peakMaximumValue",
             "background": "peakBackground", "resolution": "peakResolution"}


@dataclass(frozen=True)
class ImageRef:
    """Where one frame lives in an HDF5 file: ``file``, ``dataset`` path (2-D or 3-D) and frame ``index``."""

    file: str
    dataset: str
    index: int


class CxiWriter:
    """Write a CXI file incrementally: ``append(peaks, ...)`` once per batch, ``close()`` at the end.

    Args:
        path: the file to create (normally a temporary name from :func:`braggsieve.io.atomic.atomic_output`).
        frame_shape, frame_dtype: (ny, nx) and raw dtype of the frames.
        images: "link" (each append passes ``refs``, one :class:`ImageRef` per frame; the frames become a
            virtual dataset, or an external link when they are exactly one source dataset in order), "copy"
            (each append passes the raw ``frames``; stored gzip-compressed, one frame per chunk) or "none".
        compression: None (default) or "gzip" for the peak arrays.
        mask: optional bool (ny, nx), True = bad pixel (gaps, dead, user-masked), stored at :data:`MASK` as
            uint8 1 = bad so that CrystFEL leaves those pixels out of its integration.
        link_dir: folder the links are made relative to (default: the folder of ``path``; give the final
            output's folder when ``path`` is a temporary name elsewhere).
    """

    def __init__(self, path: str | os.PathLike, frame_shape: tuple[int, int], frame_dtype, *, images: str = "link",
                 compression: str | None = None, link_dir: str | os.PathLike | None = None,
                 mask: np.ndarray | None = None):
        if images not in ("link", "copy", "none"):
            raise ValueError(f"images must be link, copy or none, not {images!r}")
        self.path = Path(path)
        self.shape = tuple(int(s) for s in frame_shape)
        if mask is not None and np.shape(mask) != self.shape:
            raise ValueError(f"mask shape {np.shape(mask)} differs from the frames' {self.shape}")
        self.dtype = np.dtype(frame_dtype)
        self.images = images
        self.link_dir = Path(link_dir) if link_dir is not None else self.path.parent
        self.nframes = 0
        self._refs: list[ImageRef] = []
        self._file = h5py.File(self.path, "w")
        self._file.attrs["default"] = "entry_1"
        self._file["cxi_version"] = 160
        entry = self._file.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "result_1"
        result = self._file.create_group(RESULT)
        result.attrs["NX_class"] = "NXdata"
        result.attrs["signal"] = "nPeaks"
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compression == "gzip" else {}
        self._npeaks = result.create_dataset("nPeaks", shape=(0,), maxshape=(None,), dtype=np.int32,
                                             chunks=(4096,), **opts)
        self._npeaks.attrs["interpretation"] = "spectrum"
        self._arrays = {field: result.create_dataset(name, shape=(0, 1), maxshape=(None, None),
                                                     dtype=PEAK_FIELDS[field] if field == "npix" else np.float32,
                                                     chunks=(64, 256), fillvalue=0, **opts)
                        for field, name in CXI_NAMES.items()}
        self._arrays["resolution"].attrs["units"] = "angstrom"
        if mask is not None:
            self._data_group(signal=False).create_dataset(
                "mask", data=np.asarray(mask, dtype=bool).astype(np.uint8), compression="gzip",
                compression_opts=4, shuffle=True)
        if images == "copy":
            data = self._data_group()
            self._data = data.create_dataset("data", shape=(0, *self.shape), maxshape=(None, *self.shape),
                                             dtype=self.dtype, chunks=(1, *self.shape), compression="gzip",
                                             compression_opts=1, shuffle=True)

    def append(self, peaks: PeakList, *, frames: np.ndarray | None = None, refs: list[ImageRef] | None = None
               ) -> None:
        """Add the peaks of ``peaks.nframes`` frames (and their images: ``frames`` for "copy", ``refs`` for
        "link")."""
        n = peaks.nframes
        start, stop = self.nframes, self.nframes + n
        counts = peaks.npeaks
        width = int(counts.max()) if n else 0
        if width > self._arrays["row"].shape[1]:
            for dataset in self._arrays.values():
                dataset.resize(width, axis=1)
        self._npeaks.resize(stop, axis=0)
        self._npeaks[start:stop] = counts
        rows = np.repeat(np.arange(n), counts)
        cols = np.arange(len(rows)) - np.repeat(peaks.frame_ptr[:-1], counts)
        for field, dataset in self._arrays.items():
            block = np.zeros((n, dataset.shape[1]), dataset.dtype)
            block[rows, cols] = getattr(peaks, field)
            dataset.resize(stop, axis=0)
            dataset[start:stop] = block
        if self.images == "copy":
            if frames is None or frames.shape != (n, *self.shape):
                raise ValueError(f"copy mode needs the {n} frames of the batch")
            self._data.resize(stop, axis=0)
            self._data[start:stop] = frames
        elif self.images == "link":
            if refs is None or len(refs) != n:
                raise ValueError(f"link mode needs one ImageRef per frame ({n})")
            self._refs.extend(refs)
        self.nframes = stop

    def close(self, provenance: Provenance | None = None) -> None:
        """Link the images (link mode), write the provenance and close the file."""
        if self.images == "link" and self.nframes:
            self._link_images()
        if provenance is not None:
            write_provenance(self._file.create_group("entry_1/process_1"), provenance.finish())
        self._file.close()

    def _data_group(self, signal: bool = True) -> h5py.Group:
        """/entry_1/data_1 (NXdata; ``signal`` names the frames, which only the image modes write)."""
        data = self._file.require_group("entry_1/data_1")
        data.attrs["NX_class"] = "NXdata"
        if signal:
            data.attrs["signal"] = "data"
        return data

    def _relative(self, file: str) -> str:
        return os.path.relpath(os.path.abspath(file), os.path.abspath(self.link_dir))

    def _link_images(self) -> None:
        data = self._data_group()
        first = self._refs[0]
        shapes = {}
        for ref in {(r.file, r.dataset) for r in self._refs}:
            try:
                with h5py.File(ref[0], "r") as handle:
                    shapes[ref] = handle[ref[1]].shape
            except (OSError, KeyError) as exc:
                raise InputError(f"cannot open dataset {ref[1]} to link it ({exc})", ref[0]) from None
        whole = shapes[(first.file, first.dataset)]
        single = (len(shapes) == 1 and len(whole) == 3 and whole[0] == self.nframes
                  and all(r.index == k for k, r in enumerate(self._refs)))
        if single:
            data["data"] = h5py.ExternalLink(self._relative(first.file), first.dataset)
            return
        layout = h5py.VirtualLayout(shape=(self.nframes, *self.shape), dtype=self.dtype)
        sources = {key: h5py.VirtualSource(self._relative(key[0]), key[1], shape=shape, dtype=self.dtype)
                   for key, shape in shapes.items()}
        row = 0
        while row < self.nframes:  # runs of consecutive frames of one dataset become one mapping
            ref = self._refs[row]
            end = row + 1
            while (end < self.nframes and (self._refs[end].file, self._refs[end].dataset) == (ref.file, ref.dataset)
                   and self._refs[end].index == ref.index + (end - row)):
                end += 1
            source = sources[(ref.file, ref.dataset)]
            if len(source.shape) == 2:
                layout[row] = source
            else:
                layout[row:end] = source[ref.index:ref.index + (end - row)]
            row = end
        data.create_virtual_dataset("data", layout, fillvalue=0)


def read_cxi(path: str | os.PathLike) -> PeakList:
    """The peaks of a CXI file written by :class:`CxiWriter` (or pyFAI/Cheetah: fields they lack are NaN/0)."""
    try:
        with h5py.File(path, "r") as handle:
            result = handle[RESULT]
            counts = result["nPeaks"][()].astype(np.int64)
            keep = np.arange(result["peakXPosRaw"].shape[1])[None, :] < counts[:, None]
            fields = {}
            for field, dtype in PEAK_FIELDS.items():
                name = CXI_NAMES.get(field)
                if name is not None and name in result:
                    fields[field] = result[name][()][keep].astype(dtype)
                else:
                    fields[field] = np.full(int(counts.sum()), np.nan if dtype.kind == "f" else 0, dtype)
    except (OSError, KeyError) as exc:
        raise InputError(f"not a CXI peak file ({exc})", path) from None
    frame_ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=frame_ptr[1:])
    return PeakList(frame_ptr=frame_ptr, **fields)


def image_refs(source, ids) -> list[ImageRef] | None:
    """Where the frames ``ids`` (FrameIds of ``source``, an io.frames.FrameSource) live in HDF5 files, one
    :class:`ImageRef` each, or None when an input is not HDF5 (CBF, EDF, TIFF: the images must be copied).
    Frames of an Eiger master file point at the master's ``data_NNNNNN`` links."""
    kinds = [source.input_of(s) for s in range(len(source.sources))]
    if any(kind not in ("hdf5", "eiger") for kind, _ in kinds):
        return None
    parts: dict[int, tuple[list[str], np.ndarray]] = {}
    refs = []
    for s, index in zip(ids.source, ids.index):
        kind, path = kinds[s]
        if kind == "hdf5":
            refs.append(ImageRef(path, source.h5path, int(index)))
            continue
        if s not in parts:
            with h5py.File(path, "r") as handle:
                group = handle[source.h5path.rsplit("/", 1)[0]]
                names = sorted(n for n in group if re.fullmatch(r"data_\d{6}", n))
                counts = [group[n].shape[0] if group[n].ndim == 3 else 1 for n in names]
                parts[s] = ([f"{group.name}/{n}" for n in names], np.cumsum([0] + counts))
        names, offsets = parts[s]
        k = int(np.searchsorted(offsets, index, side="right")) - 1
        refs.append(ImageRef(path, names[k], int(index - offsets[k])))
    return refs
