"""Typed result records of the engine, shared by every backend (cpu, cuda) and by the io writers.

Shapes: a record holds one frame or a batch of frames.  Per-bin arrays are ``(nbins,)`` for one frame and
``(nframes, nbins)`` for a batch; per-pixel and per-peak results of a batch are concatenated and indexed by a
CSR-style ``frame_ptr`` of length ``nframes + 1`` (frame ``i`` owns ``[frame_ptr[i], frame_ptr[i+1])``), which
is also how the sparse file format and the GPU's prefix-sum compaction lay them out.

Units: ``radial`` is in the profile's ``unit`` (``q_nm^-1``, ``2th_deg`` or ``r_mm``).  ``mean``, ``std`` and
``sem`` are *normalised* intensities (signal / norm, with norm = flat x solid angle x polarisation x
absorption x normalisation factor; photons when a gain is given).  Pixel positions are (row, col) with pixel
centres at integer indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RadialProfile:
    """Azimuthal integration (or sigma-clipped integration) of one frame or a batch of frames.

    Attributes (float64, shape ``(nbins,)`` or ``(nframes, nbins)``):
        radial: bin centres in ``unit`` (always ``(nbins,)``).
        mean: weighted mean of signal/norm in the bin; NaN where ``count == 0`` (all pixels masked or clipped).
        std: standard deviation of one pixel's normalised value (the background noise used for picking).
        sem: standard error of ``mean``.
        count: sum of the CSR coefficients of the pixels that contributed (the pixel count without splitting).
        sum_signal: V = sum c * signal.
        sum_variance: the variance sum of the error model: W = sum c^2 * var (poisson / explicit variance)
            or the scatter VV = sum w^2 (v - mean)^2 (azimuthal).
        sum_norm: Omega = sum w with w = c * norm.
        sum_norm2: OmegaOmega = sum w^2.
        unit: radial unit name.
        error_model: the error model of ``std``/``sem`` (for ``hybrid`` this is the reported ``poisson``).
    """

    radial: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    sem: np.ndarray
    count: np.ndarray
    sum_signal: np.ndarray
    sum_variance: np.ndarray
    sum_norm: np.ndarray
    sum_norm2: np.ndarray
    unit: str
    error_model: str


@dataclass(frozen=True)
class SparseFrames:
    """Pixels kept by picking (above background + n sigma), for ``nframes`` frames.

    Attributes:
        frame_ptr: int64 ``(nframes + 1,)``, offsets into ``index``/``intensity``.
        index: uint32 ``(npix_total,)``, flat pixel index ``row * width + col``; sorted within a frame.
        intensity: ``(npix_total,)`` in the input frame's dtype: raw signal (minus dark, if a dark was given),
            not normalised.
        background_avg: float32 ``(nframes, nbins)``, clipped mean in normalised units.
        background_std: float32 ``(nframes, nbins)``, clipped pixel std in normalised units.
        radial: float64 ``(nbins,)`` bin centres in ``unit``.
        unit: radial unit name.
    """

    frame_ptr: np.ndarray
    index: np.ndarray
    intensity: np.ndarray
    background_avg: np.ndarray
    background_std: np.ndarray
    radial: np.ndarray
    unit: str

    @property
    def nframes(self) -> int:
        return len(self.frame_ptr) - 1


# Fields of one peak, with their dtype; PeakList holds one array per field, concatenated over frames.
PEAK_FIELDS: dict[str, np.dtype] = {
    "row": np.dtype(np.float32),         # background-subtracted centroid, slow axis (pixel centres at integers)
    "col": np.dtype(np.float32),         # background-subtracted centroid, fast axis
    "intensity": np.dtype(np.float32),   # background-subtracted integrated intensity, detector counts
    "sigma": np.dtype(np.float32),       # propagated standard deviation of ``intensity``
    "snr": np.dtype(np.float32),         # intensity / sigma
    "npix": np.dtype(np.int32),          # pixels integrated into the peak
    "maximum": np.dtype(np.float32),     # highest background-subtracted pixel value, detector counts
    "background": np.dtype(np.float32),  # local background level per pixel under the peak, detector counts
    "resolution": np.dtype(np.float32),  # d-spacing of the centroid, Angstrom (NaN without a wavelength)
    "index": np.dtype(np.int64),         # flat index of the peak's maximum pixel
}


@dataclass(frozen=True)
class PeakList:
    """Bragg peaks of ``nframes`` frames: one array per field of :data:`PEAK_FIELDS`, shape ``(npeaks_total,)``,
    and ``frame_ptr`` int64 ``(nframes + 1,)``; ``npeaks`` per frame is ``np.diff(frame_ptr)``."""

    frame_ptr: np.ndarray
    row: np.ndarray
    col: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    snr: np.ndarray
    npix: np.ndarray
    maximum: np.ndarray
    background: np.ndarray
    resolution: np.ndarray
    index: np.ndarray

    @property
    def nframes(self) -> int:
        return len(self.frame_ptr) - 1

    @property
    def npeaks(self) -> np.ndarray:
        """int64 ``(nframes,)``: number of peaks in each frame."""
        return np.diff(self.frame_ptr)
