"""pyFAI PONI geometry: read and write PONI files (versions 1, 2, 2.1 and 3), and derive one from a beam centre.

A PONI ("point of normal incidence") geometry, in pyFAI's conventions:

* ``dist`` (m): distance from the sample to the detector plane, along the plane's normal;
* ``poni1``, ``poni2`` (m): where that normal meets the detector, measured from the detector's outer corner
  (pixel ``(0, 0)`` spans ``[0, pixel)`` on both axes) along the slow axis (rows, "1") and the fast axis
  (columns, "2");
* ``rot1``, ``rot2``, ``rot3`` (rad): detector rotations about axes 1, 2 and 3 (the beam), applied in that
  order (see :mod:`braggsieve.geometry.pixels`);
* ``wavelength`` (m), or None when the file has none (q and d-spacing then cannot be computed).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ParameterError
from .detectors import DETECTORS, ORIENTATIONS, Detector, get_detector

log = logging.getLogger(__name__)

POSITION_FIELDS = {"dist": "Distance", "poni1": "Poni1", "poni2": "Poni2",
                   "rot1": "Rot1", "rot2": "Rot2", "rot3": "Rot3"}
# Key written for a braggsieve detector that pyFAI has no class for (pyFAI ignores unknown keys).
LAYOUT_KEY = "braggsieve_detector"


def rotation_matrix(rot1: float, rot2: float, rot3: float) -> np.ndarray:
    """3x3 rotation from detector to laboratory coordinates: ``R3 @ R2 @ R1`` where ``Rk`` turns by ``rotk``
    about axis k (axis 1 along the detector rows/poni1, axis 2 along its columns/poni2, axis 3 along the beam),
    with pyFAI's senses."""
    c1, s1 = np.cos(rot1), np.sin(rot1)
    c2, s2 = np.cos(rot2), np.sin(rot2)
    c3, s3 = np.cos(rot3), np.sin(rot3)
    about1 = np.array([[1.0, 0.0, 0.0], [0.0, c1, s1], [0.0, -s1, c1]])
    about2 = np.array([[c2, 0.0, -s2], [0.0, 1.0, 0.0], [s2, 0.0, c2]])
    about3 = np.array([[c3, -s3, 0.0], [s3, c3, 0.0], [0.0, 0.0, 1.0]])
    return about3 @ about2 @ about1


