"""CrystFEL geometry files (.geom): export of any PONI geometry, import of single-panel ones.

Coordinates.  CrystFEL places raw position (fs, ss) -- continuous, pixel ``(ss=i, fs=j)`` spanning
``[j, j+1) x [i, i+1)`` like pyFAI's detector coordinates -- at ``corner + fs * fs_vector + ss * ss_vector`` in
pixel units of ``res``, x and y in the detector plane with the beam at x = y = 0, z along the beam
(``clen + coffset`` in metres, plus the z component of the vectors in pixels).  Both laboratory frames are
right-handed with the beam along the third axis and the vertical axis up (CrystFEL's man page
crystfel_geometry(5): +z along the beam, +y to the zenith, x completes a right-handed frame; pyFAI: x1 up,
x2 horizontal, x3 along the beam, (x1, x2, x3) right-handed), so the two frames differ by a quarter turn
about the beam: x = -x2, y = x1, z = x3 (mapping x = x2, y = x1 instead would describe the mirror image of
the detector: same 2-theta everywhere, but a lattice of the wrong hand for the indexer, i.e. anomalous
differences of the wrong sign).  An untilted panel therefore has ``fs = -1x``, ``ss = +1y`` and its corner
at ``+poni2 / pixel, -poni1 / pixel`` with no half-pixel term.  Tilted geometries get fs/ss vectors with
x/y/z components and a per-panel ``coffset``.  Multi-panel detectors get one panel per
:class:`~braggsieve.geometry.panels.Panel`; one-image detectors (Eiger, Pilatus: gaps masked, not cut out)
one panel.

The header points CrystFEL at braggsieve's CXI files: ``data = /entry_1/data_1/data``, ``dim0 = %``,
``peak_list = /entry_1/result_1``, ``peak_list_type = cxi`` (use ``indexamajig --peaks=cxi``).  Every
top-level line comes before the first panel (CrystFEL applies a top-level value only to panels mentioned
after it, and rejects a file whose last lines have no effect).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from ..errors import InputError, ParameterError
from .detectors import Detector
from .pixels import rotation_matrix
from .poni import Poni

HC_EV_ANGSTROM = 12398.419843320026  # h c in eV Angstrom


def _vector(components: np.ndarray) -> str:
    """CrystFEL vector text, e.g. ``+1.000000x +0.000000y`` (z only when not zero)."""
    text = f"{components[0]:+.6f}x {components[1]:+.6f}y"
    return text + (f" {components[2]:+.6f}z" if abs(components[2]) > 1e-9 else "")


def geom_text(poni: Poni, *, adu_per_photon: float = 1.0, data: str = "/entry_1/data_1/data",
              peak_list: str = "/entry_1/result_1", mask: str | None = None) -> str:
    """The .geom file describing ``poni`` (see the module docstring); square pixels only.  ``mask``: path of a
    2-D integer mask (1 = bad) in the same file as the images, e.g. io.cxi.MASK (CrystFEL reads a mask with
    fewer dimensions than the data as one mask for every frame)."""
    detector = poni.detector
    if detector.shape is None:
        raise ParameterError("the detector shape is unknown: give frames or a detector with a shape")
    pixel = detector.pixel_size[1]
    if not math.isclose(detector.pixel_size[0], pixel, rel_tol=1e-6):
        raise ParameterError(f"CrystFEL needs square pixels, detector {detector.name} has "
                             f"{detector.pixel_size[0]} x {detector.pixel_size[1]} m")
    rot = rotation_matrix(poni.rot1, poni.rot2, poni.rot3)
    # pyFAI (x1, x2, x3) -> CrystFEL (x, y, z) = (-x2, x1, x3): a rotation, not a mirror (module docstring)
    to_crystfel = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    lab = to_crystfel @ rot

    def position(p1: float, p2: float) -> np.ndarray:  # CrystFEL (x, y, z) in metres of plane point (p1, p2)
        return lab @ np.array([p1 - poni.poni1, p2 - poni.poni2, poni.dist])

    lines = ["; CrystFEL geometry written by braggsieve from a PONI geometry",
             f"; detector {detector.name}, {detector.shape[0]} x {detector.shape[1]} pixels of {pixel * 1e6:g} um",
             "; pixel (ss, fs) spans [ss, ss+1) x [fs, fs+1): peak positions in the CXI file have pixel centres",
             "; at integer values and CrystFEL adds the half pixel itself (do not use --no-half-pixel-shift)"]
    if poni.wavelength is not None:
        lines.append(f"photon_energy = {HC_EV_ANGSTROM / (poni.wavelength * 1e10):.4f}  ; eV, "
                     f"wavelength {poni.wavelength * 1e10:.6f} A")
    else:  # CrystFEL refuses a geometry without a wavelength: say where it goes
        lines.append("; photon_energy = ?  ; eV: the PONI has no wavelength; CrystFEL needs this line")
    lines += [f"adu_per_photon = {adu_per_photon:g}", f"res = {1.0 / pixel:.6f}  ; pixels per metre",
              f"clen = {poni.dist:.9f}  ; m", f"data = {data}", "dim0 = %", "dim1 = ss", "dim2 = fs",
              f"peak_list = {peak_list}", "peak_list_type = cxi"]
    if mask is not None:  # bad where bit 0 is set, no bit required to be good
        lines += [f"mask = {mask}", "mask_good = 0", "mask_bad = 1"]
    lines.append("")
    for panel in detector.as_panels():
        corner = position(*panel.corner)
        fs = lab @ np.array([*panel.fs_vector, 0.0]) / pixel
        ss = lab @ np.array([*panel.ss_vector, 0.0]) / pixel
        name = panel.name
        lines += [f"{name}/min_fs = {panel.fs[0]}", f"{name}/max_fs = {panel.fs[1] - 1}",
                  f"{name}/min_ss = {panel.ss[0]}", f"{name}/max_ss = {panel.ss[1] - 1}",
                  f"{name}/corner_x = {corner[0] / pixel:.6f}", f"{name}/corner_y = {corner[1] / pixel:.6f}",
                  f"{name}/fs = {_vector(fs)}", f"{name}/ss = {_vector(ss)}"]
        if abs(corner[2] - poni.dist) > 1e-12:
            lines.append(f"{name}/coffset = {corner[2] - poni.dist:.9f}")
        lines.append("")
    return "\n".join(lines)


def write_geom(poni: Poni, path: str | os.PathLike, **kwargs) -> None:
    """Write :func:`geom_text` of ``poni`` to ``path`` (callers wanting atomicity pass a temporary name)."""
    with open(path, "w") as handle:
        handle.write(geom_text(poni, **kwargs))


_VECTOR = re.compile(r"^\s*([+-]?[0-9.eE+-]*)\s*([xyz])\s*$")


def _parse_vector(text: str, path) -> dict[str, float]:
    out = {"x": 0.0, "y": 0.0, "z": 0.0}
    for term in re.findall(r"[+-]?\s*[0-9.eE]*\s*[xyz]", text):
        match = _VECTOR.match(term.replace(" ", ""))
        if not match:
            raise InputError(f"cannot read vector {text!r}", path)
        number = match.group(1)
        out[match.group(2)] = float(number + "1") if number in ("", "+", "-") else float(number)
    return out


def read_geom(path: str | os.PathLike, detector: Detector | None = None) -> Poni:
    """A PONI geometry from a single-panel CrystFEL .geom with ``fs = -1x``, ``ss = +1y`` (no tilt; what
    :func:`geom_text` writes for an untilted geometry, see the module docstring for the axes).

    ``detector`` gives the registry detector (its pixel size must match ``res``); by default a generic
    detector of the panel's shape.  ``clen`` and ``coffset`` in m (``clen`` may say ``mm``), the wavelength
    from ``photon_energy`` (eV or keV) or ``wavelength`` (m or A), as CrystFEL reads them.
    """
    try:
        with open(path) as handle:
            text = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read geometry file ({exc.strerror})", path) from None
    glob: dict[str, str] = {}
    panels: dict[str, dict[str, str]] = {}
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line or "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if "/" in key:
            name, field = key.split("/", 1)
            panels.setdefault(name, {})[field] = value
        else:
            glob[key] = value
    if len(panels) != 1:
        raise InputError(f"only single-panel geometries can be imported, found {len(panels)} panels", path)
    (name, panel), = panels.items()

    def number(key: str, units: dict[str, float] | None = None) -> float:
        """The value of ``key`` times the factor of its unit suffix (one of ``units``, first one the default)."""
        value = panel.get(key, glob.get(key))
        if value is None:
            raise InputError(f"missing {key} for panel {name}", path)
        text, _, unit = value.partition(" ")
        factors = units or {"": 1.0}
        unit = unit.strip() or next(iter(factors))
        try:
            return float(text) * factors[unit]
        except (ValueError, KeyError):
            raise InputError(f"{key} = {value!r} is not a number with a unit of {sorted(factors)}", path) from None

    fs = _parse_vector(panel.get("fs", glob.get("fs", "")), path)
    ss = _parse_vector(panel.get("ss", glob.get("ss", "")), path)
    if not (math.isclose(fs["x"], -1) and abs(fs["y"]) < 1e-9 and math.isclose(ss["y"], 1) and abs(ss["x"]) < 1e-9
            and abs(fs["z"]) < 1e-9 and abs(ss["z"]) < 1e-9):
        raise InputError(f"panel {name}: only fs = -1x, ss = +1y (untilted, unrotated) panels can be imported", path)
    pixel = 1.0 / number("res")
    shape = (int(number("max_ss") - number("min_ss")) + 1, int(number("max_fs") - number("min_fs")) + 1)
    if detector is None:
        detector = Detector.generic(shape, (pixel, pixel))
    elif not math.isclose(detector.pixel_size[1], pixel, rel_tol=1e-4):
        raise InputError(f"res {1 / pixel:g} px/m does not match detector {detector.name}'s pixel size", path)
    clen = number("clen", {"m": 1.0, "mm": 1e-3}) + (number("coffset") if "coffset" in panel or "coffset" in glob
                                                      else 0.0)
    if "photon_energy" in glob:
        wavelength = HC_EV_ANGSTROM / number("photon_energy", {"eV": 1.0, "keV": 1e3}) * 1e-10
    elif "wavelength" in glob:
        wavelength = number("wavelength", {"m": 1.0, "A": 1e-10})
    else:
        wavelength = None
    return Poni(dist=clen, poni1=-number("corner_y") * pixel, poni2=number("corner_x") * pixel, rot1=0.0,
                rot2=0.0, rot3=0.0, wavelength=wavelength, detector=detector.for_shape(shape))
