"""Dense frames out: Eiger-like (Dectris / NXmx) master + data files, or miniCBF files.

Eiger layout, as read by XDS's Neggia and Durin plugins and by DIALS (dxtbx FormatNXmx); what each reader
requires is listed in docs/sparse.md and checked in tests/test_densify_readers.py::

    NAME_master.h5                 superblock v0, oldest object formats (Neggia parses HDF5 itself)
      /entry                       NXentry, definition = "NXmx"
      /entry/data                  NXdata
        data_000001 ...            external links to NAME_data_000001.h5:/entry/data/data ... (Neggia, Durin)
        data                       virtual dataset joining all data files (frames, ny, nx): DIALS' FormatNXmx
                                   only recognises a file that has it; FabIO's EigerImage counts it as more frames
      /entry/instrument/beam       incident_wavelength (Angstrom)
      /entry/instrument/detector   x/y_pixel_size (m), beam_center_x/y (pixels), detector_distance (m),
                                   count_time, frame_time (s), sensor_material/thickness, description,
                                   bit_depth_image, bit_depth_readout, saturation_value, pixel_mask (one chunk),
                                   depends_on -> transformations/translation (distance along +z)
        module                     NXdetector_module: data_origin, data_size (ny, nx), module_offset (beam centre
                                   as an offset from the beam axis), fast/slow_pixel_direction (-x, -y, pixel size)
        detectorSpecific           nimages, ntrigger, x/y_pixels_in_detector, x/y_pixel_size, pixel_mask
                                   (uint32, bit 0 = gap/masked), countrate_correction_count_cutoff, compression
      /entry/sample                goniometer omega (deg, 0 for stills) with its depends_on chain
    NAME_data_000001.h5
      /entry/data/data             (n, ny, nx) integers (float frames are rounded to int32, NaN -> -1), one frame
                                   per chunk, bitshuffle-LZ4 (filter 32008) as the only filter, attributes
                                   image_nr_low / image_nr_high (1-based)

Text (NX_class, units, depends_on, ...) is written as fixed-length ASCII, as the Dectris file writer does.
Missing instrument values (a sparse file without geometry) are simply not written.  All files appear together,
atomically, when the writer closes without error.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterable

import h5py
import hdf5plugin
import numpy as np

from .. import __version__
from ..errors import ParameterError
from .atomic import atomic_outputs

_COMPRESSION = hdf5plugin.Bitshuffle(cname="lz4")


def eiger_names(master: str | os.PathLike, nfiles: int) -> tuple[Path, list[Path]]:
    """(master path, data file paths) for ``master`` (``NAME_master.h5``; ``_master`` is added if missing)."""
    master = Path(master)
    stem = master.name[:-len("_master.h5")] if master.name.endswith("_master.h5") else master.stem
    master = master.with_name(f"{stem}_master.h5")
    return master, [master.with_name(f"{stem}_data_{k + 1:06d}.h5") for k in range(nfiles)]


def _text(value: str) -> np.bytes_:
    """A fixed-length ASCII string, the HDF5 string type every reader converts (Durin reads NX_class through C)."""
    return np.bytes_(value.encode("ascii"))


def _attrs(node: h5py.HLObject, **values) -> None:
    """Set attributes, strings as fixed-length ASCII."""
    for name, value in values.items():
        node.attrs[name] = _text(value) if isinstance(value, str) else value


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name)
    _attrs(group, NX_class=nx_class)
    return group


def _scalar(group: h5py.Group, name: str, value, units: str | None = None):
    ds = group.create_dataset(name, data=_text(value) if isinstance(value, str) else value)
    if units:
        _attrs(ds, units=units)
    return ds


def stored_dtype(dtype) -> np.dtype:
    """dtype of the frames in the data files: integers as given; floats as int32, since Neggia refuses
    non-integer data and Durin reads the bytes as integers of the same width."""
    dtype = np.dtype(dtype)
    return np.dtype(np.int32) if dtype.kind == "f" else dtype


def trusted_maximum(dtype) -> int:
    """Highest count that every reader takes as a valid value for frames of integer ``dtype`` (the default
    ``saturation_value``): Neggia (2020 and later) turns any value at or above the signed maximum of the stored
    width into -1 (uint16: 32767 and up), dxtbx turns the two top values of the ``bit_depth_readout`` range
    (2**31 for 32 bits) into the -1/-2 markers."""
    dtype = np.dtype(dtype)
    width = dtype.itemsize if dtype.kind in "iu" else 4
    return min(2 ** (8 * width - 1) - 2, 2 ** 31 - 3)


class EigerWriter:
    """Write ``nframes`` frames of ``shape`` and ``dtype`` batch by batch into master + data files.

    Args:
        master: ``NAME_master.h5``.
        shape, dtype: of one frame (float frames are stored rounded, as int32, NaN as -1).
        nframes: total number of frames (known in advance, as a Dectris detector knows ``nimages``).
        frames_per_file: frames in each data file.
        instrument: ``distance`` (m), ``x_pixel_size``/``y_pixel_size`` (m), ``beam_center_x``/``beam_center_y``
            (pixels), ``wavelength`` (m), optional ``count_time`` (s), ``saturation`` (counts).
        pixel_mask: bool ``(ny, nx)``, True = masked (written as bit 0), or None.
        source: what the frames were made from (recorded in the master).
        virtual: also write ``/entry/data/data``, a virtual dataset over all data files.  DIALS (dxtbx's
            FormatNXmx) only recognises a master that has it; readers that count every ``data*`` member of
            ``/entry/data``, such as FabIO's EigerImage, then see the frames twice.  XDS reads data_NNNNNN.
    """

    def __init__(self, master: str | os.PathLike, shape: tuple[int, int], dtype, *, nframes: int,
                 frames_per_file: int = 1000, instrument: dict | None = None, pixel_mask: np.ndarray | None = None,
                 source: str = "", virtual: bool = True):
        if frames_per_file < 1:
            raise ParameterError(f"frames per data file must be >= 1, got {frames_per_file}")
        self.shape, self.dtype, self.nframes = tuple(shape), stored_dtype(dtype), int(nframes)
        self.frames_per_file = frames_per_file
        nfiles = max(1, -(-self.nframes // frames_per_file))
        self.master, self.data_files = eiger_names(master, nfiles)
        self.instrument = dict(instrument or {})
        self.pixel_mask = pixel_mask
        self.source = source
        self.virtual = virtual
        self._written = 0
        self._stack = contextlib.ExitStack()
        self._temps: dict[Path, Path] = {}
        self._handles: dict[int, h5py.File] = {}

    @property
    def files(self) -> list[Path]:
        return [self.master] + self.data_files

    def __enter__(self) -> "EigerWriter":
        temps = self._stack.enter_context(atomic_outputs(self.files))
        self._temps = dict(zip(self.files, temps))
        return self

    def __exit__(self, exc_type, exc, tb):
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if exc_type is None:
            try:
                if self._written != self.nframes:
                    raise ParameterError(f"{self.master}: {self._written} frames written, {self.nframes} announced")
                self._write_master()
            except BaseException as error:
                self._stack.__exit__(type(error), error, error.__traceback__)
                raise
        return self._stack.__exit__(exc_type, exc, tb)

    def _data_file(self, number: int) -> h5py.File:
        if number not in self._handles:
            for old in list(self._handles):  # frames arrive in order: earlier files are complete
                self._handles.pop(old).close()
            first = number * self.frames_per_file
            count = min(self.frames_per_file, self.nframes - first)
            handle = h5py.File(self._temps[self.data_files[number]], "w", libver="earliest")
            data = _group(_group(handle, "entry", "NXentry"), "data", "NXdata")
            ds = data.create_dataset("data", shape=(count,) + self.shape, dtype=self.dtype,
                                     chunks=(1,) + self.shape, **_COMPRESSION)
            ds.attrs["image_nr_low"] = np.int32(first + 1)
            ds.attrs["image_nr_high"] = np.int32(first + count)
            self._handles[number] = handle
        return self._handles[number]

    def append(self, frames: np.ndarray) -> None:
        """Write the next ``(n, ny, nx)`` frames."""
        if frames.shape[1:] != self.shape:
            raise ParameterError(f"{self.master}: frames of shape {frames.shape[1:]}, expected {self.shape}")
        if self._written + len(frames) > self.nframes:
            raise ParameterError(f"{self.master}: more than the {self.nframes} announced frames")
        k = 0
        while k < len(frames):
            number, offset = divmod(self._written, self.frames_per_file)
            ds = self._data_file(number)["entry/data/data"]
            take = min(len(frames) - k, ds.shape[0] - offset)
            ds[offset:offset + take] = self._stored(frames[k:k + take])
            k += take
            self._written += take

    def _stored(self, frames: np.ndarray) -> np.ndarray:
        if frames.dtype.kind == "f" and self.dtype.kind in "iu":
            limits = np.iinfo(self.dtype)
            frames = np.clip(np.nan_to_num(np.rint(frames.astype(np.float64)), nan=-1), limits.min, limits.max)
        return frames.astype(self.dtype, copy=False)

    def _write_master(self) -> None:
        info = self.instrument
        with h5py.File(self._temps[self.master], "w", libver="earliest") as h5:
            _attrs(h5, NX_class="NXroot", default="entry", creator=f"braggsieve {__version__}")
            entry = _group(h5, "entry", "NXentry")
            _attrs(entry, default="data")
            _scalar(entry, "definition", "NXmx")
            data = _group(entry, "data", "NXdata")
            _attrs(data, signal="data" if self.virtual else "data_000001")
            layout = h5py.VirtualLayout(shape=(self.nframes,) + self.shape, dtype=self.dtype)
            for number, path in enumerate(self.data_files):
                first = number * self.frames_per_file
                count = min(self.frames_per_file, self.nframes - first)
                data[f"data_{number + 1:06d}"] = h5py.ExternalLink(path.name, "/entry/data/data")
                layout[first:first + count] = h5py.VirtualSource(path.name, "/entry/data/data",
                                                                 shape=(count,) + self.shape)
            if self.virtual:
                data.create_virtual_dataset("data", layout)
            instrument = _group(entry, "instrument", "NXinstrument")
            beam = _group(instrument, "beam", "NXbeam")
            if info.get("wavelength"):
                _scalar(beam, "incident_wavelength", float(info["wavelength"]) * 1e10, "angstrom")
            self._write_detector(instrument)
            self._write_sample(entry)
            process = _group(entry, "process", "NXprocess")
            _scalar(process, "program", "braggsieve densify")
            _scalar(process, "version", __version__)
            process.create_dataset("source", data=self.source)  # a path: UTF-8

    def _write_detector(self, instrument: h5py.Group) -> None:
        info = self.instrument
        det = _group(instrument, "detector", "NXdetector")
        special = _group(det, "detectorSpecific", "NXcollection")
        ny, nx = self.shape
        _scalar(det, "description", "dense frames rebuilt from sparse frames by braggsieve")
        px = py = None
        if info.get("x_pixel_size"):
            px = float(info["x_pixel_size"])
            py = float(info.get("y_pixel_size") or px)
            for group in (det, special):  # Durin looks in detectorSpecific when the detector has none
                _scalar(group, "x_pixel_size", px, "m")
                _scalar(group, "y_pixel_size", py, "m")
        for name in ("beam_center_x", "beam_center_y"):
            if info.get(name) is not None:
                _scalar(det, name, float(info[name]), "pixel")
        count_time = float(info.get("count_time", 1.0))
        _scalar(det, "count_time", count_time, "s")
        _scalar(det, "frame_time", count_time, "s")
        _scalar(det, "sensor_thickness", float(info.get("sensor_thickness", 450e-6)), "m")
        _scalar(det, "sensor_material", str(info.get("sensor_material", "Si")))
        bits = np.int32(8 * self.dtype.itemsize)
        _scalar(det, "bit_depth_image", bits)
        _scalar(det, "bit_depth_readout", bits)  # dxtbx converts uint32 frames to int32 only when it is given
        saturation = info.get("saturation")
        if saturation is None:
            saturation = trusted_maximum(self.dtype)
        _scalar(det, "saturation_value", np.int64(saturation))
        mask = np.zeros(self.shape, np.uint32)
        if self.pixel_mask is not None:
            mask[self.pixel_mask] = 1  # bit 0: gap / masked
        # one chunk: Neggia decodes the mask from the chunk at (0, 0) only
        det.create_dataset("pixel_mask", data=mask, chunks=self.shape, **_COMPRESSION)
        special["pixel_mask"] = det["pixel_mask"]
        _scalar(special, "nimages", np.int64(self.nframes))
        _scalar(special, "ntrigger", np.int64(1))
        _scalar(special, "x_pixels_in_detector", np.int32(nx))
        _scalar(special, "y_pixels_in_detector", np.int32(ny))
        _scalar(special, "countrate_correction_count_cutoff", np.int64(saturation))
        _scalar(special, "compression", "bslz4")
        if info.get("distance") and px:
            distance = float(info["distance"])
            _scalar(det, "detector_distance", distance, "m")
            _scalar(special, "detector_distance", distance, "m")
            self._write_transformations(det, distance, px, py, float(info.get("beam_center_x") or 0.0),
                                        float(info.get("beam_center_y") or 0.0))

    def _write_transformations(self, det: h5py.Group, distance: float, px: float, py: float, beam_x: float,
                               beam_y: float) -> None:
        """NXmx geometry (McStas frame: z along the beam, y up, x completing a right-handed frame): the detector
        translated by ``distance`` along z; pixel (f, s) at module_offset + f px (-x) + s py (-y), so that the
        beam axis meets pixel (beam_x, beam_y) (pixel-corner coordinates, as beam_center_x/y)."""
        translation_path = "/entry/instrument/detector/transformations/translation"
        module_offset_path = "/entry/instrument/detector/module/module_offset"
        _scalar(det, "depends_on", translation_path)
        trans = _group(det, "transformations", "NXtransformations")
        _attrs(_scalar(trans, "translation", distance, "m"), transformation_type="translation",
               vector=np.array([0.0, 0.0, 1.0]), offset=np.zeros(3), depends_on=".")
        module = _group(det, "module", "NXdetector_module")
        ny, nx = self.shape
        module.create_dataset("data_origin", data=np.array([0, 0], np.int32))
        module.create_dataset("data_size", data=np.array([ny, nx], np.int32))
        offset = np.array([beam_x * px, beam_y * py, 0.0])
        length = float(np.linalg.norm(offset))
        _attrs(_scalar(module, "module_offset", length, "m"), transformation_type="translation",
               vector=offset / length if length > 0 else np.array([1.0, 0.0, 0.0]), offset=np.zeros(3),
               depends_on=translation_path)
        for name, size, vector in (("fast_pixel_direction", px, [-1.0, 0.0, 0.0]),
                                   ("slow_pixel_direction", py, [0.0, -1.0, 0.0])):
            _attrs(_scalar(module, name, size, "m"), transformation_type="translation", vector=np.array(vector),
                   offset=np.zeros(3), depends_on=module_offset_path)

    def _write_sample(self, entry: h5py.Group) -> None:
        sample = _group(entry, "sample", "NXsample")
        _scalar(sample, "depends_on", "/entry/sample/transformations/omega")
        trans = _group(sample, "transformations", "NXtransformations")
        omega = trans.create_dataset("omega", data=np.zeros(self.nframes))
        _attrs(omega, units="deg", transformation_type="rotation", vector=np.array([-1.0, 0.0, 0.0]),
               offset=np.zeros(3), depends_on=".")
        _scalar(trans, "omega_increment_set", 0.0, "deg")
        gonio = _group(sample, "goniometer", "NXtransformations")
        gonio["omega"] = omega
        _scalar(gonio, "omega_range_average", 0.0, "deg")


def cbf_names(pattern: str | os.PathLike, nframes: int) -> list[Path]:
    """File names for ``nframes`` CBF frames: ``pattern`` with ``{index}`` (0-based), or ``STEM_NNNNN.cbf``."""
    pattern = os.fspath(pattern)
    if "{index" not in pattern:
        path = Path(pattern)
        stem = path.name[:-4] if path.name.endswith(".cbf") else path.name
        pattern = os.fspath(path.with_name(stem + "_{index:05d}.cbf"))
    return [Path(pattern.format(index=k)) for k in range(nframes)]


def write_cbf_frames(pattern: str | os.PathLike, batches: Iterable[np.ndarray], nframes: int,
                     instrument: dict | None = None) -> list[Path]:
    """Write each frame as a miniCBF (int32, byte-offset compressed, Pilatus-style header from ``instrument``)
    through fabio; all files appear together when complete.  Returns the paths."""
    import fabio.cbfimage

    info = dict(instrument or {})
    header = {}
    if info.get("x_pixel_size"):
        header["Pixel_size"] = f"{info['x_pixel_size']:.6g} m x {info.get('y_pixel_size', info['x_pixel_size']):.6g} m"
    if info.get("distance"):
        header["Detector_distance"] = f"{info['distance']:.5f} m"
    if info.get("wavelength"):
        header["Wavelength"] = f"{info['wavelength'] * 1e10:.5f} A"
    if info.get("beam_center_x") is not None:
        header["Beam_xy"] = f"({info['beam_center_x']:.2f}, {info.get('beam_center_y', 0):.2f}) pixels"
    header["Exposure_time"] = f"{float(info.get('count_time', 1.0)):.6f} s"
    names = cbf_names(pattern, nframes)
    with atomic_outputs(names) as temps:
        k = 0
        for frames in batches:
            for frame in frames:
                if k >= nframes:
                    raise ParameterError(f"{pattern}: more than the {nframes} announced frames")
                if frame.dtype.kind == "u":  # CBF is int32: overloads of wider unsigned types saturate
                    data = np.minimum(frame, np.iinfo(np.int32).max)
                elif frame.dtype.kind == "f":
                    data = np.nan_to_num(np.round(frame), nan=-1)  # -1: Pilatus' marker of an invalid pixel
                else:
                    data = frame
                fabio.cbfimage.CbfImage(data=np.ascontiguousarray(data, dtype=np.int32), header=dict(header)) \
                    .write(os.fspath(temps[k]))
                k += 1
        if k != nframes:
            raise ParameterError(f"{pattern}: {k} frames written, {nframes} announced")
    return names