@dataclass(frozen=True)
class Poni:
    """Detector position (pyFAI's PONI parameters) and the detector itself; lengths in metres, angles in rad."""

    dist: float
    poni1: float
    poni2: float
    rot1: float
    rot2: float
    rot3: float
    wavelength: float | None
    detector: Detector

    def __post_init__(self):
        # plain Python floats, whatever the caller passed (numpy scalars would print as np.float64(...))
        for name in (*POSITION_FIELDS, "wavelength"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        for name in POSITION_FIELDS:
            if not math.isfinite(getattr(self, name)):
                raise ParameterError(f"PONI {name} must be a finite number, got {getattr(self, name)}")
        if not self.dist > 0:
            raise ParameterError(f"PONI distance must be positive, got {self.dist} m")
        if self.wavelength is not None and not (math.isfinite(self.wavelength) and self.wavelength > 0):
            raise ParameterError(f"PONI wavelength must be a positive length in metres, got {self.wavelength}")

    @classmethod
    def from_beam_center(cls, detector: Detector, distance_m: float, beam_center_px: tuple[float, float],
                         wavelength_m: float | None = None) -> "Poni":
        """An untilted geometry from the sample-detector distance (m) and the beam centre in pixels.

        ``beam_center_px`` is (x = fast axis = column, y = slow axis = row) in pixel units from the detector's
        outer corner, the convention of Fit2D, miniCBF ``Beam_xy`` and NXmx ``beam_center_x/y``: a beam
        hitting the middle of pixel (row i, column j) has beam centre (j + 0.5, i + 0.5).  Same result as
        pyFAI's ``setFit2D(distance_mm, x, y)`` with no tilt.
        """
        x_fast, y_slow = beam_center_px
        return cls(dist=float(distance_m), poni1=float(y_slow) * detector.pixel_size[0],
                   poni2=float(x_fast) * detector.pixel_size[1], rot1=0.0, rot2=0.0, rot3=0.0,
                   wavelength=None if wavelength_m is None else float(wavelength_m), detector=detector)

    def _beam_offset(self) -> np.ndarray:
        """(d1, d2, dist) in metres from the PONI to where the direct beam (lab axis 3) meets the plane."""
        beam_in_detector = rotation_matrix(self.rot1, self.rot2, self.rot3)[2]  # R^T (0, 0, 1)
        if not beam_in_detector[2] > 1e-12:
            raise ParameterError("the direct beam does not meet the detector plane (tilt of 90 degrees or more)")
        return beam_in_detector * (self.dist / beam_in_detector[2])

    def beam_center_px(self) -> tuple[float, float]:
        """(x_fast, y_slow) in pixels from the detector's outer corner where the direct beam meets the detector
        plane (the inverse of :meth:`from_beam_center`; with tilts, pyFAI's ``getFit2D`` centerX/centerY):
        what NXmx ``beam_center_x/y`` and miniCBF ``Beam_xy`` hold."""
        d1, d2, _ = self._beam_offset()
        return (float((self.poni2 + d2) / self.detector.pixel_size[1]),
                float((self.poni1 + d1) / self.detector.pixel_size[0]))

    def beam_distance_m(self) -> float:
        """Distance in metres from the sample to where the direct beam meets the detector (= ``dist`` without
        tilt; pyFAI's ``getFit2D`` directDist / 1000)."""
        return float(np.linalg.norm(self._beam_offset()))

    def for_shape(self, shape: tuple[int, int]) -> "Poni":
        """This geometry for frames of ``shape`` (see :meth:`Detector.for_shape`)."""
        detector = self.detector.for_shape(shape)
        return self if detector is self.detector else dataclasses.replace(self, detector=detector)

    def as_dict(self) -> dict:
        """JSON-ready dict for provenance: the six PONI parameters, wavelength and the detector summary."""
        return {"dist": self.dist, "poni1": self.poni1, "poni2": self.poni2, "rot1": self.rot1,
                "rot2": self.rot2, "rot3": self.rot3, "wavelength": self.wavelength,
                "detector": self.detector.as_dict()}


def _number(fields: dict, key: str, path) -> float:
    text = fields[key]
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"PONI field {key!r} is not a number: {text!r}", path) from None
    if not math.isfinite(value):
        raise InputError(f"PONI field {key!r} is not finite: {text!r}", path)
    return value


