"""Dense outputs: Eiger-like master + data files and CBF, read back with h5py and fabio."""
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from braggsieve.errors import ParameterError
from braggsieve.io.eiger_writer import EigerWriter, cbf_names, eiger_names, write_cbf_frames

INFO = {"distance": 0.2, "x_pixel_size": 75e-6, "y_pixel_size": 75e-6, "beam_center_x": 30.5,
        "beam_center_y": 20.25, "wavelength": 1.2e-10}


def test_eiger_layout(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 1000, (7, 40, 60)).astype(np.uint32)
    mask = np.zeros((40, 60), bool)
    mask[:, 13] = True
    with EigerWriter(tmp_path / "run_master.h5", (40, 60), np.uint32, nframes=7, frames_per_file=3,
                     instrument=INFO, pixel_mask=mask) as writer:
        writer.append(frames[:2])
        writer.append(frames[2:7])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_data_000001.h5", "run_data_000002.h5",
                                                          "run_data_000003.h5", "run_master.h5"]
    with h5py.File(tmp_path / "run_master.h5") as h5:
        np.testing.assert_array_equal(h5["entry/data/data"][()], frames)
        for k, part in enumerate((frames[:3], frames[3:6], frames[6:])):
            link = h5["entry/data"].get(f"data_{k + 1:06d}", getlink=True)
            assert isinstance(link, h5py.ExternalLink) and link.filename == f"run_data_{k + 1:06d}.h5"
            np.testing.assert_array_equal(h5[f"entry/data/data_{k + 1:06d}"][()], part)
            assert h5[f"entry/data/data_{k + 1:06d}"].attrs["image_nr_low"] == 3 * k + 1
        assert h5["entry/definition"][()] == b"NXmx"
        det = h5["entry/instrument/detector"]
        spec = det["detectorSpecific"]
        assert spec["nimages"][()] == 7 and spec["ntrigger"][()] == 1
        assert (spec["x_pixels_in_detector"][()], spec["y_pixels_in_detector"][()]) == (60, 40)
        np.testing.assert_array_equal(spec["pixel_mask"][()] != 0, mask)
        assert det["beam_center_x"][()] == 30.5 and det["beam_center_y"][()] == 20.25
        assert det["detector_distance"][()] == 0.2 and det["x_pixel_size"].attrs["units"] == b"m"
        assert h5["entry/instrument/beam/incident_wavelength"][()] == pytest.approx(1.2)
        assert det["bit_depth_image"][()] == 32


@pytest.mark.parametrize("virtual", [True, False])
def test_eiger_read_by_fabio_and_braggsieve(tmp_path, virtual):
    """FabIO's EigerImage (which counts every data* member of /entry/data) and braggsieve's own reader and NXmx
    metadata parser read the master file back."""
    fabio = pytest.importorskip("fabio")
    from braggsieve.io.frames import open_frames
    from braggsieve.io.metadata import read_detector_metadata

    frames = np.arange(4 * 8 * 9, dtype=np.uint16).reshape(4, 8, 9)
    with EigerWriter(tmp_path / "r_master.h5", (8, 9), np.uint16, nframes=4, frames_per_file=2, instrument=INFO,
                     virtual=virtual) as writer:
        writer.append(frames)
    image = fabio.open(str(tmp_path / "r_master.h5"))
    assert image.nframes == (8 if virtual else 4)
    np.testing.assert_array_equal(image.getframe(3).data, frames[3])
    source = open_frames([tmp_path / "r_master.h5"])
    assert source.nframes == 4
    meta = read_detector_metadata(tmp_path / "r_master.h5")
    assert meta.distance_m == pytest.approx(0.2) and meta.wavelength_m == pytest.approx(1.2e-10)
    assert meta.beam_center_px == pytest.approx((30.5, 20.25))
    assert meta.pixel_size_m == pytest.approx((75e-6, 75e-6))


def test_eiger_writer_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ParameterError, match="2 frames written, 5 announced"):
        with EigerWriter(tmp_path / "x_master.h5", (4, 5), np.uint16, nframes=5) as writer:
            writer.append(np.zeros((2, 4, 5), np.uint16))
    with pytest.raises(ParameterError, match="shape"):
        with EigerWriter(tmp_path / "x_master.h5", (4, 5), np.uint16, nframes=5) as writer:
            writer.append(np.zeros((2, 5, 4), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_names():
    master, data = eiger_names("out/scan", 2)
    assert master.name == "scan_master.h5" and [d.name for d in data] == ["scan_data_000001.h5",
                                                                           "scan_data_000002.h5"]
    assert [p.name for p in cbf_names("img.cbf", 2)] == ["img_00000.cbf", "img_00001.cbf"]
    assert [p.name for p in cbf_names("a/f{index:03d}.cbf", 2)] == ["f000.cbf", "f001.cbf"]


def test_cbf_frames(tmp_path):
    fabio = pytest.importorskip("fabio")
    frames = np.arange(2 * 6 * 8, dtype=np.uint32).reshape(2, 6, 8) * 1000
    names = write_cbf_frames(tmp_path / "f.cbf", [frames], 2, INFO)
    for name, frame in zip(names, frames):
        image = fabio.open(str(name))
        np.testing.assert_array_equal(image.data, frame.astype(np.int32))
        header = image.header["_array_data.header_contents"]
        assert "Detector_distance 0.20000 m" in header and "Wavelength 1.20000 A" in header
