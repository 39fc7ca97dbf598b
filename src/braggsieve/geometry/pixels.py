"""Per-pixel maps of a PONI geometry: 2theta, chi, q, r, solid angle, polarisation, d-spacing.

Every function takes a :class:`~braggsieve.geometry.poni.Poni` whose detector has a known shape and returns a
float64 array of that shape (ny, nx), computed with numpy from the pixel positions, in pyFAI's conventions
(the values agree with pyFAI's ``AzimuthalIntegrator`` arrays on the same PONI):

* a pixel's position ``(p1, p2)`` in the detector plane (see :mod:`~braggsieve.geometry.detectors`) is taken
  relative to the PONI and rotated into the laboratory frame ``x = R3 R2 R1 (p1 - poni1, p2 - poni2, dist)``,
  with the sample at the origin and the beam along ``x3``; ``R1``, ``R2``, ``R3`` turn about axes 1, 2, 3 by
  ``rot1``, ``rot2``, ``rot3`` (:func:`rotation_matrix`);
* ``2theta = atan2(sqrt(x1^2 + x2^2), x3)``; ``chi = atan2(x1, x2)`` in (-pi, pi], pyFAI's azimuth;
* ``r`` = ``sqrt(x1^2 + x2^2)``, the distance from the beam axis (equal to the distance from the PONI in the
  detector plane when there is no tilt);
* ``q = 4 pi sin(2theta / 2) / wavelength`` and ``d = wavelength / (2 sin(2theta / 2))`` (Bragg's law).

Pixels that belong to no panel of a stacked-panel detector get NaN.
"""
from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .poni import Poni

RADIAL_UNITS = ("q_nm^-1", "2th_deg", "r_mm")
_CORNERS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


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


def lab_coordinates(poni: Poni, offset: tuple[float, float] = (0.5, 0.5)
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x1, x2, x3) float64 (ny, nx), metres: laboratory position of the point ``offset`` of every pixel
    ((0.5, 0.5) = pixel centre), sample at the origin, x3 along the beam."""
    p1, p2 = poni.detector.pixel_positions(offset)
    d1 = p1 - poni.poni1
    d2 = p2 - poni.poni2
    rot = rotation_matrix(poni.rot1, poni.rot2, poni.rot3)
    return tuple(rot[k, 0] * d1 + rot[k, 1] * d2 + rot[k, 2] * poni.dist for k in range(3))


def _two_theta_from(x1, x2, x3) -> np.ndarray:
    return np.arctan2(np.hypot(x1, x2), x3)


def two_theta(poni: Poni) -> np.ndarray:
    """Scattering angle 2theta (rad) of each pixel centre, (ny, nx) float64."""
    return _two_theta_from(*lab_coordinates(poni))


def chi(poni: Poni) -> np.ndarray:
    """Azimuthal angle chi (rad, in (-pi, pi], pyFAI's convention) of each pixel centre, (ny, nx) float64."""
    x1, x2, _ = lab_coordinates(poni)
    return np.arctan2(x1, x2)


def r_mm(poni: Poni) -> np.ndarray:
    """Distance (mm) of each pixel centre from the beam axis, (ny, nx) float64."""
    x1, x2, _ = lab_coordinates(poni)
    return 1e3 * np.hypot(x1, x2)


def _wavelength(poni: Poni) -> float:
    if poni.wavelength is None:
        raise ParameterError("q and d-spacing need a wavelength, and the geometry has none")
    return poni.wavelength


def _q_from_two_theta(tth: np.ndarray, wavelength: float) -> np.ndarray:
    return 4e-9 * np.pi / wavelength * np.sin(0.5 * tth)


def q_nm(poni: Poni) -> np.ndarray:
    """Scattering vector modulus q = 4 pi sin(theta) / lambda in nm^-1 of each pixel centre, (ny, nx)."""
    return _q_from_two_theta(two_theta(poni), _wavelength(poni))


def d_spacing(poni: Poni) -> np.ndarray:
    """Bragg d-spacing (Angstrom) = lambda / (2 sin(theta)) of each pixel centre, (ny, nx); inf at 2theta 0."""
    with np.errstate(divide="ignore"):
        return 0.5e10 * _wavelength(poni) / np.sin(0.5 * two_theta(poni))


def _radial_at(poni: Poni, unit: str, offset: tuple[float, float]) -> np.ndarray:
    x1, x2, x3 = lab_coordinates(poni, offset)
    if unit == "r_mm":
        return 1e3 * np.hypot(x1, x2)
    tth = _two_theta_from(x1, x2, x3)
    if unit == "2th_deg":
        return np.degrees(tth)
    return _q_from_two_theta(tth, _wavelength(poni))


def _check_unit(unit: str) -> None:
    if unit not in RADIAL_UNITS:
        raise ParameterError(f"unknown radial unit {unit!r}; choose one of {', '.join(RADIAL_UNITS)}")


def radial_map(poni: Poni, unit: str) -> np.ndarray:
    """Radial position of each pixel centre in ``unit`` (q_nm^-1, 2th_deg or r_mm), (ny, nx) float64."""
    _check_unit(unit)
    return _radial_at(poni, unit, (0.5, 0.5))


def radial_delta(poni: Poni, unit: str) -> np.ndarray:
    """Half-width of each pixel in ``unit``: the largest distance, in that unit, from the pixel centre's value
    to the value at any of its four corners (pyFAI's ``delta`` arrays), (ny, nx) float64; for bounding-box
    pixel splitting, a pixel covers ``[centre - delta, centre + delta]``."""
    _check_unit(unit)
    centre = _radial_at(poni, unit, (0.5, 0.5))
    delta = np.zeros_like(centre)
    for corner in _CORNERS:
        np.maximum(delta, np.abs(_radial_at(poni, unit, corner) - centre), out=delta)
    delta[np.isnan(centre)] = np.nan
    return delta


def solid_angle(poni: Poni) -> np.ndarray:
    """Solid angle of each pixel relative to a pixel at the PONI (normal incidence, distance ``dist``):
    ``(dist / |x|)^3`` = cos^3 of the incidence angle, as pyFAI's ``solidAngleArray``, (ny, nx) float64."""
    p1, p2 = poni.detector.pixel_positions()
    distance = np.sqrt((p1 - poni.poni1) ** 2 + (p2 - poni.poni2) ** 2 + poni.dist ** 2)
    return (poni.dist / distance) ** 3


def polarization(poni: Poni, factor: float, axis_offset: float = 0.0) -> np.ndarray:
    """Polarisation factor of each pixel centre, (ny, nx) float64, as pyFAI's ``polarization``:
    ``(1 + cos^2 2theta - factor * cos(2 (chi + axis_offset)) * sin^2 2theta) / 2``.

    ``factor`` in [-1, 1]: 0 unpolarised, 1 fully polarised along axis 2 (horizontal at a synchrotron,
    typically 0.95-0.99), -1 along axis 1; ``axis_offset`` (rad) turns the polarisation plane.
    """
    if not -1.0 <= factor <= 1.0:
        raise ParameterError(f"polarisation factor must be in [-1, 1], got {factor}")
    x1, x2, x3 = lab_coordinates(poni)
    tth = _two_theta_from(x1, x2, x3)
    cos2 = np.cos(tth) ** 2
    return 0.5 * (1.0 + cos2 - factor * np.cos(2.0 * (np.arctan2(x1, x2) + axis_offset)) * (1.0 - cos2))