def _read_fields(path) -> dict[str, str]:
    """``key: value`` lines of a PONI file, keys lower-cased, the last occurrence winning; '#' lines skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read PONI file: {getattr(exc, 'strerror', None) or exc}", path) from None
    fields = {}
    for line in lines:
        if line.lstrip().startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    return fields


def _detector_from_fields(fields: dict, path) -> Detector:
    config = {}
    if "detector_config" in fields:
        try:
            config = json.loads(fields["detector_config"])
        except json.JSONDecodeError as exc:
            raise InputError(f"PONI field 'Detector_config' is not valid JSON: {exc.msg}", path) from None
        if not isinstance(config, dict):
            raise InputError("PONI field 'Detector_config' is not a JSON object", path)
    spline = config.get("splineFile") or config.get("splinefile") or fields.get("splinefile")
    if spline and str(spline).lower() != "none":
        raise InputError(f"spline distortion correction ({spline}) is not supported", path)
    orientation = config.get("orientation", 3)
    if orientation not in ORIENTATIONS:
        raise InputError(f"detector orientation must be 1, 2, 3 or 4, got {orientation!r}", path)

    def pixel(config_key, v1_key):
        value = config.get(config_key, fields.get(v1_key))
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"PONI pixel size {config_key} is not a number: {value!r}", path) from None
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"PONI pixel size {config_key} must be a positive length, got {value!r}", path)
        return value

    pixel_size = (pixel("pixel1", "pixelsize1"), pixel("pixel2", "pixelsize2"))
    name = fields.get(LAYOUT_KEY) or fields.get("detector") or "Detector"
    if name.lower() not in ("detector", "none"):
        try:
            detector = get_detector(name)
        except ParameterError:
            detector = None
            log.warning("%s: detector %r is not in braggsieve's registry; treating it as one flat panel of "
                        "its pixel size", path, name)
        if detector is not None:
            if None not in pixel_size and not all(math.isclose(a, b, rel_tol=1e-9)
                                                  for a, b in zip(pixel_size, detector.pixel_size)):
                if detector.multipanel:
                    raise InputError(f"pixel size {pixel_size} differs from detector {detector.name}'s", path)
                detector = dataclasses.replace(detector, pixel_size=pixel_size)
            if orientation != detector.orientation:
                if detector.multipanel:
                    raise InputError(f"orientation {orientation} is not supported for detector {detector.name}",
                                     path)
                detector = dataclasses.replace(detector, orientation=orientation)
            return detector
    if None in pixel_size:
        missing = "PixelSize1" if pixel_size[0] is None else "PixelSize2"
        raise InputError(f"missing field {missing!r} (or pixel1/pixel2 in Detector_config)", path)
    shape = config.get("max_shape")
    if shape is not None:
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n > 0 for n in shape)):
            raise InputError(f"detector max_shape must be two positive integers, got {shape!r}", path)
    generic_name = "generic" if name.lower() in ("detector", "none") else name
    return Detector.generic(shape, pixel_size, name=generic_name, orientation=orientation)


def read_poni(path: str | os.PathLike) -> Poni:
    """Read a pyFAI PONI file (v1: PixelSize1/2; v2: Detector + Detector_config JSON; v2.1: orientation; v3:
    Parallax).  InputError, naming the file and the field, when a field is missing or unparsable."""
    fields = _read_fields(path)
    if not fields:
        raise InputError("not a PONI file (no 'key: value' lines)", path)
    if "distance" not in fields and "dist" in fields:
        fields["distance"] = fields["dist"]
    values = {}
    for name, label in POSITION_FIELDS.items():
        key = label.lower()
        if key not in fields:
            raise InputError(f"missing field {label!r}", path)
        values[name] = _number(fields, key, path)
    if not values["dist"] > 0:
        raise InputError(f"PONI field 'Distance' must be positive, got {fields['distance']!r}", path)
    wavelength = None
    if fields.get("wavelength", "none").lower() not in ("none", ""):
        wavelength = _number(fields, "wavelength", path)
        if not wavelength > 0:
            raise InputError(f"PONI field 'Wavelength' must be positive, got {fields['wavelength']!r}", path)
    if fields.get("parallax", "false").lower() == "true":
        log.warning("%s: parallax correction is not supported and is ignored", path)
    return Poni(**values, wavelength=wavelength, detector=_detector_from_fields(fields, path))


def poni_text(poni: Poni, comment: str | None = None) -> str:
    """The PONI file (version 2.1) for ``poni``, readable by pyFAI and by :func:`read_poni`.

    Registry detectors that pyFAI knows are written under pyFAI's class name; others as pyFAI's generic
    ``Detector`` (pixel size, shape, orientation) plus a ``braggsieve_detector`` key naming the layout, which
    pyFAI ignores: pyFAI then sees a single flat panel, exact for one-image detectors only.
    """
    detector = poni.detector
    config = {"pixel1": detector.pixel_size[0], "pixel2": detector.pixel_size[1]}
    lines = ["# Nota: C-Order, 1 refers to the Y axis, 2 to the X axis", "# Written by braggsieve"]
    if comment:
        lines += [f"# {line}" for line in comment.splitlines()]
    lines.append("poni_version: 2.1")
    if detector.pyfai_name:
        lines.append(f"Detector: {detector.pyfai_name}")
    else:
        lines.append("Detector: Detector")
        config["max_shape"] = None if detector.shape is None else list(detector.shape)
    config["orientation"] = detector.orientation
    lines.append(f"Detector_config: {json.dumps(config)}")
    if detector.pyfai_name is None and detector.name in DETECTORS:
        lines.append(f"{LAYOUT_KEY}: {detector.name}")
    lines += [f"{label}: {getattr(poni, name)!r}" for name, label in POSITION_FIELDS.items()]
    if poni.wavelength is not None:
        lines.append(f"Wavelength: {poni.wavelength!r}")
    return "\n".join(lines) + "\n"


def write_poni(poni: Poni, path: str | os.PathLike, comment: str | None = None) -> None:
    """Write ``poni`` to ``path`` as a PONI file (see :func:`poni_text`).  Callers that must not leave a
    partial file wrap this in :func:`braggsieve.io.atomic.atomic_output`."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(poni_text(poni, comment))
