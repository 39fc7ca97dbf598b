"""Detector and beam metadata from the input files themselves: NXmx/NeXus HDF5 and miniCBF headers.

``read_detector_metadata(path)`` returns a :class:`DetectorMetadata` with whatever the file states (fields it
does not state are ``None``), in SI units: wavelength and distance in metres, pixel size (slow, fast) in metres,
beam centre (x = fast, y = slow) in pixels counted from the detector's outer corner (pixel i spans [i, i+1), so
its centre is at i + 0.5): the convention of NXmx, miniCBF ``Beam_xy``, DIALS and pyFAI's Fit2D parameters, in
which the PONI's poni1 = y * pixel size and poni2 = x * pixel size for an untilted detector.

Sources read:

* NXmx / NeXus (HDF5): the first NXdetector under ``/entry/instrument`` (``distance`` or ``detector_distance``,
  ``x_pixel_size``, ``y_pixel_size``, ``beam_center_x``, ``beam_center_y``, ``saturation_value``,
  ``description``, ``pixel_mask``), the Eiger ``detectorSpecific`` group (``countrate_correction_count_cutoff``,
  ``pixel_mask``, ``description``), and the wavelength from ``/entry/instrument/beam/incident_wavelength``,
  ``/entry/sample/beam/incident_wavelength``, ``/entry/instrument/monochromator/wavelength`` (or the matching
  ``energy``).  Lengths are converted with their ``units`` attribute.  Without one, NXmx's defaults apply
  (metres, Angstrom for wavelengths) unless the value is implausible in those units: a pixel size of 1e-3 or
  more is read as millimetres and then the file's other unit-less lengths (distance, beam centre) are read as
  millimetres too (as APS areaDetector files write them); a unit-less beam centre is otherwise in pixels.
* miniCBF (Pilatus/Eiger ``.cbf``, also ``.cbf.bz2``/``.cbf.gz``): ``# Wavelength``, ``# Detector_distance``,
  ``# Beam_xy (x, y) pixels``, ``# Pixel_size X m x Y m``, ``# Count_cutoff`` and ``# Detector:`` lines; only
  the header is read, not the image.

``pixel_mask`` (bool (ny, nx), True = bad) is the file's own mask: NeXus ``pixel_mask`` (any nonzero bit is
bad; for a per-cell mask (cells, ny, nx) a pixel bad in any cell is bad).  The frame sources add the detector
markers of the first frame (Pilatus -1/-2 on int32, Eiger 0xFFFF/0xFFFFFFFF on unsigned; ``marker_mask``).
"""
from __future__ import annotations

import bz2
import dataclasses
import gzip
import logging
import os
import re
from dataclasses import dataclass

import h5py
import numpy as np

from ..engine.corrections import detector_markers
from ..errors import InputError
from .readers import is_hdf5, reason

log = logging.getLogger(__name__)

HC_KEV_ANGSTROM = 12.398419843320026  # h*c in keV * Angstrom
_LENGTH_TO_M = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
                "cm": 1e-2, "mm": 1e-3, "millimeter": 1e-3, "millimeters": 1e-3, "millimetre": 1e-3,
                "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "microns": 1e-6, "micrometer": 1e-6, "micrometre": 1e-6,
                "nm": 1e-9, "a": 1e-10, "å": 1e-10, "ang": 1e-10, "angstrom": 1e-10, "angstroms": 1e-10}
_PIXEL_UNITS = {"pixel", "pixels", "px", "pix"}
_ENERGY_TO_KEV = {"ev": 1e-3, "kev": 1.0}


