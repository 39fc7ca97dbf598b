"""The braggsieve mask file and its exports.

HDF5 layout (``write_mask_file``):

* ``/mask/bitmask`` uint32 (ny, nx), or (cells, ny, nx) for detectors with memory cells: 0 = good, any set
  bit = bad; attributes ``legend`` (JSON: bit name -> bit, value, description), ``bit_<n>`` = name,
  ``convention``.  Modules are stacked along ny as the raw files store them (AGIPD: 16 x 512 rows).
* ``/mask/stage_bitmask`` uint32 (stages, ...) -- the mask of each gain stage, when there are several.
* ``/mask/counts``: attributes, bit name -> number of (stage, cell, pixel) entries with that bit, and
  ``bad_pixels`` = set entries of ``/mask/bitmask``.
* ``/mask/outlier_frames/stage_<s>`` bool (frames, ...) -- frames rejected by F1 (per cell and module).
* ``/mask/features/stage_<s>/F2|F3|F6`` float32 SNR maps (optional, large).
* ``/mask/provenance``: :func:`braggsieve.io.provenance.write_provenance`.

Exports: a plain 0/1 image (1 = bad, pyFAI's convention; any cell bad = bad) as ``.npy`` or anything fabio
writes (``.edf``, ``.tif``), and CrystFEL geometry lines (``.geom``) that point at ``/mask/bitmask2d``
(the 2-D OR over cells written when the mask has cells, else ``/mask/bitmask``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError, ParameterError
from ..mask.bits import Bit, legend
from .atomic import atomic_output
from .provenance import Provenance, write_provenance

CONVENTION = "0 = good; any set bit = bad; bits 0-4 are NeXus NXmx pixel_mask bits"
IMAGE_SUFFIXES = (".npy", ".edf", ".tif", ".tiff")


def write_mask_file(path: str | os.PathLike, bitmask: np.ndarray, *, stage_bitmask: np.ndarray | None = None,
                    counts: dict[str, int] | None = None, outlier_frames: list[np.ndarray] = (),
                    features: list[dict[str, np.ndarray]] = (), provenance: Provenance | None = None) -> None:
    """Write the mask file atomically (see the module docstring for the layout)."""
    bitmask = np.asarray(bitmask, dtype=np.uint32)
    if bitmask.ndim not in (2, 3):
        raise ParameterError(f"bitmask must be (ny, nx) or (cells, ny, nx), got {bitmask.shape}")
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        group = handle.create_group("mask")
        group.attrs["creator"] = "braggsieve mask"
        dset = group.create_dataset("bitmask", data=bitmask, compression="gzip", shuffle=True)
        dset.attrs["legend"] = json.dumps(legend())
        dset.attrs["convention"] = CONVENTION
        for bit in Bit:
            dset.attrs[f"bit_{int(bit)}"] = bit.name
        if bitmask.ndim == 3:
            group.create_dataset("bitmask2d", data=np.bitwise_or.reduce(bitmask, axis=0), compression="gzip")
        if stage_bitmask is not None and stage_bitmask.shape[0] > 1:
            group.create_dataset("stage_bitmask", data=np.asarray(stage_bitmask, dtype=np.uint32),
                                 compression="gzip", shuffle=True)
        count_group = group.create_group("counts")
        for name, value in (counts or {}).items():
            count_group.attrs[name] = int(value)
        count_group.attrs["bad_pixels"] = int(np.count_nonzero(bitmask))
        for stage, frames in enumerate(outlier_frames):
            group.create_dataset(f"outlier_frames/stage_{stage}", data=np.asarray(frames, dtype=bool))
        for stage, maps in enumerate(features):
            for name, values in maps.items():
                group.create_dataset(f"features/stage_{stage}/{name}", data=values.astype(np.float32),
                                     compression="gzip")
        if provenance is not None:
            write_provenance(group.create_group("provenance"), provenance)


def read_mask_file(path: str | os.PathLike) -> tuple[np.ndarray, dict, dict[str, int]]:
    """(bitmask uint32, legend dict, counts dict) of a braggsieve mask file."""
    try:
        with h5py.File(path, "r") as handle:
            node = handle.get("mask/bitmask")
            if not isinstance(node, h5py.Dataset):
                raise InputError("not a braggsieve mask file (no /mask/bitmask)", path)
            counts = {k: int(v) for k, v in handle["mask/counts"].attrs.items()} if "mask/counts" in handle else {}
            return node[()], json.loads(node.attrs.get("legend", "{}")), counts
    except OSError as exc:
        raise InputError(f"cannot read HDF5 ({exc})", path) from None


def export_image(bitmask: np.ndarray, path: str | os.PathLike) -> None:
    """Write the 0/1 mask (uint8, 1 = bad; any cell bad = bad) as .npy or a fabio image (.edf, .tif)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ParameterError(f"cannot export a mask as {suffix or 'a file without suffix'}: use one of "
                             f"{', '.join(IMAGE_SUFFIXES)} or .geom", path)
    image = np.asarray(bitmask)
    image = (image.reshape((-1,) + image.shape[-2:]) != 0).any(axis=0).astype(np.uint8)
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, image)
        else:
            import fabio.edfimage
            import fabio.tifimage
            cls = fabio.edfimage.EdfImage if suffix == ".edf" else fabio.tifimage.TifImage
            cls(data=image, header={"mask_convention": "1 = bad"} if suffix == ".edf" else None).write(str(tmp))


def crystfel_mask_lines(mask_path: str | os.PathLike, has_cells: bool) -> str:
    """CrystFEL (>= 0.10) geometry lines that apply the mask file (CrystFEL: a pixel with any bad bit is
    not used; braggsieve's bits are all 'bad' bits, so goodbits = 0 and badbits = all)."""
    dataset = "/mask/bitmask2d" if has_cells else "/mask/bitmask"
    return (f"; bad-pixel mask made by braggsieve mask (0 = good, any set bit = bad)\n"
            f"mask0_file = {Path(mask_path).resolve()}\n"
            f"mask0_data = {dataset}\n"
            f"mask0_goodbits = 0x0\n"
            f"mask0_badbits = 0xffffffff\n")


def export_crystfel(mask_path: str | os.PathLike, has_cells: bool, path: str | os.PathLike) -> None:
    """Write :func:`crystfel_mask_lines` to ``path`` (to paste into, or include in, a .geom file)."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(crystfel_mask_lines(mask_path, has_cells))
