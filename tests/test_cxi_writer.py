"""io.cxi: the CXI layout CrystFEL reads (nPeaks, peakXPosRaw = column, ...), images linked or copied."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from braggsieve.engine.records import PEAK_FIELDS, PeakList
from braggsieve.io.cxi import CxiWriter, ImageRef, read_cxi
from braggsieve.io.provenance import Provenance, read_provenance

SHAPE = (12, 10)


def _peaks(counts, seed=0):
    rng = np.random.default_rng(seed)
    total = int(sum(counts))
    fields = {name: (rng.integers(1, 50, total) if dtype.kind == "i" else rng.uniform(0, 9, total)).astype(dtype)
              for name, dtype in PEAK_FIELDS.items()}
    frame_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return PeakList(frame_ptr=frame_ptr, **fields)


def _frames(n, seed=1):
    return np.random.default_rng(seed).integers(0, 1000, (n, *SHAPE)).astype(np.uint32)


def test_peak_arrays_have_crystfel_layout_and_round_trip(tmp_path):
    first, second = _peaks([2, 0, 3]), _peaks([7, 1], seed=5)
    out = tmp_path / "run.cxi"
    writer = CxiWriter(out, SHAPE, np.uint32, images="none")
    writer.append(first)
    writer.append(second)  # wider than the first batch: the arrays grow
    writer.close(Provenance.start({"PeakParams": {"cutoff_peak": 4.0}}, inputs=["in.h5"]))
    with h5py.File(out, "r") as f:
        result = f["/entry_1/result_1"]
        assert result["nPeaks"].dtype == np.int32
        assert result["nPeaks"][()].tolist() == [2, 0, 3, 7, 1]
        for name in ("peakXPosRaw", "peakYPosRaw", "peakTotalIntensity", "peakSNR"):
            assert result[name].dtype == np.float32 and result[name].shape == (5, 7)
            assert result[name].compression is None  # CrystFEL needs no filter plugin
        x, y = result["peakXPosRaw"][()], result["peakYPosRaw"][()]
        np.testing.assert_array_equal(x[0, :2], first.col[:2])
        np.testing.assert_array_equal(y[2, :3], first.row[2:])
        np.testing.assert_array_equal(x[3, :7], second.col[:7])
        assert not x[1].any() and not x[0, 2:].any() and not y[4, 1:].any()  # zero padding
        assert f["cxi_version"][()] == 160
        assert read_provenance(f["/entry_1/process_1"]).parameters["PeakParams"]["cutoff_peak"] == 4.0
    back = read_cxi(out)
    np.testing.assert_array_equal(back.frame_ptr, [0, 2, 2, 5, 12, 13])
    for field in ("row", "col", "intensity", "snr", "sigma", "npix", "maximum", "background", "resolution"):
        np.testing.assert_array_equal(getattr(back, field),
                                      np.concatenate([getattr(first, field), getattr(second, field)]))


def test_gzip_peak_arrays(tmp_path):
    out = tmp_path / "run.cxi"
    writer = CxiWriter(out, SHAPE, np.uint32, images="none", compression="gzip")
    writer.append(_peaks([3, 4]))
    writer.close()
    with h5py.File(out, "r") as f:
        assert f["/entry_1/result_1/peakXPosRaw"].compression == "gzip"
    assert read_cxi(out).npeaks.tolist() == [3, 4]


def test_single_hdf5_source_is_an_external_link_relative_to_the_output(tmp_path, monkeypatch):
    frames = _frames(4)
    (tmp_path / "raw").mkdir()
    (tmp_path / "out").mkdir()
    with h5py.File(tmp_path / "raw" / "run.h5", "w") as f:
        f["entry/data/data"] = frames
    writer = CxiWriter(tmp_path / "out" / "run.cxi", SHAPE, np.uint32)
    src = str(tmp_path / "raw" / "run.h5")
    writer.append(_peaks([1, 2]), refs=[ImageRef(src, "/entry/data/data", i) for i in range(2)])
    writer.append(_peaks([0, 5]), refs=[ImageRef(src, "/entry/data/data", i) for i in range(2, 4)])
    writer.close()
    monkeypatch.chdir("/")
    with h5py.File(tmp_path / "out" / "run.cxi", "r") as f:
        link = f["entry_1/data_1"].get("data", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and link.filename == os.path.join("..", "raw", "run.h5")
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], frames)


def test_frame_subsets_of_several_files_become_a_virtual_dataset(tmp_path, monkeypatch):
    a, b = _frames(5, 2), _frames(3, 3)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["entry/data/data"] = a
    with h5py.File(tmp_path / "data_1.h5", "w") as f:  # an Eiger-like part behind a master's external link
        f["entry/data/data"] = b
    with h5py.File(tmp_path / "master.h5", "w") as f:
        f["entry/data/data_000001"] = h5py.ExternalLink("data_1.h5", "/entry/data/data")
    refs = [ImageRef(str(tmp_path / "a.h5"), "/entry/data/data", i) for i in (1, 2, 4)]
    refs += [ImageRef(str(tmp_path / "master.h5"), "/entry/data/data_000001", i) for i in (0, 1, 2)]
    writer = CxiWriter(tmp_path / "run.cxi", SHAPE, np.uint32)
    writer.append(_peaks([1] * 6), refs=refs)
    writer.close()
    monkeypatch.chdir("/")
    with h5py.File(tmp_path / "run.cxi", "r") as f:
        data = f["entry_1/data_1/data"]
        assert data.is_virtual
        np.testing.assert_array_equal(data[()], np.concatenate([a[[1, 2, 4]], b]))


def test_copied_images_for_non_hdf5_inputs(tmp_path):
    frames = _frames(3).astype(np.int32)
    out = tmp_path / "run.cxi"
    writer = CxiWriter(out, SHAPE, np.int32, images="copy")
    writer.append(_peaks([1, 2]), frames=frames[:2])
    writer.append(_peaks([4]), frames=frames[2:])
    writer.close()
    with h5py.File(out, "r") as f:
        data = f["entry_1/data_1/data"]
        assert data.dtype == np.int32 and data.compression == "gzip" and data.chunks == (1, *SHAPE)
        np.testing.assert_array_equal(data[()], frames)
    with pytest.raises(ValueError):
        CxiWriter(tmp_path / "x.cxi", SHAPE, np.int32, images="copy").append(_peaks([1]))


def test_read_cxi_rejects_other_files(tmp_path):
    from braggsieve.errors import InputError
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a"] = 1
    with pytest.raises(InputError, match="x.h5"):
        read_cxi(tmp_path / "x.h5")
