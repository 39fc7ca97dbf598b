"""Per-thread reusable memory for the large temporaries of the CPU kernels.

A fresh multi-megabyte numpy array is new memory for the process: the kernel that first writes it pays a
page fault per page (numpy asks for transparent huge pages, whose faults may also wait for the kernel to
compact memory).  Measured on one Eiger 4M frame, this doubled the time of preprocess + sigma-clip + peaks
whenever the previous results were still alive (as in a pipeline).  The CPU kernels' temporaries (never
returned to the caller) are therefore taken from a buffer that each thread keeps and grows as needed: memory
stays bounded by the largest batch, and threads running the engine concurrently never share one.
"""
from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array of ``shape`` and ``dtype`` in this thread's buffer ``name``: valid until the next
    call with the same name in the same thread, so only for temporaries that do not leave the function."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(name)
    if buffer is None or buffer.size < nbytes:
        buffer = buffers[name] = np.empty(max(nbytes, 1), np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)
