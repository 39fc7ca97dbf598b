"""Detectors: the shape of the raw frames, pixel size, raw dtype and markers, gaps, and where each pixel is.

Two kinds of layout:

* **one image with gaps** (Eiger, Pilatus, assembled JUNGFRAU): the raw array is the assembled image; the
  modules sit on a regular grid and the pixels between them are stored (and masked by :meth:`Detector.gap_mask`).
  Pixel ``(i, j)`` spans ``[i, i+1) x [j, j+1)`` pixel sizes from the detector's outer corner, as in pyFAI,
  so its centre is at ``((i + 0.5) * pixel_size[0], (j + 0.5) * pixel_size[1])`` metres.  pyFAI's
  ``orientation`` (1-4, default 3) flips the axes as pyFAI does.
* **stacked panels** (AGIPD, CSPAD, raw JUNGFRAU): the raw array stacks modules as files store them; each
  :class:`~braggsieve.geometry.panels.Panel` says where its block of raw pixels sits in the detector plane.

Positions are in pyFAI's detector-plane coordinates ``(p1, p2)`` (metres, p1 along the rows, the axis of
``poni1``; p2 along the columns, the axis of ``poni2``); every flat panel lies in the plane ``p3 = 0``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from .panels import Panel, agipd1m_panels, cspad_panels, jungfrau4m_raw_panels

ORIENTATIONS = (1, 2, 3, 4)


@dataclass(frozen=True)
class Detector:
    """A detector model.

    name: registry name (``eiger4m``, ..., ``generic``).
    shape: (ny, nx) of the raw array as files store it (stacked panels for multi-panel detectors), or None
        for a generic detector whose shape is taken from the first frame (see :meth:`for_shape`).
    pixel_size: (slow, fast) in metres.
    dtype: numpy dtype name of the raw frames.
    markers: raw values the detector writes into gap or bad pixels (Eiger 0xFFFFFFFF, Pilatus -1 and -2).
    counting: True for photon-counting detectors (Eiger, Pilatus), False for integrating ones (ADU + gain).
    module_shape, module_gap: (rows, cols) of one module and of the gap between modules, in pixels, of the
        raw array (pyFAI's MODULE_SIZE/MODULE_GAP for one-image detectors; stacked modules have no gap);
        None when there is no module grid.
    panels: the flat panels of a stacked-panel detector; empty for one-image detectors.
    asic_shape: (rows, cols) of one ASIC in the raw array, if its edge pixels are to be masked.
    asic_edges: which ASIC edge pixels :meth:`gap_mask` masks: "all", or "inner" (only the edges an ASIC
        shares with a neighbour inside its module: JUNGFRAU's double-size pixels).
    orientation: pyFAI's detector orientation (3 = first pixel at index (0, 0) is the origin, no flip).
    pyfai_name: the pyFAI detector class with the same layout (written into PONI files), or None.
    """

    name: str
    shape: tuple[int, int] | None
    pixel_size: tuple[float, float]
    dtype: str = "float32"
    markers: tuple[int, ...] = ()
    counting: bool = False
    module_shape: tuple[int, int] | None = None
    module_gap: tuple[int, int] = (0, 0)
    panels: tuple[Panel, ...] = dataclasses.field(default=(), repr=False)
    asic_shape: tuple[int, int] | None = None
    asic_edges: str = "all"
    orientation: int = 3
    pyfai_name: str | None = None
    description: str = ""

    def __post_init__(self):
        if self.shape is not None and (len(self.shape) != 2 or min(self.shape) < 1):
            raise ParameterError(f"detector {self.name}: shape must be two positive integers, got {self.shape}")
        if len(self.pixel_size) != 2 or not all(np.isfinite(p) and p > 0 for p in self.pixel_size):
            raise ParameterError(f"detector {self.name}: pixel size must be two positive lengths in metres, "
                                 f"got {self.pixel_size}")
        if self.orientation not in ORIENTATIONS:
            raise ParameterError(f"detector {self.name}: orientation must be one of 1, 2, 3, 4, "
                                 f"got {self.orientation}")
        if self.asic_edges not in ("all", "inner"):
            raise ParameterError(f"detector {self.name}: asic_edges must be 'all' or 'inner', got {self.asic_edges!r}")
        if self.panels and self.orientation != 3:
            raise ParameterError(f"detector {self.name}: orientation {self.orientation} is not supported for "
                                 f"stacked-panel detectors")

    @classmethod
    def generic(cls, shape: tuple[int, int] | None, pixel_size: tuple[float, float], *, name: str = "generic",
                orientation: int = 3) -> "Detector":
        """A single flat panel of ``shape`` pixels of ``pixel_size`` (slow, fast) metres, no gaps."""
        return cls(name=name, shape=None if shape is None else (int(shape[0]), int(shape[1])),
                   pixel_size=(float(pixel_size[0]), float(pixel_size[1])), orientation=orientation,
                   description="single panel, no gaps")

    @property
    def multipanel(self) -> bool:
        """True for stacked-panel detectors whose pixel positions come from :attr:`panels`."""
        return bool(self.panels)

    @property
    def npixels(self) -> int:
        return int(np.prod(self.known_shape()))

    def known_shape(self) -> tuple[int, int]:
        """:attr:`shape`, or ParameterError when it is unknown (a generic detector from a PONI v1 file)."""
        if self.shape is None:
            raise ParameterError(f"detector {self.name}: the frame shape is unknown (use Detector.for_shape)")
        return self.shape

    def for_shape(self, shape: tuple[int, int]) -> "Detector":
        """This detector for frames of ``shape``: fills in the shape of a generic detector, and raises
        ParameterError if the frames do not have the detector's shape."""
        shape = (int(shape[0]), int(shape[1]))
        if self.shape is None:
            return dataclasses.replace(self, shape=shape)
        if shape != self.shape:
            raise ParameterError(f"frame shape {shape[0]}x{shape[1]} differs from detector {self.name}'s "
                                 f"{self.shape[0]}x{self.shape[1]}")
        return self

    def gap_mask(self) -> np.ndarray:
        """bool (ny, nx), True on pixels that carry no signal: the gaps between modules of one-image detectors,
        raw pixels outside every panel, and the edge pixels of each ASIC where :attr:`asic_shape` is set."""
        ny, nx = self.known_shape()
        mask = np.zeros((ny, nx), dtype=bool)
        if self.module_shape is not None:
            rows = np.arange(ny) % (self.module_shape[0] + self.module_gap[0]) >= self.module_shape[0]
            cols = np.arange(nx) % (self.module_shape[1] + self.module_gap[1]) >= self.module_shape[1]
            mask |= rows[:, None] | cols[None, :]
        if self.panels:
            covered = np.zeros((ny, nx), dtype=bool)
            for panel in self.panels:
                covered[panel.ss[0]:panel.ss[1], panel.fs[0]:panel.fs[1]] = True
            mask |= ~covered
        if self.asic_shape is not None:
            edges = [np.isin(np.arange(n) % a, (0, a - 1)) for n, a in zip((ny, nx), self.asic_shape)]
            if self.asic_edges == "inner":  # keep ASIC edges that are not module edges
                module = self.module_shape or (ny, nx)
                pitch = [m + g for m, g in zip(module, self.module_gap)]
                for axis, n in enumerate((ny, nx)):
                    position = np.arange(n) % pitch[axis]
                    edges[axis] &= (position != 0) & (position != module[axis] - 1)
            mask |= edges[0][:, None] | edges[1][None, :]
        return mask

    def as_panels(self) -> tuple[Panel, ...]:
        """The panels of this detector: its own for a stacked-panel detector, else one panel "p0" covering the raw
        array, with pyFAI's orientation flips (orientation 1 and 2 run the rows backwards, 1 and 4 the
        columns)."""
        if self.panels:
            return self.panels
        ny, nx = self.known_shape()
        s1, s2 = self.pixel_size
        flip_rows, flip_cols = self.orientation in (1, 2), self.orientation in (1, 4)
        corner = (ny * s1 if flip_rows else 0.0, nx * s2 if flip_cols else 0.0)
        return (Panel("p0", (0, ny), (0, nx), corner, (-s1 if flip_rows else s1, 0.0),
                      (0.0, -s2 if flip_cols else s2)),)

    def pixel_positions(self, offset: tuple[float, float] = (0.5, 0.5)) -> tuple[np.ndarray, np.ndarray]:
        """(p1, p2) float64 (ny, nx) in metres: the point ``offset`` (row, column fractions of a pixel; (0.5,
        0.5) = centre, (0, 0) = the corner nearest raw index (0, 0)) of every pixel, in the detector plane.
        Raw pixels outside every panel of a stacked-panel detector get NaN."""
        ny, nx = self.known_shape()
        p1 = np.full((ny, nx), np.nan)
        p2 = np.full((ny, nx), np.nan)
        for panel in self.as_panels():
            window = (slice(panel.ss[0], panel.ss[1]), slice(panel.fs[0], panel.fs[1]))
            p1[window], p2[window] = panel.positions(offset)
        return p1, p2

    def as_dict(self) -> dict:
        """JSON-ready summary for provenance (the panel list is summarised by its count)."""
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape),
                "pixel_size_m": list(self.pixel_size), "dtype": self.dtype, "orientation": self.orientation,
                "panels": len(self.panels)}


