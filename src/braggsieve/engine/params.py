"""Parameters of the numerical core, one frozen dataclass per concern (see braggsieve.params).

Every command that integrates (integrate, sparsify, peaks, process, stream) shares these option names,
defaults and meanings; the TOML config tables use the same keys.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from ..params import option

UNITS = ("q_nm^-1", "2th_deg", "r_mm")
ERROR_MODELS = ("poisson", "azimuthal", "hybrid", "variance")
SPLITTING = ("no", "bbox")


@dataclass(frozen=True)
class IntegrationParams:
    """Radial binning and error model."""

    bins: int = option(1000, "number of radial bins, uniform in UNIT")
    unit: str = option("q_nm^-1", "radial unit: q_nm^-1 (scattering vector), 2th_deg (scattering angle) or "
                       "r_mm (distance from the PONI in the detector plane)", choices=UNITS)
    radial_range: tuple[float, float] | None = option(
        None, "radial range in UNIT (MIN MAX); pixels outside are ignored; default: the range of the unmasked "
        "pixels, as pyFAI", nargs=2, type=float, metavar=("MIN", "MAX"))
    error_model: str = option("poisson", "uncertainty model: poisson (variance = max(signal, 1) + dark variance), "
                              "azimuthal (scatter of the pixels in the bin), hybrid (clip with azimuthal, report "
                              "poisson) or variance (an explicit variance array)", choices=ERROR_MODELS)
    split: str = option("no", "pixel splitting: no (each pixel in one bin) or bbox (bounding-box splitting)",
                        choices=SPLITTING)

    def __post_init__(self):
        if self.bins < 1:
            raise ParameterError(f"--bins must be at least 1, got {self.bins}")
        if self.unit not in UNITS:
            raise ParameterError(f"unknown radial unit {self.unit!r}; choose one of {', '.join(UNITS)}")
        if self.error_model not in ERROR_MODELS:
            raise ParameterError(f"unknown error model {self.error_model!r}; choose one of {', '.join(ERROR_MODELS)}")
        if self.split not in SPLITTING:
            raise ParameterError(f"unknown pixel splitting {self.split!r}; choose one of {', '.join(SPLITTING)}")
        if self.radial_range is not None:
            low, high = self.radial_range
            if not low < high:
                raise ParameterError(f"--radial-range needs MIN < MAX, got {low} {high}")


@dataclass(frozen=True)
class CorrectionParams:
    """Per-pixel corrections (the arrays themselves -- mask, dark, flat, ... -- are inputs, not parameters)."""

    solid_angle: bool = option(True, "divide by the pixel's solid angle (relative to a pixel at normal incidence)")
    polarization: float | None = option(
        None, "polarisation factor in [-1, 1] (0.99 for a horizontally polarised synchrotron beam); none = no "
        "correction", type=float)
    normalization_factor: float = option(1.0, "divide every frame by this factor (e.g. the monitor count)")
    gain: float = option(1.0, "detector gain in ADU per photon (integrating detectors such as JUNGFRAU); signals "
                         "are divided by it so that the Poisson model holds in photons")
    dummy: float | None = option(None, "value marking invalid pixels in the frames (in addition to the "
                                 "detector's own markers)", type=float)
    delta_dummy: float | None = option(None, "tolerance around DUMMY", type=float)
    saturation: float | None = option(None, "pixels at or above this raw value are masked in that frame "
                                      "(default: the count cut-off from the file's metadata, if any)", type=float)

    def __post_init__(self):
        if self.polarization is not None and not -1.0 <= self.polarization <= 1.0:
            raise ParameterError(f"--polarization must be in [-1, 1], got {self.polarization}")
        if not self.gain > 0:
            raise ParameterError(f"--gain must be positive (ADU per photon), got {self.gain}")
        if not self.normalization_factor > 0:
            raise ParameterError(f"--normalization-factor must be positive, got {self.normalization_factor}")


@dataclass(frozen=True)
class ClipParams:
    """Iterative sigma-clipping of each radial bin."""

    cutoff_clip: float = option(0.0, "discard pixels farther than K sigma from the bin mean; the cut-off used is "
                                "max(K, Chauvenet's sqrt(2 ln(n / sqrt(2 pi)))) with n the bin's pixel count, so "
                                "0 means pure Chauvenet", metavar="K")
    cycles: int = option(5, "maximum number of clipping iterations (stops earlier when nothing is discarded)")

    def __post_init__(self):
        if self.cutoff_clip < 0:
            raise ParameterError(f"--cutoff-clip must be >= 0, got {self.cutoff_clip}")
        if self.cycles < 0:
            raise ParameterError(f"--cycles must be >= 0, got {self.cycles}")
