"""Parameters of the simulation, one frozen dataclass per concern (command line, TOML tables, provenance).

Kept free of numerical imports so that ``braggsieve --help`` stays fast; the models that use them live in
background.py, crystal.py, response.py, badpixels.py and ssx.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from ..params import option


@dataclass(frozen=True)
class SetupParams:
    """Run and geometry: detector, distance, wavelength, beam centre, number of frames, seed"""

    detector: str = option("eiger4m", "registry detector (eiger4m, eiger9m, eiger16m, pilatus1m, pilatus6m, "
                           "jungfrau4m, jungfrau4m_raw, agipd1m, cspad, ...)")
    poni: str | None = option(None, "pyFAI PONI file giving the geometry (overrides --detector, --distance, "
                              "--wavelength, --beam-center)", metavar="FILE", type=str)
    distance: float = option(120.0, "sample-detector distance, mm")
    wavelength: float = option(1.0, "X-ray wavelength, Angstrom (12.398 / energy in keV)")
    beam_center: tuple[float, float] | None = option(
        None, "beam centre X Y in pixels from the detector's outer corner (x = fast/column, y = slow/row; pixel "
        "i spans [i, i+1)); none = the middle of the detector", nargs=2, type=float, metavar=("X", "Y"))
    frames: int = option(100, "number of frames")
    seed: int = option(1, "random seed: the same seed gives bitwise the same files")

    def __post_init__(self):
        if self.frames < 1:
            raise ParameterError(f"--frames must be at least 1, got {self.frames}")
        if not self.distance > 0 or not self.wavelength > 0:
            raise ParameterError(f"--distance and --wavelength must be positive, got {self.distance} mm, "
                                 f"{self.wavelength} A")
        if self.seed < 0:
            raise ParameterError(f"--seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class SsxParams:
    """Crystals, hits, spots and zingers"""

    cell: tuple[float, float, float, float, float, float] = option(
        (58.0, 58.0, 150.4, 90.0, 90.0, 90.0), "unit cell a b c (Angstrom) alpha beta gamma (degrees); default: "
        "thaumatin", nargs=6, type=float, metavar=("A", "B", "C", "ALPHA", "BETA", "GAMMA"))
    hit_fraction: float = option(0.4, "probability that a frame holds a crystal (each frame drawn "
                                 "independently, so a run's fraction scatters around it)")
    b_factor: float = option(20.0, "Wilson B factor, Angstrom^2 (intensities fall as exp(-B / (2 d^2)))")
    d_min: float = option(0.0, "resolution limit of the crystal, Angstrom (0: the detector's corner)")
    mosaicity: float = option(0.1, "mosaic spread (std), degrees")
    bandwidth: float = option(2e-4, "relative wavelength spread (std) of the beam")
    spot_photons: float = option(12000.0, "mean photons of a fully recorded reflection at low resolution (before "
                                 "the B factor), for a crystal of average size")
    crystal_spread: float = option(0.5, "log-normal std of the crystal-to-crystal scale (size, exposure)")
    spot_width: tuple[float, float] = option(
        (0.50, 0.67), "Gaussian std of a spot's angular spread (beam divergence, mosaic blocks, crystal size seen "
        "from the sample) along the detector's slow (rows) and fast (columns) axes, milliradians; on the detector "
        "a spot's std is WIDTH x the sample-detector distance (mrad x mm = micrometres). Default: the median "
        "width of strong spots on the real PILATUS3 6M stills (benchmarks/spot_widths.py)", nargs=2, type=float,
        metavar=("SLOW", "FAST"))
    spot_width_spread: float = option(0.15, "log-normal std of the hit-to-hit spot width (crystal size and "
                                      "shape)")
    zingers: float = option(1.0, "mean number of zingers (single bright pixels) per frame")
    zinger_photons: tuple[float, float] = option(
        (100.0, 5000.0), "zinger intensities: log-uniform between MIN and MAX photons", nargs=2, type=float,
        metavar=("MIN", "MAX"))

    def __post_init__(self):
        if not 0 <= self.hit_fraction <= 1:
            raise ParameterError(f"--hit-fraction must lie in [0, 1], got {self.hit_fraction}")
        if min(self.cell[:3]) <= 0 or not all(0 < angle < 180 for angle in self.cell[3:]):
            raise ParameterError(f"--cell needs positive lengths and angles in (0, 180), got {self.cell}")
        for name in ("b_factor", "d_min", "mosaicity", "bandwidth", "spot_photons", "crystal_spread", "zingers",
                     "spot_width_spread"):
            if getattr(self, name) < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if not min(self.spot_width) > 0:
            raise ParameterError(f"--spot-width must be positive, got {self.spot_width}")
        if not 0 < self.zinger_photons[0] <= self.zinger_photons[1]:
            raise ParameterError(f"--zinger-photons needs 0 < MIN <= MAX, got {self.zinger_photons}")


@dataclass(frozen=True)
class BackgroundParams:
    """Amorphous background profile (photons per pixel at normal incidence)"""

    floor: float = option(2.5, "flat background, photons/pixel")
    lowq: float = option(10.0, "small-angle scatter at q = 0, photons/pixel")
    lowq_width: float = option(5.0, "decay length of the small-angle scatter, nm^-1")
    water: float = option(5.5, "height of the water ring, photons/pixel")
    water_q: float = option(18.0, "position of the water ring, nm^-1")
    water_width: float = option(7.5, "Gaussian std of the water ring, nm^-1")
    polarization_factor: float = option(0.99, "beam polarisation factor in [-1, 1] (0.99: horizontally polarised "
                                        "synchrotron beam; 0: unpolarised)")
    background_jitter: float = option(0.05, "relative std of the frame-to-frame background intensity (beam and "
                                      "jet fluctuations)")

    def __post_init__(self):
        for name in ("floor", "lowq", "water", "background_jitter"):
            if getattr(self, name) < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        for name in ("lowq_width", "water_width"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not -1 <= self.polarization_factor <= 1:
            raise ParameterError(f"--polarization-factor must lie in [-1, 1], got {self.polarization_factor}")


NOISE_MODELS = ("auto", "counting", "integrating")


@dataclass(frozen=True)
class NoiseParams:
    """Detector noise: counting (Poisson) or integrating (gain, pedestal, read noise)"""

    noise_model: str = option("auto", "counting: Poisson photon counts (Eiger, Pilatus); integrating: ADU = gain x "
                              "photons + pedestal + Gaussian read noise (JUNGFRAU, AGIPD, CSPAD); auto: from the "
                              "detector", choices=NOISE_MODELS)
    gain: float = option(8.0, "integrating detectors: ADU per photon (JUNGFRAU-like at 12 keV)")
    gain_spread: float = option(0.02, "integrating detectors: relative pixel-to-pixel spread of the gain")
    pedestal: float = option(1000.0, "integrating detectors: mean pedestal (dark offset) in ADU")
    pedestal_spread: float = option(100.0, "integrating detectors: pixel-to-pixel std of the pedestal in ADU")
    read_noise: float = option(2.5, "integrating detectors: Gaussian read noise in ADU (std)")
    flat_spread: float = option(0.01, "relative pixel-to-pixel std of the flat-field efficiency (both models)")

    def __post_init__(self):
        if self.noise_model not in NOISE_MODELS:
            raise ParameterError(f"unknown noise model {self.noise_model!r}; choose one of {', '.join(NOISE_MODELS)}")
        for name in ("gain",):
            if not getattr(self, name) > 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("gain_spread", "pedestal_spread", "read_noise", "flat_spread"):
            if getattr(self, name) < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")

    def is_counting(self, detector_counting: bool) -> bool:
        """True for the counting model (``auto`` follows the detector)."""
        return detector_counting if self.noise_model == "auto" else self.noise_model == "counting"


GOOD = 0
DEFECT_TYPES = {"dead": 1, "hot": 2, "noisy": 3, "offset": 4, "bimodal": 5, "stuck": 6, "under": 7, "over": 8}


@dataclass(frozen=True)
class BadPixelParams:
    """Planted bad pixels (ground truth in the truth file)"""

    bad_fraction: float = option(1e-4, "fraction of the (non-gap) pixels that are defective, shared equally by "
                                 "BAD_TYPES")
    bad_types: str = option(",".join(DEFECT_TYPES), "comma-separated defect types to plant: "
                            + ", ".join(DEFECT_TYPES))
    hot_rate: float = option(200.0, "hot pixels: extra photons per frame (mean)")
    noisy_sigma: float = option(5.0, "noisy pixels: extra Gaussian noise std, photons")
    offset: float = option(20.0, "offset pixels: constant offset, photons (random sign)")
    bimodal_offset: float = option(30.0, "bimodal pixels: offset in a random half of the frames, photons")
    stuck_max: float = option(100.0, "stuck pixels: their constant value is uniform in [0, STUCK_MAX] photons")
    under_loss: float = option(0.5, "under-responding pixels: efficiency 1 - UNDER_LOSS")
    over_gain: float = option(0.5, "over-responding pixels: efficiency 1 + OVER_GAIN")

    def __post_init__(self):
        if not 0 <= self.bad_fraction <= 0.5:
            raise ParameterError(f"--bad-fraction must lie in [0, 0.5], got {self.bad_fraction}")
        unknown = set(self.types()) - set(DEFECT_TYPES)
        if unknown:
            raise ParameterError(f"unknown bad pixel type(s) {', '.join(sorted(unknown))}; choose from "
                                 f"{', '.join(DEFECT_TYPES)}")
        if not 0 < self.under_loss < 1:
            raise ParameterError(f"--under-loss must lie in (0, 1), got {self.under_loss}")
        for name in ("hot_rate", "noisy_sigma", "offset", "bimodal_offset", "stuck_max", "over_gain"):
            if getattr(self, name) < 0:
                raise ParameterError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")

    def types(self) -> list[str]:
        return [t.strip() for t in self.bad_types.split(",") if t.strip()]
