"""From a diffracted beam's direction to the raw pixel it hits: the inverse of braggsieve.geometry's maps.

geometry places the point ``(p1, p2)`` of the detector plane at ``x = R (p1 - poni1, p2 - poni2, dist)`` in the
laboratory (:func:`braggsieve.geometry.pixels.lab_coordinates`).  A ray from the sample along ``k`` therefore
meets the plane where ``R^T k`` is proportional to ``(p1 - poni1, p2 - poni2, dist)``; the panel holding that
point (a single panel spanning the raw array for one-image detectors) gives fractional raw coordinates, with
pixel centres at integer indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.pixels import rotation_matrix
from ..geometry.poni import Poni


@dataclass(frozen=True)
class Projection:
    """Direction -> raw pixel mapping of one geometry (built by :meth:`from_poni`).

    rotation: detector -> lab rotation (3, 3); dist, poni1, poni2: metres.
    corner: (npanels, 2) outer corner of each panel's first pixel in the plane (metres).
    to_panel: (npanels, 2, 2) inverse of the matrix whose columns are the panel's ss and fs step vectors.
    bounds: (npanels, 4) int64 raw rows [start, stop) and columns [start, stop) of each panel.
    steps: (npanels, 2, 2) plane displacement (p1, p2) in metres of one raw row step and one raw column step.
    """

    rotation: np.ndarray
    dist: float
    poni1: float
    poni2: float
    corner: np.ndarray
    to_panel: np.ndarray
    bounds: np.ndarray
    steps: np.ndarray

    @classmethod
    def from_poni(cls, poni: Poni) -> "Projection":
        panels = poni.detector.as_panels()
        steps = np.array([[p.ss_vector, p.fs_vector] for p in panels], dtype=np.float64)  # (P, 2 steps, 2 coords)
        return cls(rotation=rotation_matrix(poni.rot1, poni.rot2, poni.rot3), dist=poni.dist, poni1=poni.poni1,
                   poni2=poni.poni2, corner=np.array([p.corner for p in panels], dtype=np.float64),
                   to_panel=np.linalg.inv(np.transpose(steps, (0, 2, 1))),
                   bounds=np.array([(*p.ss, *p.fs) for p in panels], dtype=np.int64),
                   steps=steps)

    def plane_position(self, direction: np.ndarray) -> np.ndarray:
        """(k, 2) plane coordinates (p1, p2) in metres where rays along ``direction`` (k, 3) meet the detector
        plane; NaN for rays that point away from it."""
        w = np.asarray(direction, dtype=np.float64) @ self.rotation  # = (R^T k) for each row
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(w[:, 2] > 0, self.dist / w[:, 2], np.nan)
        return np.stack([self.poni1 + t * w[:, 0], self.poni2 + t * w[:, 1]], axis=1)

    def raw_position(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fractional raw (row, col) float64 (k,) hit by rays along ``direction`` (k, 3), pixel centres at
        integer indices, and the panel index (int64, -1 and NaN positions where no panel is hit)."""
        plane = self.plane_position(direction)
        local = np.einsum("pij,kpj->kpi", self.to_panel, plane[:, None, :] - self.corner[None])  # (k, P, 2)
        size = (self.bounds[:, [1, 3]] - self.bounds[:, [0, 2]]).astype(np.float64)
        inside = np.all((local >= 0) & (local < size[None]), axis=2)  # NaN compares False
        hit = inside.any(axis=1)
        panel = np.where(hit, np.argmax(inside, axis=1), -1)
        chosen = local[np.arange(len(panel)), np.maximum(panel, 0)]
        row = np.where(hit, self.bounds[np.maximum(panel, 0), 0] + chosen[:, 0] - 0.5, np.nan)
        col = np.where(hit, self.bounds[np.maximum(panel, 0), 2] + chosen[:, 1] - 0.5, np.nan)
        return row, col, panel

    def raw_sigma(self, sigma_plane: tuple[float, float]) -> np.ndarray:
        """(npanels, 2) std in raw rows and raw columns of a Gaussian of std ``sigma_plane`` (metres, along p1
        and p2) on each panel: the std along each raw axis' direction, divided by the pixel step."""
        length = np.linalg.norm(self.steps, axis=2)                      # (P, 2)
        unit = self.steps / length[..., None]                           # (P, 2 axes, 2 coords)
        variance = (unit ** 2 * np.square(sigma_plane)[None, None, :]).sum(axis=2)
        return np.sqrt(variance) / length
