"""Choice of the engine backend: ``cpu`` (numba), ``cuda`` (CuPy on an NVIDIA GPU) or ``auto``.

``auto`` takes the GPU when CuPy imports and sees a device, and otherwise falls back to the CPU with one log
line saying why; ``cuda`` without a usable GPU is an error.  Both backends take the same constructor
arguments and give the same records (see :mod:`braggsieve.engine.backend`).
"""
from __future__ import annotations

import logging

from ..errors import ParameterError

DEVICES = ("cpu", "cuda", "auto")
log = logging.getLogger("braggsieve")


def cuda_unavailable_reason() -> str | None:
    """None when CuPy imports and sees at least one CUDA device, else why not (one line)."""
    try:
        import cupy
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); pip install 'braggsieve[cuda]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver, or a broken installation
        return f"no usable CUDA device ({exc})"
    return None if count > 0 else "no CUDA device found"


def select_engine(device: str, *args, **kwargs):
    """An engine on ``device`` ("cpu", "cuda" or "auto"), built with ``args``/``kwargs`` (binning, corrections,
    integration, clip, pick, peaks, d_spacing: see CpuEngine / CudaEngine)."""
    if device not in DEVICES:
        raise ParameterError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device in ("cuda", "auto"):
        reason = cuda_unavailable_reason()
        if reason is None:
            from .cuda import CudaEngine

            return CudaEngine(*args, **kwargs)
        if device == "cuda":
            raise ParameterError(f"--device cuda: {reason}")
        log.warning("no GPU engine: %s; running on the CPU", reason)
    from .cpu import CpuEngine

    return CpuEngine(*args, **kwargs)
