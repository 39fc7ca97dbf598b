"""Small helpers shared by the io readers: file-type detection and one-line error reasons."""
from __future__ import annotations

import h5py


def is_hdf5(path: str) -> bool:
    """True if ``path`` starts with an HDF5 signature (whatever its extension)."""
    try:
        return h5py.is_hdf5(path)
    except OSError:
        return False


def reason(exc: BaseException) -> str:
    """The message of a library error (h5py, fabio, ...) on one line, with its type when it says little."""
    text = " ".join(str(exc).split())
    return text if len(text) > 12 else f"{type(exc).__name__}: {text}" if text else type(exc).__name__
