"""CUDA backend of the engine (needs CuPy and an NVIDIA GPU: ``pip install braggsieve[cuda]``).

Importing this package imports CuPy; use :func:`braggsieve.engine.device.select_engine` to pick a backend
without depending on it.
"""
from .engine import CudaEngine, is_pinned

__all__ = ["CudaEngine", "is_pinned"]
