"""The CPU backend (numba): :class:`CpuEngine` implements :class:`braggsieve.engine.backend.Engine`.

It is bound once to a run's binning, corrections and parameters; each call takes a batch of raw frames
``(nframes, ny, nx)`` (or one ``(ny, nx)`` frame, treated as a batch of one) and returns per-batch records
with ``(nframes, nbins)`` profiles.  The work is spread over numba's threads (``NUMBA_NUM_THREADS``).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .backend import BoundEngine, FrameResults
from .corrections import Preprocessed, preprocess
from .integrate import integrate, sigma_clip
from .peaks import find_peaks
from .pick import pick_pixels
from .records import RadialProfile


class CpuEngine(BoundEngine):
    """Engine on the CPU, bound to one binning, one set of corrections and parameters.

    Args:
        binning: the radial binning (CSR) of the detector.  corrections: the static corrections.
        integration, clip, pick, peaks: the parameter dataclasses (defaults when omitted).
        d_spacing: optional float ``(ny, nx)`` map in Angstrom for the peaks' ``resolution``.

    Every method also takes ``variance=``, the explicit variance of the raw values (ADU**2, shaped like
    the frames), required by and only allowed with the ``variance`` error model.
    """

    device = "cpu"

    def _batch(self, frames: np.ndarray) -> np.ndarray:
        frames = np.asarray(frames)
        return frames[np.newaxis] if frames.ndim == 2 else frames

    def _preprocess(self, frames: np.ndarray, variance: np.ndarray | None) -> Preprocessed:
        return preprocess(frames, self.corrections, self.integration.error_model, variance)

    def integrate(self, frames: np.ndarray, *, variance: np.ndarray | None = None) -> RadialProfile:
        """Azimuthal integration without clipping: ``(nframes, nbins)`` profile."""
        pre = self._preprocess(self._batch(frames), variance)
        return integrate(pre, self.binning, self.integration.error_model)

    def sigma_clip(self, frames: np.ndarray, *, variance: np.ndarray | None = None) -> RadialProfile:
        """Iterative sigma-clipping: the clipped mean and std, ``(nframes, nbins)``, are the background."""
        pre = self._preprocess(self._batch(frames), variance)
        return sigma_clip(pre, self.binning, self.integration.error_model, self.clip)

    def process(self, frames: np.ndarray, *, sparse: bool = True, peaks: bool = True,
                variance: np.ndarray | None = None) -> FrameResults:
        """Sigma-clip once, then pick the pixels above background (``sparse``) and find the Bragg peaks
        (``peaks``) of the batch against that background."""
        frames = self._batch(frames)
        pre = self._preprocess(frames, variance)
        profile = sigma_clip(pre, self.binning, self.integration.error_model, self.clip)
        picked = (pick_pixels(frames, pre, self.binning, profile, self.pick_params, self.corrections)
                  if sparse else None)
        found = (find_peaks(pre, self.binning, profile, self.peak_params, self.corrections, self.d_spacing)
                 if peaks else None)
        return FrameResults(profile=profile, sparse=picked, peaks=found)

    def process_many(self, batches: Iterable[np.ndarray], *, sparse: bool = True,
                     peaks: bool = True) -> Iterator[FrameResults]:
        """:meth:`process` each batch in turn (the CUDA engine overlaps them; here they run one by one)."""
        for frames in batches:
            yield self.process(frames, sparse=sparse, peaks=peaks)
