"""Dark and flat-field series with planted bad pixels and their ground truth, for the mask maker.

Two detector families:

* **counting** (Pilatus/Eiger/LAMBDA-like), frames (frames, rows, cols) uint32 photon counts: dark counts
  Poisson(``dark_rate``); flat field Poisson(``flat_level`` x a smooth gradient x the pixel's response).
* **integrating** (AGIPD-like), frames (frames, cells, modules, rows, cols) uint16 ADU with a
  gain-indicator ("digital") series of the same shape; one dark run per gain stage (forced gain, as at the
  European XFEL); the flat run is in the first (high) gain stage: pedestal + gain x Poisson photons.
  Pedestals vary by ASIC (``asic`` tiles), memory cell and pixel; read noise per pixel and stage; a few
  frames per run carry a common offset jump (outlier frames for F1).  Reduced sizes by default;
  ``IntegratingSeriesParams.agipd1m(cells)`` gives the full 16 x 512 x 128 geometry.

Every planted defect is strong enough to be a defect (tens of the feature's natural spread) -- the truth
map says which pixel got which defect (``COUNTING_TYPES`` / ``INTEGRATING_TYPES``, 0 = good); integrating
defects hit every memory cell and stage of the pixel.  Frames are generated batch by batch, so any size
streams to disk with bounded memory.  Everything is reproducible from ``seed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import ParameterError
from ..params import option

COUNTING_TYPES = ("good", "hot", "noisy", "dead", "stuck", "under", "over")
INTEGRATING_TYPES = ("good", "offset", "noisy", "dead", "bimodal", "gain_stage", "gain_level", "under", "over")


def _plant(rng: np.random.Generator, shape: tuple[int, ...], fraction: float, ntypes: int) -> np.ndarray:
    """int8 map: 0 good, 1..ntypes a defect type, each on ``fraction`` of the pixels (disjoint)."""
    size = int(np.prod(shape))
    per_type = int(round(fraction * size))
    if per_type * ntypes > size // 2:
        raise ParameterError(f"defect fraction {fraction} is too large for {ntypes} types")
    truth = np.zeros(size, dtype=np.int8)
    chosen = rng.choice(size, per_type * ntypes, replace=False)
    truth[chosen] = np.repeat(np.arange(1, ntypes + 1, dtype=np.int8), per_type)
    return truth.reshape(shape)


@dataclass(frozen=True)
class CountingSeriesParams:
    """Simulated photon-counting dark and flat series."""

    shape: tuple[int, int] = option((256, 512), "frame shape (rows, cols)", nargs=2, type=int)
    dark_frames: int = option(50, "frames in the dark series")
    flat_frames: int = option(50, "frames in the flat-field series")
    dark_rate: float = option(0.01, "mean dark counts per pixel and frame")
    flat_level: float = option(400.0, "mean flat-field counts per pixel and frame (centre of the gradient)")
    fraction: float = option(0.002, "fraction of pixels given each defect type")
    seed: int = option(0, "random seed")


class CountingSeries:
    """A photon-counting detector's dark and flat runs with planted defects.

    ``truth`` int8 (rows, cols), codes into ``COUNTING_TYPES``.  hot: dark rate 5-50 counts/frame; noisy:
    fires in 30 % of the frames with 5-50 counts; dead: always 0; stuck: a constant 20-2000 in every frame;
    under / over: flat response x 0.3-0.7 / x 1.3-2.
    """

    def __init__(self, params: CountingSeriesParams = CountingSeriesParams()):
        self.params = params
        rng = np.random.default_rng(params.seed)
        rows, cols = params.shape
        self.truth = _plant(rng, (rows, cols), params.fraction, len(COUNTING_TYPES) - 1)
        t = {name: self.truth == code for code, name in enumerate(COUNTING_TYPES)}
        self._t = t
        self.hot_rate = np.where(t["hot"], rng.uniform(5, 50, (rows, cols)), 0.0)
        self.noisy_level = np.where(t["noisy"], rng.uniform(5, 50, (rows, cols)), 0.0)
        self.stuck_value = np.where(t["stuck"], rng.uniform(20, 2000, (rows, cols)).round(), 0.0)
        response = np.ones((rows, cols))
        response[t["under"]] = rng.uniform(0.3, 0.7, t["under"].sum())
        response[t["over"]] = rng.uniform(1.3, 2.0, t["over"].sum())
        gradient = 1.0 + 0.4 * np.linspace(-0.5, 0.5, cols)[None, :] + 0.2 * np.linspace(-0.5, 0.5, rows)[:, None]
        self.flat_mean = params.flat_level * gradient * response
        self._seed = params.seed

    def _frames(self, which: str, start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, 1 if which == "dark" else 2, start])
        n = stop - start
        shape = (n,) + self.params.shape
        base = self.params.dark_rate + self.hot_rate
        if which == "flat":
            base = base + self.flat_mean
        counts = rng.poisson(np.broadcast_to(base, shape)).astype(np.float64)
        fires = rng.random(shape) < 0.3
        counts += np.where(fires, self.noisy_level, 0.0)
        counts[:, self._t["dead"]] = 0
        counts[:, self._t["stuck"]] = self.stuck_value[self._t["stuck"]]
        return counts.astype(np.uint32)

    def dark(self) -> np.ndarray:
        """The whole dark run, uint32 (dark_frames, rows, cols)."""
        return self._frames("dark", 0, self.params.dark_frames)

    def flat(self) -> np.ndarray:
        """The whole flat run, uint32 (flat_frames, rows, cols)."""
        return self._frames("flat", 0, self.params.flat_frames)


@dataclass(frozen=True)
class IntegratingSeriesParams:
    """Simulated AGIPD-like integrating detector: dark runs per gain stage and a flat run."""

    frames: int = option(60, "frames per dark run (one run per gain stage)")
    flat_frames: int = option(60, "frames in the flat run (first gain stage)")
    cells: int = option(2, "memory cells")
    modules: int = option(2, "modules")
    rows: int = option(128, "rows (slow axis) per module")
    cols: int = option(128, "columns (fast axis) per module")
    asic: tuple[int, int] = option((64, 64), "ASIC tile (rows, cols): pedestals vary by ASIC", nargs=2, type=int)
    stages: int = option(3, "gain stages (forced-gain dark runs)")
    gain_adu: float = option(8.0, "ADU per photon in the first gain stage (flat run)")
    flat_photons: float = option(50.0, "mean photons per pixel and flat frame")
    outlier_frames: int = option(2, "frames per dark run with a common offset jump (F1 outliers)")
    fraction: float = option(0.002, "fraction of pixels given each defect type")
    seed: int = option(0, "random seed")

    @classmethod
    def agipd1m(cls, cells: int = 4, frames: int = 200, **kwargs) -> "IntegratingSeriesParams":
        """The full AGIPD-1M geometry: 16 modules of 512 x 128 pixels, 64 x 64 ASICs."""
        return cls(frames=frames, cells=cells, modules=16, rows=512, cols=128, **kwargs)


class IntegratingSeries:
    """An AGIPD-like detector's dark runs (one per gain stage, with gain-indicator data) and flat run.

    ``truth`` int8 (modules, rows, cols), codes into ``INTEGRATING_TYPES``, the same for every cell and
    stage.  offset: pedestal +-400-1500 ADU (pixel spread 30); noisy: read noise x 3-6; dead: a constant
    value; bimodal: jumps by +150-500 ADU in half of the frames; gain_stage: the second stage's indicator
    level equals the first's; gain_level: indicator +-400-900 off (pixel spread 20); under / over: flat
    response x 0.3-0.7 / x 1.3-2.  ``bad_frames[stage]``: indices of that run's outlier frames.
    """

    BASE_PEDESTAL = (5000.0, 4500.0, 4000.0)
    BASE_NOISE = (10.0, 6.0, 5.0)
    BASE_GAIN_LEVEL = (4500.0, 6500.0, 8500.0)

    def __init__(self, params: IntegratingSeriesParams = IntegratingSeriesParams()):
        p = self.params = params
        if p.stages > 3:
            raise ParameterError("at most 3 gain stages are simulated")
        if p.rows % p.asic[0] or p.cols % p.asic[1]:
            raise ParameterError(f"module {p.rows} x {p.cols} is not a whole number of ASICs {p.asic}")
        rng = np.random.default_rng(p.seed)
        pix = (p.modules, p.rows, p.cols)
        full = (p.cells,) + pix
        self.truth = _plant(rng, pix, p.fraction, len(INTEGRATING_TYPES) - 1)
        t = {name: self.truth == code for code, name in enumerate(INTEGRATING_TYPES)}
        self._t = t
        nay, nax = p.rows // p.asic[0], p.cols // p.asic[1]

        def per_asic(scale):
            tiles = rng.normal(0.0, scale, (p.cells, p.modules, nay, nax))
            return np.repeat(np.repeat(tiles, p.asic[0], axis=-2), p.asic[1], axis=-1)

        self.pedestal = np.empty((p.stages,) + full, dtype=np.float32)
        self.noise = np.empty((p.stages,) + full, dtype=np.float32)
        self.gain_level = np.empty((p.stages,) + full, dtype=np.float32)
        offset_defect = np.where(t["offset"], rng.choice([-1.0, 1.0], pix) * rng.uniform(400, 1500, pix), 0.0)
        noise_factor = np.where(t["noisy"], rng.uniform(3.0, 6.0, pix), 1.0)
        level_defect = np.where(t["gain_level"], rng.choice([-1.0, 1.0], pix) * rng.uniform(400, 900, pix), 0.0)
        for s in range(p.stages):
            self.pedestal[s] = (self.BASE_PEDESTAL[s] + per_asic(300.0) + rng.normal(0, 30.0, full) + offset_defect)
            self.noise[s] = self.BASE_NOISE[s] * rng.lognormal(0.0, 0.08, full) * noise_factor
            self.gain_level[s] = self.BASE_GAIN_LEVEL[s] + per_asic(100.0) + rng.normal(0, 20.0, full) + level_defect
        if p.stages > 1:
            self.gain_level[1][:, t["gain_stage"]] = self.gain_level[0][:, t["gain_stage"]]
        self.bimodal_jump = np.where(t["bimodal"], rng.uniform(150, 500, pix), 0.0).astype(np.float32)
        self.response = np.ones(pix, dtype=np.float32)
        self.response[t["under"]] = rng.uniform(0.3, 0.7, t["under"].sum())
        self.response[t["over"]] = rng.uniform(1.3, 2.0, t["over"].sum())
        self.bad_frames = [np.sort(rng.choice(p.frames, p.outlier_frames, replace=False)) for _ in range(p.stages)]

    @property
    def frame_shape(self) -> tuple[int, int, int, int]:
        """(cells, modules, rows, cols) of one frame."""
        p = self.params
        return (p.cells, p.modules, p.rows, p.cols)

    def _analog(self, rng, stage, n, signal=None):
        shape = (n,) + self.frame_shape
        values = self.pedestal[stage] + self.noise[stage] * rng.standard_normal(shape, dtype=np.float32)
        jumps = rng.random((n, 1, self.params.modules, self.params.rows, self.params.cols)) < 0.5
        values += np.where(jumps, self.bimodal_jump, np.float32(0))
        if signal is not None:
            values += signal
        dead = self._t["dead"]
        values[:, :, dead] = self.pedestal[stage][:, dead]
        return np.clip(np.rint(values), 0, 16383).astype(np.uint16)

    def dark_batches(self, stage: int, batch: int = 16) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (analog uint16, gain indicator uint16), each (n, cells, modules, rows, cols), for a stage."""
        p = self.params
        for start in range(0, p.frames, batch):
            n = min(batch, p.frames - start)
            rng = np.random.default_rng([p.seed, 10 + stage, start])
            analog = self._analog(rng, stage, n)
            bad = np.isin(np.arange(start, start + n), self.bad_frames[stage])
            if bad.any():
                analog[bad] = np.clip(analog[bad].astype(np.int32) + 400, 0, 16383).astype(np.uint16)
            gain = self.gain_level[stage] + 5.0 * rng.standard_normal((n,) + self.frame_shape, dtype=np.float32)
            yield analog, np.clip(np.rint(gain), 0, 65535).astype(np.uint16)

    def flat_batches(self, batch: int = 16) -> Iterator[np.ndarray]:
        """Yield flat frames of the first gain stage, uint16 (n, cells, modules, rows, cols)."""
        p = self.params
        for start in range(0, p.flat_frames, batch):
            n = min(batch, p.flat_frames - start)
            rng = np.random.default_rng([p.seed, 20, start])
            photons = rng.poisson(p.flat_photons * np.broadcast_to(self.response, (n,) + self.frame_shape))
            yield self._analog(rng, 0, n, signal=(p.gain_adu * photons).astype(np.float32))

    def dark(self, stage: int) -> tuple[np.ndarray, np.ndarray]:
        """Whole dark run of a stage: (analog, gain) uint16 (frames, cells, modules, rows, cols)."""
        analog, gain = zip(*self.dark_batches(stage))
        return np.concatenate(analog), np.concatenate(gain)

    def flat(self) -> np.ndarray:
        """Whole flat run, uint16 (flat_frames, cells, modules, rows, cols)."""
        return np.concatenate(list(self.flat_batches()))
