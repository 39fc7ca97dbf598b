"""Parameters of the bad-pixel mask maker (``braggsieve mask``), shared by CLI, TOML config and provenance."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParameterError
from ..params import option

KINDS = ("auto", "counting", "integrating")
COUNTING_MIN_SIGMA = 1.0 / 6.0


@dataclass(frozen=True)
class MaskParams:
    """Bad-pixel mask maker (robust statistics, features F1-F6)."""

    lam: float = option(8.0, "threshold lambda: a pixel is bad when a feature is more than lambda robust sigmas "
                        "from its neighbours' (also the MSSE inlier threshold of the robust fits); results "
                        "are stable for 7..12", flag="--lambda")
    likely: float = option(0.5, "fraction of pixels (or frames) assumed good when a robust fit starts (k/N)")
    block: tuple[int, int] = option((64, 64), "tile (ROWS COLS) over which the normal behaviour of F2-F5 is "
                                    "fitted, e.g. one ASIC (AGIPD: 64 64)", nargs=2, type=int,
                                    metavar=("ROWS", "COLS"))
    window: int = option(15, "side of the square tiles (pixels) of the robust local plane of F6 (flat field)")
    kind: str = option("auto", "detector kind: counting (photon counts; minimum sigma 1/6, negative values and "
                       "the dtype's maximum are markers) or integrating (ADU); auto: from --detector, else "
                       "integrating for 5-D inputs, counting for 3-D", choices=KINDS)
    min_frames: int = option(10, "minimum number of valid frames per pixel for robust statistics")
    frame_sample: int = option(16384, "at most this many pixels per module and frame enter the robust frame "
                               "mean of F1")
    batch: int = option(16, "frames read and processed at once (memory: batch x frame size)")
    memory_limit: float = option(4.0, "working memory in GB for the per-pixel state: with more memory cells "
                                 "than fit, the cells are processed in groups, one pass over the files per "
                                 "group (same result); about 0.45 kB per pixel, cell and module for 3 dark "
                                 "stages with gain data (AGIPD-1M: 0.5 GB per cell); the mask itself (16 B "
                                 "per pixel and cell) comes on top", metavar="GB")

    def __post_init__(self):
        if not self.lam > 0:
            raise ParameterError(f"--lambda must be positive, got {self.lam}")
        if not 0.0 < self.likely <= 1.0:
            raise ParameterError(f"--likely must be in (0, 1], got {self.likely}")
        if len(self.block) != 2 or min(self.block) < 2:
            raise ParameterError(f"--block needs two sizes >= 2, got {self.block}")
        if self.window < 5:
            raise ParameterError(f"--window must be at least 5 pixels, got {self.window}")
        if self.kind not in KINDS:
            raise ParameterError(f"unknown detector kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.min_frames < 3:
            raise ParameterError(f"--min-frames must be at least 3, got {self.min_frames}")
        if self.frame_sample < 100:
            raise ParameterError(f"--frame-sample must be at least 100, got {self.frame_sample}")
        if not self.memory_limit > 0:
            raise ParameterError(f"--memory-limit must be positive (GB), got {self.memory_limit}")
        if self.batch < 1:
            raise ParameterError(f"--batch must be at least 1, got {self.batch}")