def _module_grid(name, pyfai_name, modules, module, gap, pixel, dtype, markers, counting, description):
    shape = (modules[0] * module[0] + (modules[0] - 1) * gap[0], modules[1] * module[1] + (modules[1] - 1) * gap[1])
    return Detector(name=name, shape=shape, pixel_size=(pixel, pixel), dtype=dtype, markers=markers,
                    counting=counting, module_shape=module, module_gap=gap, pyfai_name=pyfai_name,
                    description=description)


_EIGER = dict(module=(514, 1030), gap=(37, 10), pixel=75e-6, dtype="uint32", markers=(0xFFFFFFFF,), counting=True)
_PILATUS = dict(module=(195, 487), gap=(17, 7), pixel=172e-6, dtype="int32", markers=(-1, -2), counting=True)

DETECTORS: dict[str, Detector] = {d.name: d for d in (
    _module_grid("eiger4m", "Eiger4M", (4, 2), **_EIGER,
                 description="Dectris EIGER 4M: 4x2 modules of 514x1030, 75 um; gaps 0xFFFFFFFF"),
    _module_grid("eiger9m", "Eiger9M", (6, 3), **_EIGER,
                 description="Dectris EIGER 9M: 6x3 modules of 514x1030, 75 um; gaps 0xFFFFFFFF"),
    _module_grid("eiger16m", "Eiger16M", (8, 4), **_EIGER,
                 description="Dectris EIGER 16M: 8x4 modules of 514x1030, 75 um; gaps 0xFFFFFFFF"),
    _module_grid("pilatus1m", "Pilatus1M", (5, 2), **_PILATUS,
                 description="Dectris PILATUS 1M: 5x2 modules of 195x487, 172 um; gaps -1, bad -2"),
    _module_grid("pilatus6m", "Pilatus6M", (12, 5), **_PILATUS,
                 description="Dectris PILATUS 6M: 12x5 modules of 195x487, 172 um; gaps -1, bad -2"),
    _module_grid("jungfrau4m", "Jungfrau4M", (4, 2), module=(514, 1030), gap=(36, 8), pixel=75e-6, dtype="int32",
                 markers=(), counting=False,
                 description="PSI JUNGFRAU 4M assembled (as Jungfraujoch writes it): 4x2 modules of 512x1024 "
                             "pixels, shown as 514x1030 after splitting the double pixels at chip edges, gaps "
                             "of 36 and 8 pixels; 75 um"),
    Detector(name="jungfrau4m_raw", shape=(8 * 512, 1024), pixel_size=(75e-6, 75e-6), dtype="uint16",
             counting=False, module_shape=(512, 1024), panels=jungfrau4m_raw_panels(), asic_shape=(256, 256),
             asic_edges="inner",
             description="PSI JUNGFRAU 4M as the receiver stores it: 8 modules of 512x1024 stacked; positions "
                         "as in jungfrau4m; the double-size pixels at inner chip edges masked; raw ADU with 2 "
                         "gain bits"),
    Detector(name="agipd1m", shape=(16 * 512, 128), pixel_size=(200e-6, 200e-6), dtype="uint16",
             counting=False, module_shape=(512, 128), panels=agipd1m_panels(), asic_shape=(64, 64),
             description="EuXFEL AGIPD 1M: 16 modules of 512x128 stacked, 200 um, 64x64 ASICs with edge "
                         "pixels masked; approximate default layout (see geometry.panels)"),
    Detector(name="cspad", shape=(32 * 185, 388), pixel_size=(110e-6, 110e-6), dtype="int32",
             counting=False, module_shape=(185, 388), panels=cspad_panels("psana"), asic_shape=(185, 194),
             description="LCLS CSPAD: 32 sensors of 185x388 stacked quadrant by quadrant (as the CBF stores "
                         "them), 110 um, ASIC edge pixels masked; approximate default layout"),
    Detector(name="cspad_cheetah", shape=(8 * 185, 4 * 388), pixel_size=(110e-6, 110e-6), dtype="int32",
             counting=False, module_shape=(185, 388), panels=cspad_panels("cheetah"), asic_shape=(185, 194),
             description="LCLS CSPAD in Cheetah's/CrystFEL's raw layout (1480x1552): quadrants side by side; "
                         "same positions as cspad"),
)}


