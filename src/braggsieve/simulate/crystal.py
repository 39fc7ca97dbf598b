"""Crystal lattice, random orientations and Bragg reflections on the Ewald sphere (still exposures).

Lab frame: braggsieve.geometry's (x1, x2, x3), sample at the origin, beam along x3, so ``k_in = (0, 0,
1/lambda)``.  Reciprocal-space vectors are in 1/Angstrom without the 2 pi factor (|g| = 1/d).

A reflection ``g = U B h`` of a still crystal is excited when ``k_in + g`` lies near the Ewald sphere of radius
``1/lambda``.  Its excitation error ``e = |k_in + g| - 1/lambda`` is spread by the mosaic spread ``eta`` (an
angular spread of the lattice, width ``|g| eta``) and by the beam's relative bandwidth ``dl`` (the sphere's
radius spread, width ``lambda |g|^2 dl / 2``); the recorded fraction (partiality) is
``exp(-e^2 / (2 s^2))`` with ``s^2`` the sum of the squared widths.  Intensities follow Wilson's statistics:
``|F|^2`` is exponentially distributed (acentric reflections, fixed per hkl for the whole run) with mean
falling as ``exp(-B / (2 d^2))``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..errors import ParameterError

MAX_SEARCH = 5e7  # Miller-index box size above which reflections_within refuses (memory: 12 bytes each)


def reciprocal_basis(cell: tuple[float, float, float, float, float, float]) -> np.ndarray:
    """B matrix (3, 3), 1/Angstrom: columns are a*, b*, c* of ``cell`` = (a, b, c in Angstrom, alpha, beta,
    gamma in degrees) in the standard orthogonal setting (a along x, b in the xy plane)."""
    a, b, c = cell[:3]
    alpha, beta, gamma = np.radians(cell[3:])
    ca, cb, cg, sg = np.cos(alpha), np.cos(beta), np.cos(gamma), np.sin(gamma)
    volume_factor = np.sqrt(1 - ca ** 2 - cb ** 2 - cg ** 2 + 2 * ca * cb * cg)
    direct = np.array([[a, b * cg, c * cb],
                       [0.0, b * sg, c * (ca - cb * cg) / sg],
                       [0.0, 0.0, c * volume_factor / sg]])  # columns: a, b, c
    return np.linalg.inv(direct).T


def reflections_within(basis: np.ndarray, d_min: float) -> np.ndarray:
    """All Miller indices ``(m, 3)`` int32 with ``d >= d_min`` (Angstrom), without 000 (no symmetry: P1)."""
    g_max = 1.0 / d_min
    direct = np.linalg.inv(basis).T  # columns: direct axes; |h| <= g_max * |a| bounds the search box
    limits = np.ceil(g_max * np.linalg.norm(direct, axis=0)).astype(int)
    if np.prod(2 * limits + 1, dtype=np.float64) > MAX_SEARCH:
        raise ParameterError(f"{np.prod(2 * limits + 1, dtype=np.float64):.3g} Miller indices to search for "
                             f"d >= {d_min:.3g} A with this cell: give a larger --d-min")
    ranges = [np.arange(-n, n + 1, dtype=np.int32) for n in limits]
    hkl = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    inverse_d = np.linalg.norm(hkl @ basis.T, axis=1)
    keep = (inverse_d <= g_max) & (inverse_d > 0)
    return hkl[keep]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix (3, 3) uniformly distributed over SO(3) (from a random unit quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@njit(cache=True, parallel=True)
def _excitation(hkl, matrix, k, mosaicity2, bandwidth_term, min_log_partiality, log_partiality):
    """log(partiality) of every reflection, -inf where it is below the cut (parallel over reflections)."""
    for i in prange(hkl.shape[0]):
        h, kk, l = float(hkl[i, 0]), float(hkl[i, 1]), float(hkl[i, 2])
        g0 = matrix[0, 0] * h + matrix[0, 1] * kk + matrix[0, 2] * l
        g1 = matrix[1, 0] * h + matrix[1, 1] * kk + matrix[1, 2] * l
        g2 = matrix[2, 0] * h + matrix[2, 1] * kk + matrix[2, 2] * l
        gg = g0 * g0 + g1 * g1 + g2 * g2
        excitation = math.sqrt(g0 * g0 + g1 * g1 + (g2 + k) * (g2 + k)) - k
        width2 = gg * mosaicity2 + (bandwidth_term * gg) ** 2 + 1e-300
        value = -0.5 * excitation * excitation / width2
        log_partiality[i] = value if value >= min_log_partiality else -np.inf


def excited_reflections(hkl: np.ndarray, basis: np.ndarray, rotation: np.ndarray, wavelength_a: float,
                        mosaicity_rad: float, bandwidth: float, min_partiality: float = 1e-3):
    """Reflections of a still crystal near the Ewald sphere.

    Args:
        hkl: Miller indices ``(m, 3)`` int32.
        basis: B matrix (1/Angstrom); ``rotation``: U, the crystal's orientation in the lab frame.
        wavelength_a: wavelength in Angstrom; mosaicity_rad: mosaic spread (std, radians); bandwidth: relative
            wavelength spread (std, dimensionless).
        min_partiality: reflections recorded at a smaller fraction are dropped.

    Returns:
        index ``(k,)`` into ``hkl`` of the excited reflections, their partiality ``(k,)`` and the unit
        direction ``(k, 3)`` of the diffracted beam in the lab frame.
    """
    k = 1.0 / wavelength_a
    matrix = np.ascontiguousarray(rotation @ basis)
    log_partiality = np.empty(len(hkl))
    _excitation(np.ascontiguousarray(hkl), matrix, k, mosaicity_rad ** 2, 0.5 * wavelength_a * bandwidth,
                math.log(min_partiality), log_partiality)
    index = np.flatnonzero(np.isfinite(log_partiality))
    k_out = hkl[index] @ matrix.T
    k_out[:, 2] += k
    direction = k_out / np.linalg.norm(k_out, axis=1)[:, None]
    return index, np.exp(log_partiality[index]), direction


def wilson_intensities(hkl: np.ndarray, basis: np.ndarray, b_factor: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Relative intensities ``|F|^2`` (float64, mean ``exp(-B/(2 d^2))``, exponentially distributed) and
    resolutions ``d`` (Angstrom) of ``hkl``."""
    d = 1.0 / np.linalg.norm(hkl @ basis.T, axis=1)
    return rng.exponential(1.0, len(hkl)) * np.exp(-b_factor / (2.0 * d ** 2)), d
