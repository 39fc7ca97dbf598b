"""Amorphous background: a smooth radial profile of expected photons per pixel, times polarisation and solid
angle.

The profile, in photons per pixel for a pixel at normal incidence and without polarisation loss, is::

    bg(q) = floor + lowq * exp(-q / lowq_width) + water * exp(-(q - water_q)^2 / (2 water_width^2))

with q in nm^-1: a flat floor (fluorescence, detector-independent scatter), small-angle scatter from air,
loop and crystal decaying from the beam, and the liquid-water ring of the solvent jacket (its maximum near
q = 18-20 nm^-1, d = 3.1-3.5 Angstrom).  The defaults reproduce the radial median of the PILATUS3 6M
thaumatin stills in ../shared/data/real (0.97 Angstrom, 351 mm): about 8 counts at q = 2-6 nm^-1, 6 at 10,
7-8 at the ring, 1.5 at 36 (see docs/simulation.md).
"""
from __future__ import annotations

import numpy as np

from .params import BackgroundParams


def radial_profile(q_nm: np.ndarray, params: BackgroundParams) -> np.ndarray:
    """bg(q) in photons per pixel (float64, shape of ``q_nm``; q in nm^-1)."""
    q = np.asarray(q_nm, dtype=np.float64)
    return (params.floor + params.lowq * np.exp(-q / params.lowq_width)
            + params.water * np.exp(-0.5 * ((q - params.water_q) / params.water_width) ** 2))


def expected_background(q_nm: np.ndarray, solid_angle: np.ndarray, polarization: np.ndarray,
                        params: BackgroundParams) -> np.ndarray:
    """Noiseless background, photons per pixel, float32 ``(ny, nx)``: bg(q) x polarisation x solid angle
    (both relative, 1 at normal incidence, as pyFAI's maps)."""
    return (radial_profile(q_nm, params) * solid_angle * polarization).astype(np.float32)