def _normalise(name: str) -> str:
    return name.lower().replace(" ", "").replace("-", "").replace("_", "")


_BY_NORMALISED = {_normalise(n): d for n, d in DETECTORS.items()}


def get_detector(name: str) -> Detector:
    """The registry detector called ``name`` (case, spaces, '-' and '_' ignored, so pyFAI's class names such
    as ``Eiger4M`` or ``Pilatus 6M`` work); ParameterError for an unknown name."""
    try:
        return _BY_NORMALISED[_normalise(name)]
    except KeyError:
        raise ParameterError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None


def match_detector(shape: tuple[int, int], pixel_size: tuple[float, float], description: str | None = None
                   ) -> Detector:
    """The registry detector with frames of ``shape`` and this (slow, fast) pixel size (1% tolerance), for
    files that state only those (NXmx, miniCBF); when several match, the one whose family ("eiger",
    "pilatus", ...) ``description`` names.  Otherwise a generic detector of that shape and pixel size."""
    shape = (int(shape[0]), int(shape[1]))
    candidates = [d for d in DETECTORS.values() if d.shape == shape
                  and np.allclose(d.pixel_size, pixel_size, rtol=0.01, atol=0)]
    described = _normalise(description or "")
    named = [d for d in candidates if re.match("[a-z]+", d.name).group() in described]  # family: "eiger"
    if len(named) == 1 or len(candidates) == 1:
        return (named or candidates)[0]
    return Detector.generic(shape, pixel_size)
