"""Per-pixel maps of a PONI geometry: 2theta, chi, q, r, solid angle, polarisation, d-spacing.

Every function takes a :class:`~braggsieve.geometry.poni.Poni` whose detector has a known shape and returns a
float64 array of that shape (ny, nx), computed in float64 from the pixel positions, in pyFAI's conventions
(the values agree with pyFAI's ``AzimuthalIntegrator`` arrays on the same PONI):

* a pixel's position ``(p1, p2)`` in the detector plane (see :mod:`~braggsieve.geometry.detectors`) is taken
  relative to the PONI and rotated into the laboratory frame ``x = R3 R2 R1 (p1 - poni1, p2 - poni2, dist)``,
  with the sample at the origin and the beam along ``x3``; ``R1``, ``R2``, ``R3`` turn about axes 1, 2, 3 by
  ``rot1``, ``rot2``, ``rot3`` (:func:`rotation_matrix`);
* ``2theta = atan2(sqrt(x1^2 + x2^2), x3)``; ``chi = atan2(x1, x2)`` in (-pi, pi], pyFAI's azimuth;
* ``r`` = ``sqrt(x1^2 + x2^2)``, the distance from the beam axis (equal to the distance from the PONI in the
  detector plane when there is no tilt);
* ``q = 4 pi sin(2theta / 2) / wavelength`` and ``d = wavelength / (2 sin(2theta / 2))`` (Bragg's law).

Pixels that belong to no panel of a stacked-panel detector get NaN.  The maps are computed panel by panel in
a numba-parallel kernel that derives each pixel's position on the fly, so memory is the output array alone.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..errors import ParameterError
from .poni import Poni, rotation_matrix

RADIAL_UNITS = ("q_nm^-1", "2th_deg", "r_mm")


# Quantities computed by the kernel, from the laboratory position x of a point and two parameters (a, b).
_TWO_THETA, _CHI, _RADIUS, _Q, _SOLID_ANGLE, _POLARIZATION, _D_SPACING = range(7)


@njit(cache=True, inline="always")
def _quantity(kind, x1, x2, x3, a, b):
    rho = math.sqrt(x1 * x1 + x2 * x2)
    if kind == _TWO_THETA:  # a: scale (1 for rad, 180/pi for degrees)
        return a * math.atan2(rho, x3)
    if kind == _CHI:
        return math.atan2(x1, x2)
    if kind == _RADIUS:  # a: scale (1e3 for mm)
        return a * rho
    if kind == _Q:  # a: 4 pi / wavelength in nm^-1 per unit sin(theta)
        return a * math.sin(0.5 * math.atan2(rho, x3))
    if kind == _SOLID_ANGLE:  # a: dist
        ratio = a / math.sqrt(rho * rho + x3 * x3)
        return ratio * ratio * ratio
    if kind == _POLARIZATION:  # a: factor, b: axis offset (rad)
        cos_tth = math.cos(math.atan2(rho, x3))
        cos2 = cos_tth * cos_tth
        return 0.5 * (1.0 + cos2 - a * math.cos(2.0 * (math.atan2(x1, x2) + b)) * (1.0 - cos2))
    # _D_SPACING, a: wavelength / 2 in Angstrom
    sin_theta = math.sin(0.5 * math.atan2(rho, x3))
    return a / sin_theta if sin_theta > 0.0 else math.inf


@njit(cache=True, parallel=True)
def _panel_kernel(out, corner, ss_vec, fs_vec, rot, shift, kind, a, b, delta):
    """Fill ``out`` (one panel's window of the map, (rows, cols) of the panel) with the quantity at each pixel
    centre, or, with ``delta``, the largest |corner value - centre value| over the 4 corners.
    ``shift`` = (-poni1, -poni2, dist): plane point (p1, p2) -> (p1 - poni1, p2 - poni2, dist)."""
    nss, nfs = out.shape
    for i in prange(nss):
        for j in range(nfs):
            best = 0.0
            centre = 0.0
            for k in range(5):  # k = 0: centre; 1..4: corners
                if k == 0:
                    u, v = i + 0.5, j + 0.5
                else:
                    u, v = i + (k - 1) // 2, j + (k - 1) % 2
                d1 = corner[0] + u * ss_vec[0] + v * fs_vec[0] + shift[0]
                d2 = corner[1] + u * ss_vec[1] + v * fs_vec[1] + shift[1]
                x1 = rot[0, 0] * d1 + rot[0, 1] * d2 + rot[0, 2] * shift[2]
                x2 = rot[1, 0] * d1 + rot[1, 1] * d2 + rot[1, 2] * shift[2]
                x3 = rot[2, 0] * d1 + rot[2, 1] * d2 + rot[2, 2] * shift[2]
                value = _quantity(kind, x1, x2, x3, a, b)
                if k == 0:
                    centre = value
                    if not delta:
                        break
                else:
                    best = max(best, abs(value - centre))
            out[i, j] = best if delta else centre


def _map(poni: Poni, kind: int, a: float = 0.0, b: float = 0.0, delta: bool = False) -> np.ndarray:
    """(ny, nx) float64 map of ``kind`` over every panel of the detector; NaN outside the panels."""
    detector = poni.detector
    out = np.full(detector.known_shape(), np.nan)
    rot = rotation_matrix(poni.rot1, poni.rot2, poni.rot3)
    shift = np.array([-poni.poni1, -poni.poni2, poni.dist])
    for panel in detector.as_panels():
        window = out[panel.ss[0]:panel.ss[1], panel.fs[0]:panel.fs[1]]
        _panel_kernel(window, np.array(panel.corner), np.array(panel.ss_vector),
                      np.array(panel.fs_vector), rot, shift, kind, float(a), float(b), delta)
    return out


def lab_coordinates(poni: Poni, offset: tuple[float, float] = (0.5, 0.5)
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x1, x2, x3) float64 (ny, nx), metres: laboratory position of the point ``offset`` of every pixel
    ((0.5, 0.5) = pixel centre), sample at the origin, x3 along the beam."""
    p1, p2 = poni.detector.pixel_positions(offset)
    d1 = p1 - poni.poni1
    d2 = p2 - poni.poni2
    rot = rotation_matrix(poni.rot1, poni.rot2, poni.rot3)
    return tuple(rot[k, 0] * d1 + rot[k, 1] * d2 + rot[k, 2] * poni.dist for k in range(3))


def two_theta(poni: Poni) -> np.ndarray:
    """Scattering angle 2theta (rad) of each pixel centre, (ny, nx) float64."""
    return _map(poni, _TWO_THETA, 1.0)


def chi(poni: Poni) -> np.ndarray:
    """Azimuthal angle chi (rad, in (-pi, pi], pyFAI's convention) of each pixel centre, (ny, nx) float64."""
    return _map(poni, _CHI)


def r_mm(poni: Poni) -> np.ndarray:
    """Distance (mm) of each pixel centre from the beam axis, (ny, nx) float64."""
    return _map(poni, _RADIUS, 1e3)


def _wavelength(poni: Poni) -> float:
    if poni.wavelength is None:
        raise ParameterError("q and d-spacing need a wavelength, and the geometry has none")
    return poni.wavelength


def q_nm(poni: Poni) -> np.ndarray:
    """Scattering vector modulus q = 4 pi sin(theta) / lambda in nm^-1 of each pixel centre, (ny, nx)."""
    return _map(poni, _Q, 4e-9 * np.pi / _wavelength(poni))


def d_spacing(poni: Poni) -> np.ndarray:
    """Bragg d-spacing (Angstrom) = lambda / (2 sin(theta)) of each pixel centre, (ny, nx); inf at 2theta 0."""
    return _map(poni, _D_SPACING, 0.5e10 * _wavelength(poni))


def _radial_kind(poni: Poni, unit: str) -> tuple[int, float]:
    """(kernel quantity, its scale parameter) for a radial unit."""
    if unit == "q_nm^-1":
        return _Q, 4e-9 * np.pi / _wavelength(poni)
    if unit == "2th_deg":
        return _TWO_THETA, 180.0 / np.pi
    if unit == "r_mm":
        return _RADIUS, 1e3
    raise ParameterError(f"unknown radial unit {unit!r}; choose one of {', '.join(RADIAL_UNITS)}")


def radial_map(poni: Poni, unit: str) -> np.ndarray:
    """Radial position of each pixel centre in ``unit`` (q_nm^-1, 2th_deg or r_mm), (ny, nx) float64."""
    return _map(poni, *_radial_kind(poni, unit))


def radial_delta(poni: Poni, unit: str) -> np.ndarray:
    """Half-width of each pixel in ``unit``: the largest distance, in that unit, from the pixel centre's value
    to the value at any of its four corners (pyFAI's ``delta`` arrays), (ny, nx) float64; for bounding-box
    pixel splitting, a pixel covers ``[centre - delta, centre + delta]``."""
    return _map(poni, *_radial_kind(poni, unit), delta=True)


def solid_angle(poni: Poni) -> np.ndarray:
    """Solid angle of each pixel relative to a pixel at the PONI (normal incidence, distance ``dist``):
    ``(dist / |x|)^3`` = cos^3 of the incidence angle, as pyFAI's ``solidAngleArray``, (ny, nx) float64."""
    return _map(poni, _SOLID_ANGLE, poni.dist)


def polarization(poni: Poni, factor: float, axis_offset: float = 0.0) -> np.ndarray:
    """Polarisation factor of each pixel centre, (ny, nx) float64, as pyFAI's ``polarization``:
    ``(1 + cos^2 2theta - factor * cos(2 (chi + axis_offset)) * sin^2 2theta) / 2``.

    ``factor`` in [-1, 1]: 0 unpolarised, 1 fully polarised along axis 2 (horizontal at a synchrotron,
    typically 0.95-0.99), -1 along axis 1; ``axis_offset`` (rad) turns the polarisation plane.
    """
    if not -1.0 <= factor <= 1.0:
        raise ParameterError(f"polarisation factor must be in [-1, 1], got {factor}")
    return _map(poni, _POLARIZATION, factor, axis_offset)
