"""io.metadata: NXmx/NeXus and miniCBF header metadata, against the values the real files state."""
from __future__ import annotations

import bz2
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from braggsieve.errors import InputError
from braggsieve.io.metadata import marker_mask, read_detector_metadata

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
PILATUS = REAL / "grid_stills_pilatus3_6m" / "thau_3_2_0001.cbf.bz2"
AGBH = REAL / "powder" / "AgBehenate_228.hdf5"


@pytest.mark.realdata
def test_minicbf_header_of_the_pilatus_6m_stills():
    if not PILATUS.exists():
        pytest.skip("real Pilatus 6M stills not present")
    meta = read_detector_metadata(PILATUS)
    assert meta.wavelength_m == pytest.approx(0.96859e-10, rel=1e-12)
    assert meta.distance_m == pytest.approx(0.351, rel=1e-12)
    assert meta.beam_center_px == pytest.approx((1261.61, 1306.96))
    assert meta.pixel_size_m == pytest.approx((172e-6, 172e-6))
    assert meta.saturation == 115897
    assert meta.detector_name.startswith("PILATUS3 6M")
    assert meta.has_geometry and meta.pixel_mask is None  # the markers come from the frames (FrameSource)
    # the same numbers through fabio's own header parser
    header = fabio.open(str(PILATUS)).header["_array_data.header_contents"]
    assert "Beam_xy (1261.61, 1306.96) pixels" in header


@pytest.mark.realdata
def test_nexus_metadata_of_the_agbehenate_file_with_unitless_millimetres():
    if not AGBH.exists():
        pytest.skip("real AgBehenate NeXus file not present")
    meta = read_detector_metadata(AGBH)
    with h5py.File(AGBH) as handle:  # independent record of the same set-up, in pixels and mm
        extra = handle["/entry/instrument/15ID-D metadata"]
        centre_px = (extra["pin_ccd_center_x_pixel"][0], extra["pin_ccd_center_y_pixel"][0])
        sdd_mm = extra["SDD"][0]
        wavelength_a = extra["wavelength"][0]
    assert meta.beam_center_px == pytest.approx(centre_px, abs=1e-3)
    assert meta.distance_m == pytest.approx(sdd_mm * 1e-3)
    assert meta.pixel_size_m == pytest.approx((172e-6, 172e-6))
    assert meta.wavelength_m == pytest.approx(wavelength_a * 1e-10)


def test_nxmx_units_energy_and_per_cell_pixel_mask(tmp_path):
    path = tmp_path / "nx.h5"
    with h5py.File(path, "w") as handle:
        det = handle.create_group("/entry/instrument/jf")
        det.attrs["NX_class"] = "NXdetector"
        det["distance"] = 120.0
        det["distance"].attrs["units"] = "mm"
        for axis in "xy":
            det[f"{axis}_pixel_size"] = 75.0
            det[f"{axis}_pixel_size"].attrs["units"] = "um"
        det["beam_center_x"] = 1.5
        det["beam_center_x"].attrs["units"] = "mm"
        det["beam_center_y"] = 0.75
        det["beam_center_y"].attrs["units"] = "mm"
        det["saturation_value"] = 4000
        mask = np.zeros((2, 4, 5), np.uint32)
        mask[1, 2, 3] = 8
        det["pixel_mask"] = mask
        handle["/entry/instrument/beam/incident_energy"] = 12.4
        handle["/entry/instrument/beam/incident_energy"].attrs["units"] = "keV"
    meta = read_detector_metadata(path)
    assert meta.distance_m == pytest.approx(0.12)
    assert meta.pixel_size_m == pytest.approx((75e-6, 75e-6))
    assert meta.beam_center_px == pytest.approx((20.0, 10.0))
    assert meta.wavelength_m == pytest.approx(12.398419843320026 / 12.4 * 1e-10)
    assert meta.saturation == 4000
    assert meta.pixel_mask.sum() == 1 and meta.pixel_mask[2, 3]


def test_unknown_units_and_formats_without_metadata(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as handle:
        det = handle.create_group("/entry/instrument/detector")
        det["distance"] = 3.0
        det["distance"].attrs["units"] = "furlong"
    with pytest.raises(InputError, match="furlong"):
        read_detector_metadata(path)
    edf = tmp_path / "plain.edf"
    fabio.edfimage.EdfImage(data=np.zeros((3, 3), np.float32)).write(str(edf))
    meta = read_detector_metadata(edf)
    assert not meta.has_geometry and meta.wavelength_m is None


def test_minicbf_header_read_from_compressed_file_without_decoding_the_image(tmp_path):
    header = ("# Detector: PILATUS 1M, S/N 10-0000\r\n# Pixel_size 172e-6 m x 150e-6 m\r\n"
              "# Wavelength 1.2 A\r\n# Detector_distance 250.0 mm\r\n# Beam_xy (500.5, 300.25) pixels\r\n")
    image = fabio.cbfimage.CbfImage(data=np.arange(12, dtype=np.int32).reshape(3, 4))
    image.header["_array_data.header_contents"] = header
    plain = tmp_path / "h.cbf"
    image.write(str(plain))
    packed = tmp_path / "h.cbf.bz2"
    packed.write_bytes(bz2.compress(plain.read_bytes()))
    for path in (plain, packed):
        meta = read_detector_metadata(path)
        assert meta.pixel_size_m == pytest.approx((150e-6, 172e-6))  # (slow, fast): "X m x Y m" is fast first
        assert meta.distance_m == pytest.approx(0.25) and meta.wavelength_m == pytest.approx(1.2e-10)
        assert meta.beam_center_px == (500.5, 300.25) and meta.saturation is None


def test_marker_mask_follows_the_detector_conventions():
    frame = np.array([[0, -1, -2, 5]], np.int32)
    np.testing.assert_array_equal(marker_mask(frame), [[False, True, True, False]])
    eiger = np.array([[0xFFFFFFFF, 3]], np.uint32)
    np.testing.assert_array_equal(marker_mask(eiger), [[True, False]])
    assert marker_mask(np.ones((2, 2), np.float32)) is None
    assert marker_mask(np.ones((2, 2), np.int32)) is None
