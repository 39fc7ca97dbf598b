"""Gaussian spots integrated over square pixels, added to an expected-photon frame.

A spot of ``photons`` expected photons centred at fractional raw ``(row, col)`` (pixel centres at integer
indices) with Gaussian std ``(sigma_row, sigma_col)`` pixels puts into pixel ``(i, j)``::

    photons * [Phi((i + 1/2 - row) / sigma_row) - Phi((i - 1/2 - row) / sigma_row)]
            * [Phi((j + 1/2 - col) / sigma_col) - Phi((j - 1/2 - col) / sigma_col)]

(Phi: the normal cumulative distribution), the exact integral of the Gaussian over the pixel, over a patch of
+-k sigma around the centre with ``k = sqrt(2 ln(100 photons))`` (at least 2): the photons left outside the
patch, at most ``2 photons exp(-k^2 / 2)``, stay below 0.02 per spot, so that faint spots get small patches and
bright ones large.  The patch is clipped to the spot's panel; what falls outside is lost (as on a real
detector's gaps).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def _pixel_fractions(centre, sigma, first, count, out):
    scale = 1.0 / (math.sqrt(2.0) * sigma)
    for k in range(count):
        i = first + k
        out[k] = 0.5 * (math.erf((i + 0.5 - centre) * scale) - math.erf((i - 0.5 - centre) * scale))


@njit(cache=True)
def _stamp(frame, row, col, photons, sigma_row, sigma_col, bounds):
    for s in range(row.size):
        k = math.sqrt(2.0 * math.log(max(100.0 * photons[s], math.e ** 2)))
        half_rows = int(math.ceil(k * sigma_row[s]))
        half_cols = int(math.ceil(k * sigma_col[s]))
        r0 = max(int(math.floor(row[s] + 0.5)) - half_rows, bounds[s, 0])
        r1 = min(int(math.floor(row[s] + 0.5)) + half_rows + 1, bounds[s, 1])
        c0 = max(int(math.floor(col[s] + 0.5)) - half_cols, bounds[s, 2])
        c1 = min(int(math.floor(col[s] + 0.5)) + half_cols + 1, bounds[s, 3])
        if r1 <= r0 or c1 <= c0:
            continue
        wr = np.empty(r1 - r0)
        wc = np.empty(c1 - c0)
        _pixel_fractions(row[s], sigma_row[s], r0, r1 - r0, wr)
        _pixel_fractions(col[s], sigma_col[s], c0, c1 - c0, wc)
        for a in range(r1 - r0):
            for b in range(c1 - c0):
                frame[r0 + a, c0 + b] += photons[s] * wr[a] * wc[b]


def add_spots(frame: np.ndarray, row: np.ndarray, col: np.ndarray, photons: np.ndarray, sigma_row: np.ndarray,
              sigma_col: np.ndarray, bounds: np.ndarray) -> None:
    """Add spots to ``frame`` (float32 (ny, nx), expected photons) in place.

    Args:
        row, col, photons, sigma_row, sigma_col: float64 (k,) per spot (pixels, photons, pixels).
        bounds: int64 (k, 4) raw rows [start, stop) and columns [start, stop) of each spot's panel.
    """
    _stamp(frame, np.ascontiguousarray(row, np.float64), np.ascontiguousarray(col, np.float64),
           np.ascontiguousarray(photons, np.float64), np.ascontiguousarray(sigma_row, np.float64),
           np.ascontiguousarray(sigma_col, np.float64), np.ascontiguousarray(bounds, np.int64))