@dataclass(frozen=True)
class DetectorMetadata:
    """What an input file says about its detector and beam (None where it says nothing).

    Attributes:
        wavelength_m: X-ray wavelength in metres.
        distance_m: sample-detector distance in metres (along the beam, for an untilted detector).
        pixel_size_m: (slow, fast) pixel size in metres.
        beam_center_px: (x_fast, y_slow) where the direct beam hits the detector, in pixels from the detector's
            outer corner (pixel i spans [i, i+1)), as NXmx and miniCBF write it.
        detector_name: the detector's description as written in the file (e.g. "PILATUS3 6M, S/N 60-0119").
        saturation: count cut-off in raw units (pixels at or above are unreliable), or None.
        pixel_mask: bool (ny, nx), True = bad pixel according to the file (gaps, dead, hot), or None.
        source: the file the metadata was read from.
    """

    wavelength_m: float | None = None
    distance_m: float | None = None
    pixel_size_m: tuple[float, float] | None = None
    beam_center_px: tuple[float, float] | None = None
    detector_name: str | None = None
    saturation: float | None = None
    pixel_mask: np.ndarray | None = None
    source: str | None = None

    @property
    def has_geometry(self) -> bool:
        """True when distance, pixel size and beam centre are all known (enough for a PONI; q needs a
        wavelength too)."""
        return None not in (self.distance_m, self.pixel_size_m, self.beam_center_px)

    def describe(self) -> str:
        """One line for the log: the geometry this metadata gives."""
        parts = []
        if self.detector_name:
            parts.append(self.detector_name)
        if self.distance_m is not None:
            parts.append(f"distance {self.distance_m * 1e3:.4g} mm")
        if self.beam_center_px is not None:
            parts.append("beam centre (x, y) = (%.2f, %.2f) px" % self.beam_center_px)
        if self.pixel_size_m is not None:
            parts.append("pixel %.4g x %.4g um" % tuple(1e6 * p for p in self.pixel_size_m))
        if self.wavelength_m is not None:
            parts.append(f"wavelength {self.wavelength_m * 1e10:.6g} A")
        return ", ".join(parts) or "no geometry"


def marker_mask(frame: np.ndarray) -> np.ndarray | None:
    """bool (ny, nx) of the detector's gap/bad-pixel markers in one raw frame, or None if it has none: the
    values the engine's preprocessing also masks in every frame (engine.corrections.detector_markers: all bits
    set on unsigned integers, Eiger 0xFFFF / 0xFFFFFFFF; -1 gap and -2 bad on int32, Pilatus)."""
    values = detector_markers(frame.dtype)
    if values.size == 0:
        return None
    markers = np.isin(frame, values.astype(frame.dtype))
    return markers if markers.any() else None


def with_markers(metadata: DetectorMetadata, frame: np.ndarray) -> DetectorMetadata:
    """``metadata`` whose pixel_mask also holds the markers of ``frame`` (see marker_mask)."""
    markers = marker_mask(frame)
    if markers is None:
        return metadata
    if metadata.pixel_mask is not None and metadata.pixel_mask.shape == markers.shape:
        markers = markers | metadata.pixel_mask
    return dataclasses.replace(metadata, pixel_mask=markers)


