"""Small synthetic runs shared by the pipeline tests: Poisson frames on a radial background with bright 3x3
spots planted in chosen frames (the hits), and the PONI file of a generic detector that matches them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from braggsieve.geometry import Detector, Poni, write_poni


def spotted_frames(folder: Path, *, shape: tuple[int, int], nframes: int, hits, seed: int,
                   centre: tuple[float, float], distance: float = 0.06, dtype=np.uint32, spots: int = 9,
                   spacing: int = 9, margin: int = 8, background: tuple[float, float, float] = (4.0, 40.0, 30.0),
                   shoulder: int = 200, peak: int = 800) -> np.ndarray:
    """Write ``folder/run.poni`` (100 um pixels, ``distance`` in m, beam at ``centre`` = (x_fast, y_slow)
    pixels, 1 A) and return the frames ``(nframes, *shape)`` of ``dtype``: Poisson noise on
    ``a + b exp(-r / w)`` (``background`` = (a, b, w): counts, counts, pixels; r from ``centre``), plus, in each
    frame of ``hits``, ``spots`` spots on a grid of ``spacing`` pixels starting ``margin`` from the edges:
    ``shoulder`` counts on 3x3 pixels and ``peak`` more on the centre.  The same arguments give the same
    frames."""
    rng = np.random.default_rng(seed)
    poni = Poni.from_beam_center(Detector.generic(shape, (100e-6, 100e-6)), distance, centre, 1.0e-10)
    write_poni(poni, Path(folder) / "run.poni")
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    floor, height, width = background
    level = floor + height * np.exp(-np.hypot(yy - centre[1], xx - centre[0]) / width)
    frames = rng.poisson(np.broadcast_to(level, (nframes, *shape))).astype(dtype)
    rows = np.arange(margin, shape[0] - margin, spacing)
    cols = np.arange(margin, shape[1] - margin, spacing)
    for k in hits:
        for r, c in zip(rng.permutation(rows)[:spots], rng.permutation(cols)[:spots]):
            frames[k, r - 1:r + 2, c - 1:c + 2] += dtype(shoulder)
            frames[k, r, c] += dtype(peak)
    return frames
