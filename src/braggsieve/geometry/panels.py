"""Flat panels of a multi-panel detector: where each block of the raw (stacked) array sits in space.

A :class:`Panel` maps a rectangle of the raw array (rows ``ss``, columns ``fs``, as files store them) onto the
detector plane, in the same plane coordinates as pyFAI: ``p1`` (metres, along the assembled image's rows,
i.e. pyFAI's dimension 1, the one ``poni1`` is measured along) and ``p2`` (metres, along its columns, the one
``poni2`` is measured along).  The point at fractional position ``(u, v)`` of the panel (``u`` rows, ``v``
columns from the outer corner of its first pixel; pixel ``(i, j)`` of the panel spans ``[i, i+1) x [j, j+1)``)
sits at ``corner + u * ss_vector + v * fs_vector``.

The default layouts built here (AGIPD 1M, CSPAD, JUNGFRAU 4M raw) are documented approximations of the real
instruments, good for simulation and for tests; they are not calibrated metrologies.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Panel:
    """One flat rectangle of pixels.

    ss, fs: (start, stop) rows and columns of the raw array that hold this panel's pixels.
    corner: (p1, p2) in metres of the outer corner of the panel's first pixel (raw ``(ss[0], fs[0])``).
    ss_vector, fs_vector: (p1, p2) displacement in metres of one step along the raw rows (ss) and columns (fs).
    """

    name: str
    ss: tuple[int, int]
    fs: tuple[int, int]
    corner: tuple[float, float]
    ss_vector: tuple[float, float]
    fs_vector: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int]:
        return self.ss[1] - self.ss[0], self.fs[1] - self.fs[0]

    def positions(self, offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """(p1, p2) float64 arrays of this panel's shape, metres, of the point ``offset`` (rows, cols; 0.5, 0.5
        = centre, 0 or 1 = edges) inside each pixel."""
        u = np.arange(self.shape[0], dtype=np.float64)[:, None] + offset[0]
        v = np.arange(self.shape[1], dtype=np.float64)[None, :] + offset[1]
        p1 = self.corner[0] + u * self.ss_vector[0] + v * self.fs_vector[0]
        p2 = self.corner[1] + u * self.ss_vector[1] + v * self.fs_vector[1]
        return p1, p2


def _rect(name: str, ss0: int, fs0: int, shape: tuple[int, int], top_left: tuple[float, float]) -> Panel:
    """An unturned panel (rows down +p1, columns along +p2) in pixel units."""
    return Panel(name, (ss0, ss0 + shape[0]), (fs0, fs0 + shape[1]), top_left, (1.0, 0.0), (0.0, 1.0))


def _turn(panel: Panel, turns: int, centre: tuple[float, float]) -> Panel:
    """``panel`` turned by ``turns`` quarter turns about ``centre``; one turn maps direction (a, b) to (b, -a)."""
    def rot(a, b):
        for _ in range(turns % 4):
            a, b = b, -a
        return a, b
    d = rot(panel.corner[0] - centre[0], panel.corner[1] - centre[1])
    return Panel(panel.name, panel.ss, panel.fs, (centre[0] + d[0], centre[1] + d[1]),
                 rot(*panel.ss_vector), rot(*panel.fs_vector))


def _bbox(panels) -> tuple[float, float, float, float]:
    """(min p1, min p2, max p1, max p2) over the outer corners of ``panels``."""
    points = [(p.corner[0] + u * p.ss_vector[0] + v * p.fs_vector[0],
               p.corner[1] + u * p.ss_vector[1] + v * p.fs_vector[1])
              for p in panels for u in (0, p.shape[0]) for v in (0, p.shape[1])]
    return (min(q[0] for q in points), min(q[1] for q in points),
            max(q[0] for q in points), max(q[1] for q in points))


def _move(panels, top_left: tuple[float, float], raw_offset: tuple[int, int] = (0, 0), prefix: str = ""):
    """``panels`` translated so that their bounding box starts at ``top_left``, raw rows/columns shifted by
    ``raw_offset`` and names prefixed by ``prefix``."""
    low1, low2, _, _ = _bbox(panels)
    return [Panel(prefix + p.name, (p.ss[0] + raw_offset[0], p.ss[1] + raw_offset[0]),
                  (p.fs[0] + raw_offset[1], p.fs[1] + raw_offset[1]),
                  (p.corner[0] - low1 + top_left[0], p.corner[1] - low2 + top_left[1]), p.ss_vector, p.fs_vector)
            for p in panels]


def _scaled(panels, pixel: float) -> tuple[Panel, ...]:
    """Pixel units to metres."""
    return tuple(Panel(p.name, p.ss, p.fs, (p.corner[0] * pixel, p.corner[1] * pixel),
                       (p.ss_vector[0] * pixel, p.ss_vector[1] * pixel),
                       (p.fs_vector[0] * pixel, p.fs_vector[1] * pixel)) for p in panels)


AGIPD_PIXEL = 200e-6
AGIPD_ASIC = (64, 128)       # raw rows x columns of one panel: two 64x64 ASICs side by side along fs
AGIPD_ASIC_GAP = 2           # pixels between the 8 panels of a module, along the module
AGIPD_MODULE_GAP = 30        # pixels between neighbouring modules of a quadrant
AGIPD_QUADRANT_GAP = 20      # extra pixels between the upper and lower quadrants of a half
AGIPD_HOLE = 40              # pixels between the left and right halves (beam hole)


def agipd1m_panels() -> tuple[Panel, ...]:
    """AGIPD 1M, 16 modules of 512x128 stacked in the raw array as ``(16 * 512, 128)``.

    Each module (raw rows ``512 m .. 512 m + 511``) is 8 panels of 64 raw rows x 128 columns laid end to end
    along the module with 2-pixel gaps (526 pixels long, 128 high); the module's raw rows run horizontally
    (+p2) and its columns upwards (-p1).  Modules 0-7 form the left half, stacked top to bottom with 30-pixel
    gaps (plus 20 pixels between quadrants 0-3 and 4-7); modules 8-15 are modules 0-7 turned by 180 degrees
    about the detector centre (quadrant 8-11 bottom right, 12-15 top right), leaving a 40-pixel beam hole.
    """
    nss, nfs = AGIPD_ASIC

    def module(m: int) -> list[Panel]:
        k = m % 8
        top = k * (nfs + AGIPD_MODULE_GAP) + (AGIPD_QUADRANT_GAP if k >= 4 else 0)
        asics = [_turn(_rect(f"m{m}a{a}", m * 512 + a * nss, 0, AGIPD_ASIC, (a * (nss + AGIPD_ASIC_GAP), 0)),
                       3, (0.0, 0.0)) for a in range(8)]
        return _move(asics, (top, 0))

    left = [p for m in range(8) for p in module(m)]
    _, _, height, half_width = _bbox(left)
    centre = (height / 2, half_width + AGIPD_HOLE / 2)
    right = [_turn(p, 2, centre) for m in range(8, 16) for p in module(m)]
    return _scaled(left + right, AGIPD_PIXEL)


CSPAD_PIXEL = 110e-6
CSPAD_SENSOR = (185, 388)    # one "2x1" sensor: two 185x194 ASICs
CSPAD_ASIC_GAP = 3           # pixels between the two ASICs of a 2x1 (their central pixels are 2.5x wide)
CSPAD_PAIR_GAP = 2           # pixels between the two sensors of a pair
CSPAD_CELL = 400             # pixels: a quadrant is 2x2 cells, each holding one pair of sensors
CSPAD_HOLE = 20              # pixels between quadrants


def cspad_panels(raw_layout: str = "psana") -> tuple[Panel, ...]:
    """CSPAD, 4 quadrants x 8 sensors ("2x1") of 185x388 pixels, each sensor two 185x194 ASIC panels.

    ``raw_layout`` "psana": sensors stacked as ``(32 * 185, 388)`` in quadrant-major order (the order of the
    real CBF's four (8, 185, 388) arrays); "cheetah": ``(8 * 185, 4 * 388)``, quadrant q in columns
    ``388 q ..``, sensor s in rows ``185 s ..`` (Cheetah's and CrystFEL's CSPAD layout).
    Positions: in quadrant 0 (top left) the sensor pairs (0,1), (2,3), (4,5), (6,7) fill 2x2 cells of 400 px
    (row-major), pairs 0 and 3 lying (columns along +p2), pairs 1 and 2 standing (columns along +p1); the two
    ASICs of a sensor are 3 px apart, the two sensors of a pair 2 px; quadrant q is quadrant 0 turned by q
    quarter turns about the detector centre, with 20 px between quadrants.
    """
    if raw_layout not in ("psana", "cheetah"):
        raise ValueError(f"unknown CSPAD raw layout {raw_layout!r}")
    nss, nfs = CSPAD_SENSOR
    asic = (nss, nfs // 2)
    sensor = [_rect(f"a{half}", 0, half * asic[1], asic, (0, half * (asic[1] + CSPAD_ASIC_GAP)))
              for half in range(2)]
    quadrant0 = []
    for s in range(8):
        pair, second = divmod(s, 2)
        lying = pair in (0, 3)
        cell = ((pair // 2) * CSPAD_CELL, (pair % 2) * CSPAD_CELL)
        turned = sensor if lying else [_turn(p, 1, (0.0, 0.0)) for p in sensor]
        offset = second * (nss + CSPAD_PAIR_GAP)
        top_left = (cell[0] + offset, cell[1]) if lying else (cell[0], cell[1] + offset)
        quadrant0.append((s, _move(turned, top_left)))
    size = 4 * CSPAD_CELL + CSPAD_HOLE
    panels = []
    for q in range(4):
        for s, sensor_panels in quadrant0:
            raw = ((q * 8 + s) * nss, 0) if raw_layout == "psana" else (s * nss, q * nfs)
            moved = _move(sensor_panels, _bbox(sensor_panels)[:2], raw, f"q{q}s{s}")
            panels += [_turn(p, q, (size / 2, size / 2)) for p in moved]
    return _scaled(panels, CSPAD_PIXEL)


JUNGFRAU_PIXEL = 75e-6
JUNGFRAU_MODULE = (512, 1024)
JUNGFRAU_CHIP = 256
JUNGFRAU_ASSEMBLED_MODULE = (514, 1030)   # after splitting the double-size pixels at chip boundaries
JUNGFRAU_4M_GAP = (36, 8)


def jungfrau4m_raw_panels() -> tuple[Panel, ...]:
    """JUNGFRAU 4M as the receiver stores it: 8 modules of 512x1024 stacked as ``(8 * 512, 1024)``.

    Module m sits in row ``m // 2`` and column ``m % 2`` of the assembled 2164x2068 image (the ``jungfrau4m``
    layout: modules of 514x1030 with 36- and 8-pixel gaps); each 256x256 chip is a panel, shifted by 2 pixels
    per chip boundary, so that pixel positions agree with the assembled layout (the double-size pixels at chip
    edges get the position of their outer half; they are masked by the detector's ASIC-edge mask).
    """
    pitch = (JUNGFRAU_ASSEMBLED_MODULE[0] + JUNGFRAU_4M_GAP[0], JUNGFRAU_ASSEMBLED_MODULE[1] + JUNGFRAU_4M_GAP[1])
    panels = []
    for module in range(8):
        row, col = divmod(module, 2)
        for chip_row in range(2):
            for chip_col in range(4):
                top_left = (row * pitch[0] + chip_row * (JUNGFRAU_CHIP + 2),
                            col * pitch[1] + chip_col * (JUNGFRAU_CHIP + 2))
                panels.append(_rect(f"m{module}c{4 * chip_row + chip_col}",
                                    module * JUNGFRAU_MODULE[0] + chip_row * JUNGFRAU_CHIP,
                                    chip_col * JUNGFRAU_CHIP, (JUNGFRAU_CHIP, JUNGFRAU_CHIP), top_left))
    return _scaled(panels, JUNGFRAU_PIXEL)
