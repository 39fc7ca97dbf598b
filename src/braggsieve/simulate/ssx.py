"""Serial-crystallography still frames with ground truth.

A run of ``frames`` stills on one detector geometry.  Each frame is, in expected photons per pixel::

    background (radial profile x polarisation x solid angle, frame-to-frame jitter)
    + Bragg spots (hits only: a crystal in a random orientation, Ewald-sphere partiality, Wilson intensities,
      Gaussian spots integrated over the pixels)
    + zingers (isolated single bright pixels, e.g. cosmic rays)

recorded by the detector model of :mod:`braggsieve.simulate.response` (Poisson counting, or gain + pedestal +
read noise) with the planted bad pixels of :mod:`braggsieve.simulate.badpixels`; gap pixels hold the detector's
marker.  Everything random is keyed by (seed, frame number): frame i is the same whatever the batch size or
the first frame generated, and the same seed gives bitwise the same run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..engine.rng import STREAM_DEFECTS, STREAM_FRAME
from ..errors import ParameterError
from ..geometry.detectors import get_detector
from ..geometry.pixels import polarization, q_nm, solid_angle, two_theta
from ..geometry.poni import Poni, read_poni
from .background import expected_background
from .badpixels import plant_bad_pixels
from .crystal import (
    excited_reflections,
    random_rotation,
    reciprocal_basis,
    reflections_within,
    wilson_intensities,
)
from .params import (
    BackgroundParams,
    BadPixelParams,
    NoiseParams,
    SetupParams,
    SsxParams,
)
from .projection import Projection
from .response import nominal_response, record_frames
from .spots import add_spots

# numpy Generator streams for the run's static draws (the numba kernels use rng.stream_key).
_STREAM_STRUCTURE = 11
_STREAM_RESPONSE = 12

REFLECTION_DTYPE = np.dtype([("frame", np.int64), ("h", np.int32), ("k", np.int32), ("l", np.int32),
                             ("row", np.float64), ("col", np.float64), ("photons", np.float32),
                             ("partiality", np.float32), ("d", np.float32), ("panel", np.int32)])
ZINGER_DTYPE = np.dtype([("frame", np.int64), ("row", np.int32), ("col", np.int32), ("photons", np.float32)])


def run_geometry(setup: SetupParams) -> Poni:
    """The PONI geometry of the run (from --poni, else from the detector and beam parameters)."""
    if setup.poni is not None:
        poni = read_poni(setup.poni)
        if poni.wavelength is None or poni.detector.shape is None:
            raise ParameterError(f"{setup.poni}: the PONI file needs a wavelength and a detector of known "
                                 "shape to simulate frames")
        return poni
    detector = get_detector(setup.detector)
    if setup.beam_center is None:
        centre_x, centre_y = _centre(detector)
    else:
        centre_x, centre_y = setup.beam_center
    return Poni.from_beam_center(detector, setup.distance * 1e-3, (centre_x, centre_y), setup.wavelength * 1e-10)


def _centre(detector) -> tuple[float, float]:
    """Beam centre (x, y) pixels at the middle of the detector's plane extent."""
    p1, p2 = detector.pixel_positions((0.5, 0.5))
    return (float(np.nanmax(p2) + np.nanmin(p2)) / 2 / detector.pixel_size[1],
            float(np.nanmax(p1) + np.nanmin(p1)) / 2 / detector.pixel_size[0])



@dataclass(frozen=True)
class FrameTruth:
    """What one frame holds: hit flag, scales, crystal orientation, reflections and zingers."""

    frame: int
    hit: bool
    background_scale: float
    crystal_scale: float
    spot_scale: float                 # spot widths of this hit relative to SsxParams.spot_width
    orientation: np.ndarray           # (3, 3) U matrix (identity for blanks)
    reflections: np.ndarray           # REFLECTION_DTYPE (k,)
    zingers: np.ndarray               # ZINGER_DTYPE (z,)