def read_detector_metadata(path: str | os.PathLike) -> DetectorMetadata:
    """Metadata of one input file (see the module docstring); an empty DetectorMetadata for formats without
    any (EDF, TIFF, ...).  Raises InputError if the file cannot be opened."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if is_hdf5(path):
        return _read_nexus(path)
    if ".cbf" in os.path.basename(path).lower():
        return _read_minicbf(path)
    return DetectorMetadata(source=path)


# -- NeXus / NXmx -------------------------------------------------------------------------------------------------
def _units(node: h5py.Dataset) -> str | None:
    units = node.attrs.get("units")
    if units is None:
        return None
    if isinstance(units, bytes):
        units = units.decode(errors="replace")
    return str(np.asarray(units).ravel()[0] if not isinstance(units, str) else units).strip().lower()


def _scalar(group: h5py.Group | None, *names: str) -> tuple[float, str | None] | None:
    """(value, units) of the first dataset in ``names`` that exists and holds a number."""
    if group is None:
        return None
    for name in names:
        node = group.get(name)
        if isinstance(node, h5py.Dataset) and node.dtype.kind in "iuf" and node.size >= 1:
            return float(np.asarray(node[()]).ravel()[0]), _units(node)
    return None


def _text(group: h5py.Group | None, *names: str) -> str | None:
    if group is None:
        return None
    for name in names:
        node = group.get(name)
        if isinstance(node, h5py.Dataset) and node.dtype.kind in "SOU":
            value = np.asarray(node[()]).ravel()
            if value.size:
                text = value[0].decode(errors="replace") if isinstance(value[0], bytes) else str(value[0])
                if text.strip():
                    return text.strip()
    return None


def _to_metres(value: float, units: str | None, path: str, what: str) -> float:
    if units not in _LENGTH_TO_M:
        raise InputError(f"{what} has unknown length units {units!r}", path)
    return value * _LENGTH_TO_M[units]


def _find_detector(handle: h5py.File) -> h5py.Group | None:
    instrument = handle.get("/entry/instrument")
    if not isinstance(instrument, h5py.Group):
        return None
    if isinstance(instrument.get("detector"), h5py.Group):
        return instrument["detector"]
    for child in instrument.values():
        nx_class = child.attrs.get("NX_class", b"") if isinstance(child, h5py.Group) else b""
        if (nx_class.decode() if isinstance(nx_class, bytes) else str(nx_class)) == "NXdetector":
            return child
    return None


def _read_nexus(path: str) -> DetectorMetadata:
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot open as HDF5 ({reason(exc)})", path) from None
    with handle:
        detector = _find_detector(handle)
        specific = detector.get("detectorSpecific") if detector is not None else None
        specific = specific if isinstance(specific, h5py.Group) else None

        pixel_size = None
        mm_file = False  # unit-less lengths are millimetres in this file (see module docstring)
        sizes = [_scalar(detector, "y_pixel_size"), _scalar(detector, "x_pixel_size")]
        if None not in sizes:
            if sizes[0][1] is None and sizes[0][0] >= 1e-3:
                mm_file = True
                log.info("%s: unit-less pixel size %g read as millimetres", path, sizes[0][0])
            default = "mm" if mm_file else "m"
            pixel_size = tuple(_to_metres(v, u or default, path, "pixel size") for v, u in sizes)

        distance = None
        found = _scalar(detector, "distance", "detector_distance")
        if found is not None:
            value, units = found
            distance = _to_metres(value, units or ("mm" if mm_file else "m"), path, "detector distance")

        beam_center = None
        centre = [_scalar(detector, "beam_center_x"), _scalar(detector, "beam_center_y")]
        if None not in centre:
            (x, ux), (y, uy) = centre
            if ux in _PIXEL_UNITS or (ux is None and not mm_file):
                beam_center = (x, y)
            elif pixel_size is not None:
                beam_center = (_to_metres(x, ux or "mm", path, "beam_center_x") / pixel_size[1],
                               _to_metres(y, uy or "mm", path, "beam_center_y") / pixel_size[0])

        saturation = _scalar(detector, "saturation_value") or _scalar(specific, "countrate_correction_count_cutoff")
        name = _text(detector, "description", "local_name", "model") or _text(specific, "description")
        return DetectorMetadata(
            wavelength_m=_nexus_wavelength(handle, path),
            distance_m=distance,
            pixel_size_m=pixel_size,
            beam_center_px=beam_center,
            detector_name=name,
            saturation=saturation[0] if saturation is not None else None,
            pixel_mask=_nexus_pixel_mask(detector, specific),
            source=path,
        )


def _nexus_wavelength(handle: h5py.File, path: str) -> float | None:
    for group_path in ("/entry/instrument/beam", "/entry/sample/beam", "/entry/instrument/monochromator"):
        group = handle.get(group_path)
        if not isinstance(group, h5py.Group):
            continue
        found = _scalar(group, "incident_wavelength", "wavelength")
        if found is not None and found[0] > 0:
            value, units = found
            if units is None:  # NXmx: Angstrom; a value below 1e-6 can only be metres
                units = "m" if value < 1e-6 else "angstrom"
            return _to_metres(value, units, path, "wavelength")
        found = _scalar(group, "incident_energy", "energy")
        if found is not None and found[0] > 0:
            value, units = found
            units = units or ("ev" if value > 1000 else "kev")
            if units not in _ENERGY_TO_KEV:
                raise InputError(f"energy has unknown units {units!r}", path)
            return HC_KEV_ANGSTROM / (value * _ENERGY_TO_KEV[units]) * 1e-10
    return None


def _nexus_pixel_mask(*groups: h5py.Group | None) -> np.ndarray | None:
    for group in groups:
        node = group.get("pixel_mask") if group is not None else None
        if isinstance(node, h5py.Dataset) and node.ndim in (2, 3):
            mask = node[()] != 0
            return mask.any(axis=0) if mask.ndim == 3 else mask
    return None


# -- miniCBF -----------------------------------------------------------------------------------------------------
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_CBF_FIELDS = {
    "wavelength": re.compile(rf"^#\s*Wavelength\s+{_NUMBER}\s*(\S+)?", re.M | re.I),
    "distance": re.compile(rf"^#\s*Detector_distance\s+{_NUMBER}\s*(\S+)?", re.M | re.I),
    "beam": re.compile(rf"^#\s*Beam_xy\s*\(\s*{_NUMBER}\s*,\s*{_NUMBER}\s*\)", re.M | re.I),
    "pixel": re.compile(rf"^#\s*Pixel_size\s+{_NUMBER}\s*(\S+)\s*x\s*{_NUMBER}\s*(\S+)", re.M | re.I),
    "cutoff": re.compile(rf"^#\s*Count_cutoff\s+{_NUMBER}", re.M | re.I),
    "detector": re.compile(r"^#\s*Detector:\s*(.+?)\s*$", re.M | re.I),
}


def _cbf_header(path: str, limit: int = 1 << 16) -> str:
    """The text before the binary section of a (possibly bz2/gzip-compressed) CBF file."""
    opener = bz2.open if path.lower().endswith(".bz2") else gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(limit)
    except (OSError, EOFError, ValueError) as exc:
        raise InputError(f"cannot read CBF header ({exc})", path) from None
    end = head.find(b"\x0c\x1a\x04\xd5")  # CBF binary section start marker
    return head[: end if end >= 0 else len(head)].decode("ascii", errors="replace")


def _read_minicbf(path: str) -> DetectorMetadata:
    text = _cbf_header(path)
    match = {key: pattern.search(text) for key, pattern in _CBF_FIELDS.items()}
    wavelength = distance = pixel_size = beam = cutoff = None
    if match["wavelength"]:
        units = (match["wavelength"].group(2) or "A").lower()
        wavelength = _to_metres(float(match["wavelength"].group(1)), units, path, "Wavelength")
    if match["distance"]:
        units = (match["distance"].group(2) or "m").lower()
        distance = _to_metres(float(match["distance"].group(1)), units, path, "Detector_distance")
    if match["pixel"]:  # "Pixel_size X m x Y m": X along the fast axis
        fast = _to_metres(float(match["pixel"].group(1)), match["pixel"].group(2).lower(), path, "Pixel_size")
        slow = _to_metres(float(match["pixel"].group(3)), match["pixel"].group(4).lower(), path, "Pixel_size")
        pixel_size = (slow, fast)
    if match["beam"]:
        beam = (float(match["beam"].group(1)), float(match["beam"].group(2)))
    if match["cutoff"]:
        cutoff = float(match["cutoff"].group(1))
    return DetectorMetadata(wavelength_m=wavelength, distance_m=distance, pixel_size_m=pixel_size,
                            beam_center_px=beam, detector_name=match["detector"].group(1) if match["detector"] else None,
                            saturation=cutoff, pixel_mask=None, source=path)
