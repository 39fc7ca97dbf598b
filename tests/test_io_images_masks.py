"""io.images and io.masks: per-pixel maps and bad-pixel masks from every supported kind of file."""
from __future__ import annotations

import os

import fabio
import h5py
import numpy as np
import pytest

from braggsieve.errors import InputError, ParameterError
from braggsieve.io.images import load_image
from braggsieve.io.masks import load_mask

RNG = np.random.default_rng(3)


def test_images_from_npy_edf_tiff_and_hdf5(tmp_path):
    image = RNG.normal(100, 5, (6, 7)).astype(np.float32)
    np.save(tmp_path / "d.npy", image)
    fabio.edfimage.EdfImage(data=image).write(str(tmp_path / "d.edf"))
    fabio.tifimage.TifImage(data=image).write(str(tmp_path / "d.tif"))
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["/calib/dark"] = image
        handle["/calib/flat"] = np.ones((6, 7))
    for name in ("d.npy", "d.edf", "d.tif"):
        np.testing.assert_array_equal(load_image(tmp_path / name, shape=(6, 7)), image)
    np.testing.assert_array_equal(load_image(f"{tmp_path / 'd.h5'}::/calib/dark"), image)
    np.testing.assert_array_equal(load_image(tmp_path / "d.h5", h5path="/calib/dark"), image)
    with pytest.raises(InputError, match="several candidate datasets"):
        load_image(tmp_path / "d.h5")


def test_a_stack_of_frames_is_averaged(tmp_path):
    stack = RNG.integers(0, 50, (5, 4, 3)).astype(np.uint16)
    with h5py.File(tmp_path / "darks.h5", "w") as handle:
        handle["/entry/data/data"] = stack
    np.testing.assert_allclose(load_image(tmp_path / "darks.h5"), stack.mean(axis=0), rtol=1e-6)
    np.save(tmp_path / "one.npy", stack[:1])
    np.testing.assert_array_equal(load_image(tmp_path / "one.npy"), stack[0])


def test_image_shape_mismatch_and_unreadable_files(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match=r"small\.npy.*\(3, 3\).*\(4, 4\)"):
        load_image(tmp_path / "small.npy", shape=(4, 4), what="dark")
    (tmp_path / "junk.edf").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match=r"junk\.edf"):
        load_image(tmp_path / "junk.edf")
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "nothing.npy")


def test_braggsieve_bitmask_any_bit_and_per_cell(tmp_path):
    bits = np.zeros((3, 4, 5), np.uint32)
    bits[0, 1, 1] = 1 << 4
    bits[2, 3, 4] = 1 << 20
    with h5py.File(tmp_path / "m.h5", "w") as handle:
        handle["/mask/bitmask"] = bits
        handle["/other"] = np.ones((4, 5))
    mask = load_mask(tmp_path / "m.h5", shape=(4, 5))
    assert mask.dtype == bool and mask.sum() == 2 and mask[1, 1] and mask[3, 4]
    cell2 = load_mask(tmp_path / "m.h5", cell=2)
    assert cell2.sum() == 1 and cell2[3, 4]
    with pytest.raises(ParameterError, match="cell 5"):
        load_mask(tmp_path / "m.h5", cell=5)
    with pytest.raises(InputError, match=r"m\.h5.*\(4, 5\).*\(5, 4\)"):
        load_mask(tmp_path / "m.h5", shape=(5, 4))


def test_nexus_pixel_mask_and_plain_images_nonzero_is_bad(tmp_path):
    pixel_mask = np.zeros((1, 4, 5), np.uint32)
    pixel_mask[0, 2, 2] = 2
    with h5py.File(tmp_path / "nx.h5", "w") as handle:
        handle["/entry/instrument/detector/pixel_mask"] = pixel_mask
        handle["/entry/data/data"] = np.zeros((2, 4, 5))
    mask = load_mask(tmp_path / "nx.h5")
    assert mask.shape == (4, 5) and mask.sum() == 1 and mask[2, 2]
    plain = np.zeros((4, 5), np.int8)
    plain[0, 0] = 1
    plain[3, 1] = -1
    fabio.edfimage.EdfImage(data=plain).write(str(tmp_path / "m.edf"))
    np.save(tmp_path / "m.npy", plain.astype(bool))
    for name in ("m.edf", "m.npy"):
        mask = load_mask(tmp_path / name, shape=(4, 5))
        np.testing.assert_array_equal(mask, plain != 0)


def test_truncated_mask_file_is_an_input_error(tmp_path):
    with h5py.File(tmp_path / "cut.h5", "w") as handle:
        handle["/mask/bitmask"] = np.zeros((200, 200), np.uint32)
    with open(tmp_path / "cut.h5", "r+b") as handle:
        handle.truncate(os.path.getsize(tmp_path / "cut.h5") // 2)
    with pytest.raises(InputError, match=r"cut\.h5"):
        load_mask(tmp_path / "cut.h5")