@dataclass
class SsxSimulator:
    """Generates the frames of one run; the static maps are built once (see module docstring).

    Attributes after construction: ``poni``, ``background`` float32 (ny, nx) noiseless expected background
    (photons/pixel, before the per-frame jitter), ``bad_types`` uint8 (ny, nx) planted defects, ``response``
    (PixelResponse), ``hkl``/``intensity``/``d`` of the crystal's reflections, ``projection``.
    """

    poni: Poni
    ssx: SsxParams = field(default_factory=SsxParams)
    background_params: BackgroundParams = field(default_factory=BackgroundParams)
    noise: NoiseParams = field(default_factory=NoiseParams)
    bad_pixels: BadPixelParams = field(default_factory=BadPixelParams)
    seed: int = 1

    def __post_init__(self):
        detector = self.poni.detector
        if self.poni.wavelength is None:
            raise ParameterError("simulating frames needs a wavelength")
        self.shape = detector.shape
        self.dtype = np.dtype(detector.dtype)
        self.counting = self.noise.is_counting(detector.counting)
        gap = detector.gap_mask()
        q = q_nm(self.poni)
        gap |= ~np.isfinite(q)
        self.gap = gap
        background = expected_background(
            q, solid_angle(self.poni), polarization(self.poni, self.background_params.polarization_factor),
            self.background_params)
        background[gap] = 0.0
        self.background = background
        marker = detector.markers[0] if detector.markers else 0
        rng = np.random.default_rng([self.seed, _STREAM_RESPONSE])
        nominal = nominal_response(self.shape, gap, marker, self.noise, self.counting, rng)
        self.bad_types, self.response = plant_bad_pixels(nominal, self.bad_pixels,
                                                         np.random.default_rng([self.seed, STREAM_DEFECTS]))
        self.wavelength_a = self.poni.wavelength * 1e10
        tth_max = float(np.nanmax(two_theta(self.poni)[~gap]))
        self.d_min = max(self.ssx.d_min, self.wavelength_a / (2 * math.sin(tth_max / 2)))
        self.basis = reciprocal_basis(self.ssx.cell)
        self.hkl = reflections_within(self.basis, self.d_min)
        self.intensity, self.d = wilson_intensities(self.hkl, self.basis, self.ssx.b_factor,
                                                    np.random.default_rng([self.seed, _STREAM_STRUCTURE]))
        self.projection = Projection.from_poni(self.poni)
        # angular width (mrad) x distance (m) = std on the detector plane (mm): 1e-3 x that in metres
        self._raw_sigma = self.projection.raw_sigma(tuple(1e-3 * w * self.poni.dist for w in self.ssx.spot_width))
        self._good_pixels = np.flatnonzero(~gap.reshape(-1))
        self._expected_buffer = np.empty((1, *self.shape), np.float32)

    def truth(self, frame: int) -> FrameTruth:
        """The random content of frame ``frame`` (its hit, crystal, spots and zingers)."""
        rng = np.random.default_rng([self.seed, STREAM_FRAME, frame])
        hit = bool(rng.random() < self.ssx.hit_fraction)
        background_scale = max(0.0, 1.0 + self.background_params.background_jitter * rng.standard_normal())
        orientation = random_rotation(rng)
        crystal_scale = float(np.exp(self.ssx.crystal_spread * rng.standard_normal()
                                     - 0.5 * self.ssx.crystal_spread ** 2))
        spot_scale = float(np.exp(self.ssx.spot_width_spread * rng.standard_normal()))
        reflections = np.zeros(0, REFLECTION_DTYPE)
        if hit:
            reflections = self._reflections(frame, orientation, crystal_scale)
        else:
            orientation = np.eye(3)
        nzingers = rng.poisson(self.ssx.zingers)
        zingers = np.zeros(nzingers, ZINGER_DTYPE)
        pixels = self._good_pixels[rng.integers(0, self._good_pixels.size, nzingers)]
        zingers["frame"] = frame
        zingers["row"], zingers["col"] = np.divmod(pixels, self.shape[1])
        low, high = np.log(self.ssx.zinger_photons)
        zingers["photons"] = np.exp(rng.uniform(low, high, nzingers))
        return FrameTruth(frame, hit, background_scale, crystal_scale if hit else 0.0, spot_scale if hit else 0.0,
                          orientation, reflections, zingers)

    def _reflections(self, frame: int, orientation: np.ndarray, crystal_scale: float) -> np.ndarray:
        index, partiality, direction = excited_reflections(
            self.hkl, self.basis, orientation, self.wavelength_a, np.radians(self.ssx.mosaicity),
            self.ssx.bandwidth)
        row, col, panel = self.projection.raw_position(direction)
        on = panel >= 0
        index, partiality, row, col, panel = index[on], partiality[on], row[on], col[on], panel[on]
        table = np.zeros(index.size, REFLECTION_DTYPE)
        table["frame"] = frame
        table["h"], table["k"], table["l"] = self.hkl[index].T
        table["row"], table["col"], table["panel"] = row, col, panel
        table["photons"] = self.ssx.spot_photons * crystal_scale * self.intensity[index] * partiality
        table["partiality"] = partiality
        table["d"] = self.d[index]
        return table

    def spot_sigma(self, truth: FrameTruth) -> np.ndarray:
        """(k, 2) Gaussian std in raw rows and columns (pixels) of the spots of ``truth.reflections``."""
        return self._raw_sigma[truth.reflections["panel"]] * truth.spot_scale

    def expected(self, truth: FrameTruth, out: np.ndarray | None = None) -> np.ndarray:
        """Noiseless expected photons float32 (ny, nx) of the frame described by ``truth``."""
        if out is None:
            out = np.empty(self.shape, np.float32)
        np.multiply(self.background, np.float32(truth.background_scale), out=out)
        table = truth.reflections
        if table.size:
            sigma = self.spot_sigma(truth)
            add_spots(out, table["row"], table["col"], table["photons"], sigma[:, 0], sigma[:, 1],
                      self.projection.bounds[table["panel"]])
        np.add.at(out, (truth.zingers["row"], truth.zingers["col"]), truth.zingers["photons"])
        return out

    def frames(self, start: int, stop: int, out: np.ndarray | None = None) -> tuple[np.ndarray, list[FrameTruth]]:
        """Raw frames ``start..stop-1`` ((n, ny, nx), the detector's dtype, written into ``out`` if given) and
        their truths.  One float32 frame of expected photons is reused, so memory is that of the output."""
        n = stop - start
        raw = np.empty((n, *self.shape), self.dtype) if out is None else out[:n]
        truths = [self.truth(i) for i in range(start, stop)]
        for k, truth in enumerate(truths):
            self.expected(truth, self._expected_buffer[0])
            record_frames(self._expected_buffer, self.response, self.seed, start + k, self.dtype, raw[k:k + 1])
        return raw, truths
