"""Static per-pixel maps from files: dark, flat, dark variance, absorption (and the plain-image masks of
:mod:`braggsieve.io.masks`).

``load_image(path, h5path=None, shape=None)`` reads one 2-D map from

* ``.npy`` (numpy),
* HDF5/NeXus: the dataset ``h5path``; without one, ``/entry/data/data`` if present, else the file's only 2-D or
  3-D numeric dataset,
* anything fabio reads (EDF, TIFF, CBF, ...).

A stack of frames (n, ny, nx) -- a dark or flat-field series -- is averaged over its frames (float64 sums,
returned as float32), read frame by frame so that memory stays bounded; a (1, ny, nx) stack is its one frame.
A 2-D map is returned in its stored dtype.  With ``shape`` the map must be (ny, nx) = shape, otherwise
InputError names the file and both shapes.
"""
from __future__ import annotations

import os

import h5py
import hdf5plugin  # noqa: F401  (compressed HDF5 datasets)
import numpy as np

from ..errors import InputError
from .readers import is_hdf5, reason

DEFAULT_H5PATH = "/entry/data/data"


def find_hdf5_dataset(handle: h5py.File, h5path: str | None, what: str = "image") -> h5py.Dataset:
    """The dataset ``h5path`` of an open file; without one ``/entry/data/data`` or the only 2-D/3-D numeric
    dataset of the file.  InputError (naming the file) when there is none or the choice is ambiguous."""
    if h5path is not None:
        node = handle.get(h5path)
        if not isinstance(node, h5py.Dataset):
            raise InputError(f"no dataset {h5path}", handle.filename)
        return node
    if isinstance(handle.get(DEFAULT_H5PATH), h5py.Dataset):
        return handle[DEFAULT_H5PATH]
    candidates: list[str] = []

    def visit(name, node):
        if isinstance(node, h5py.Dataset) and node.ndim in (2, 3) and node.dtype.kind in "biuf":
            candidates.append("/" + name)

    handle.visititems(visit)
    if len(candidates) != 1:
        listed = ", ".join(candidates[:6]) + (" ..." if len(candidates) > 6 else "")
        why = f"several candidate datasets ({listed})" if candidates else "no 2-D or 3-D numeric dataset"
        raise InputError(f"cannot tell which dataset holds the {what}: {why}; name it with FILE::/path", handle.filename)
    return handle[candidates[0]]


def split_h5path(path: str | os.PathLike, h5path: str | None = None) -> tuple[str, str | None]:
    """``"file.h5::/entry/dark"`` -> ("file.h5", "/entry/dark"); ``h5path`` (if given) wins."""
    text = os.fspath(path)
    if "::" in text:
        text, inner = text.split("::", 1)
        return text, h5path or inner
    return text, h5path


def _average(frames) -> np.ndarray:
    """Mean over the first axis of an (n, ny, nx) array-like, frame by frame, float64 sums."""
    total = np.zeros(frames.shape[1:], np.float64)
    for index in range(frames.shape[0]):
        total += frames[index]
    return (total / frames.shape[0]).astype(np.float32)


def _check_shape(image: np.ndarray, shape, path: str, what: str) -> np.ndarray:
    if image.ndim != 2:
        raise InputError(f"{what} has shape {image.shape}: expected a 2-D image", path)
    if shape is not None and tuple(image.shape) != tuple(shape):
        raise InputError(f"{what} has shape {image.shape}, the frames have {tuple(shape)}", path)
    return image


def load_image(path: str | os.PathLike, h5path: str | None = None, shape: tuple[int, int] | None = None,
               what: str = "image") -> np.ndarray:
    """Read a 2-D per-pixel map (see the module docstring); ``what`` names it in error messages."""
    path, h5path = split_h5path(path, h5path)
    if not os.path.exists(path):
        raise InputError("no such file", path)
    if path.lower().endswith(".npy"):
        try:
            image = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read as .npy ({exc})", path) from None
        if image.ndim == 3:
            image = image[0] if image.shape[0] == 1 else _average(image)
    elif is_hdf5(path):
        try:
            with h5py.File(path, "r") as handle:
                dataset = find_hdf5_dataset(handle, h5path, what)
                if dataset.ndim == 3:
                    image = dataset[0] if dataset.shape[0] == 1 else _average(dataset)
                else:
                    image = dataset[()]
        except OSError as exc:
            raise InputError(f"cannot read HDF5 ({reason(exc)}); truncated or corrupt file?", path) from None
    else:
        image = _load_fabio(path)
    return _check_shape(np.asarray(image), shape, path, what)


def _load_fabio(path: str) -> np.ndarray:
    import fabio

    try:
        with fabio.open(path) as image:
            if getattr(image, "nframes", 1) > 1:
                total = np.zeros(image.data.shape, np.float64)
                for index in range(image.nframes):
                    total += image.getframe(index).data if index else image.data
                return (total / image.nframes).astype(np.float32)
            return np.array(image.data)
    except Exception as exc:  # fabio raises anything from IOError to ValueError on corrupt files
        raise InputError(f"cannot read image ({reason(exc)})", path) from None
