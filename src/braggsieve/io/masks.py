"""Bad-pixel masks from files, as bool (ny, nx) with True = bad (pyFAI's convention).

``load_mask(path, shape=None, cell=None)`` understands

* a braggsieve mask file: HDF5 with ``/mask/bitmask`` uint32 (ny, nx) or (cells, ny, nx); any set bit is bad
  (the bits follow NeXus NXmx ``pixel_mask``: 0 gap, 1 dead, 2 under-responding, 3 over-responding, 4 noisy,
  and the mask maker's documented free bits).  For a per-cell mask, ``cell=None`` marks a pixel bad when it is
  bad in any memory cell, ``cell=k`` takes cell k only;
* a NeXus/NXmx file's ``pixel_mask`` (``/entry/instrument/detector/pixel_mask`` or ``detectorSpecific``; any
  nonzero bit is bad; (1, ny, nx) is accepted, several cells are handled as above);
* a plain image or array: ``.npy``, any fabio format (EDF, TIFF, ...), or an HDF5 dataset
  (``file.h5::/path``) -- nonzero = bad, as pyFAI.  CrystFEL and OM masks use 1 = good: invert those first.

With ``shape`` the mask must be (ny, nx) = shape, otherwise InputError names the file and both shapes.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from ..errors import InputError, ParameterError
from .images import find_hdf5_dataset, load_image, split_h5path
from .readers import is_hdf5, reason

BITMASK_PATH = "/mask/bitmask"
PIXEL_MASK_PATHS = ("/entry/instrument/detector/pixel_mask",
                    "/entry/instrument/detector/detectorSpecific/pixel_mask")


def _reduce_cells(mask: np.ndarray, cell: int | None, path: str) -> np.ndarray:
    if mask.ndim == 2:
        return mask
    if mask.ndim != 3:
        raise InputError(f"mask has shape {mask.shape}: expected (ny, nx) or (cells, ny, nx)", path)
    if cell is None:
        return mask.any(axis=0)
    if not -mask.shape[0] <= cell < mask.shape[0]:
        raise ParameterError(f"memory cell {cell} does not exist: the mask has {mask.shape[0]} cells", path)
    return mask[cell]


def load_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None, cell: int | None = None,
              h5path: str | None = None) -> np.ndarray:
    """bool (ny, nx) mask, True = bad, from any of the files of the module docstring (``h5path`` or
    ``file.h5::/path`` names the HDF5 dataset explicitly)."""
    path, h5path = split_h5path(path, h5path)
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if is_hdf5(path):
        try:
            with h5py.File(path, "r") as handle:
                if h5path is None:
                    h5path = next((p for p in (BITMASK_PATH, *PIXEL_MASK_PATHS)
                                   if isinstance(handle.get(p), h5py.Dataset)), None)
                mask = find_hdf5_dataset(handle, h5path, "mask")[()] != 0
        except OSError as exc:
            raise InputError(f"cannot read HDF5 ({reason(exc)}); truncated or corrupt file?", path) from None
        mask = _reduce_cells(mask, cell, path)
    else:
        mask = load_image(path, what="mask") != 0
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise InputError(f"mask has shape {mask.shape}, the frames have {tuple(shape)}", path)
    return mask
