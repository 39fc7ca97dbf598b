"""The engine's interface: one Protocol, several backends (``cpu`` with numba, ``cuda`` with CuPy).

An engine is bound once to everything that is fixed for a run -- the radial binning (CSR matrix), the
per-pixel corrections and the parameters -- and then processes batches of frames.  Frames are
``(nframes, ny, nx)`` arrays in the detector's raw dtype (uint16, uint32, int32, float32, ...); a single
``(ny, nx)`` frame is accepted as a batch of one.  Every method returns the typed records of
:mod:`braggsieve.engine.records`; a backend may not add or drop fields, so that the io writers and the
tests treat all backends alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ParameterError
from .corrections import Corrections
from .csr import RadialBinning
from .params import ClipParams, IntegrationParams
from .peaks import PeakParams
from .pick import PickParams
from .records import PeakList, RadialProfile, SparseFrames


@dataclass(frozen=True)
class FrameResults:
    """What one pass over a batch gives: the clipped background, and optionally picked pixels and peaks."""

    profile: RadialProfile
    sparse: SparseFrames | None
    peaks: PeakList | None


@runtime_checkable
class Engine(Protocol):
    """A backend bound to one geometry, one set of corrections and one set of parameters."""

    device: str  # "cpu" or "cuda"

    def integrate(self, frames: np.ndarray) -> RadialProfile:
        """Azimuthal integration without clipping."""

    def sigma_clip(self, frames: np.ndarray) -> RadialProfile:
        """Iterative sigma-clipping; the clipped mean/std is the background."""

    def process(self, frames: np.ndarray, *, sparse: bool = True, peaks: bool = True) -> FrameResults:
        """Sigma-clip once, then pick pixels (``sparse``) and/or find peaks (``peaks``) from that background."""


def check_static_shapes(binning, corrections, d_spacing: np.ndarray | None = None) -> None:
    """Raise ParameterError unless the corrections and the d-spacing map (if any) have the binning's
    (ny, nx) shape: every backend checks this when it is bound."""
    if tuple(corrections.shape) != tuple(binning.shape):
        raise ParameterError(f"corrections of shape {corrections.shape} do not match the binning {binning.shape}")
    if d_spacing is not None and np.shape(d_spacing) != tuple(binning.shape):
        raise ParameterError(f"d-spacing map of shape {np.shape(d_spacing)} does not match the binning "
                             f"{binning.shape}")


class BoundEngine:
    """The binding that every backend shares: the radial binning, the corrections, the parameters (defaults
    where None) and the optional d-spacing map (Angstrom, (ny, nx)), checked for matching shapes."""

    def __init__(self, binning: RadialBinning, corrections: Corrections, integration: IntegrationParams | None = None,
                 clip: ClipParams | None = None, pick: PickParams | None = None, peaks: PeakParams | None = None,
                 d_spacing: np.ndarray | None = None):
        check_static_shapes(binning, corrections, d_spacing)
        self.binning = binning
        self.corrections = corrections
        self.integration = integration or IntegrationParams()
        self.clip = clip or ClipParams()
        self.pick_params = pick or PickParams()
        self.peak_params = peaks or PeakParams()
        self.d_spacing = d_spacing

    def batch_buffers(self, batch_size: int, dtype) -> list[np.ndarray] | None:
        """Host buffers that a reader should decode batches into (``FrameSource.iter_batches(buffers=...)``), or
        None when ordinary arrays do as well (the CPU)."""
        return None
