"""braggsieve.geometry: detector layouts, PONI geometry and per-pixel maps (the lowest layer above the base).

Conventions (docs/geometry.md): arrays are (row, col) = (slow, fast); lengths in metres unless a name says
otherwise (``r_mm``); angles in radians; masks True = bad; PONI parameters as pyFAI's.
"""
from .detectors import DETECTORS, Detector, get_detector, match_detector
from .panels import Panel
from .pixels import (RADIAL_UNITS, chi, d_spacing, lab_coordinates, polarization, q_nm, r_mm, radial_delta,
                     radial_map, solid_angle, two_theta)
from .poni import Poni, poni_text, read_poni, rotation_matrix, write_poni

__all__ = ["DETECTORS", "Detector", "Panel", "Poni", "RADIAL_UNITS", "chi", "d_spacing", "get_detector",
           "lab_coordinates", "match_detector", "polarization", "poni_text", "q_nm", "r_mm", "radial_delta",
           "radial_map", "read_poni", "rotation_matrix", "solid_angle", "two_theta", "write_poni"]
