"""``braggsieve poni FILE -o out.poni``: geometry from NXmx and miniCBF headers, checked with pyFAI."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from braggsieve.cli import main
from braggsieve.geometry import get_detector, read_poni, two_theta

pyFAI = pytest.importorskip("pyFAI")
from pyFAI.geometry import Geometry  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
STILL = REAL / "grid_stills_pilatus3_6m" / "thau_3_2_0001.cbf.bz2"


def _nxmx(path, shape=(2, 40, 60), beam_center=True, wavelength=True):
    """A small NXmx file: 100 um x 150 um pixels, distance 250 mm, beam (x, y) = (30.5, 12.25) px."""
    with h5py.File(path, "w") as handle:
        handle["/entry/data/data"] = np.zeros(shape, dtype=np.uint16)
        detector = handle.create_group("/entry/instrument/detector")
        detector.attrs["NX_class"] = "NXdetector"
        for name, value, units in (("distance", 250.0, "mm"), ("x_pixel_size", 150e-6, "m"),
                                   ("y_pixel_size", 100e-6, "m")):
            detector[name] = value
            detector[name].attrs["units"] = units
        if beam_center:
            detector["beam_center_x"], detector["beam_center_y"] = 30.5, 12.25
        if wavelength:
            handle["/entry/instrument/beam/incident_wavelength"] = 0.8
            handle["/entry/instrument/beam/incident_wavelength"].attrs["units"] = "angstrom"
    return path


def test_pilatus6m_still_header_gives_pyfai_fit2d_geometry(tmp_path, capsys):
    if not STILL.exists():
        pytest.skip("real data absent")
    out = tmp_path / "thau.poni"
    assert main(["poni", str(STILL), "-o", str(out)]) == 0
    assert "pilatus6m" in capsys.readouterr().out
    poni = read_poni(out)
    assert poni.detector is get_detector("pilatus6m")
    reference = Geometry(detector=pyFAI.detector_factory("Pilatus6M"), wavelength=0.96859e-10)
    reference.setFit2D(351.0, 1261.61, 1306.96)
    loaded = pyFAI.load(str(out))  # pyFAI reads our file
    for field in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert getattr(poni, field) == pytest.approx(getattr(reference, field), rel=1e-12, abs=1e-15)
        assert getattr(loaded, field) == getattr(poni, field)
    assert type(loaded.detector).__name__ == "Pilatus6M"
    # the first pixel's centre, 1261.11 and 1306.46 pixels from the beam, at 0.351 m: closed form, untilted
    radius = np.hypot(1261.11 * 172e-6, 1306.46 * 172e-6)
    assert two_theta(poni)[0, 0] == pytest.approx(np.arctan(radius / 0.351), rel=1e-12)


def test_nxmx_header_and_overrides(tmp_path):
    source = _nxmx(tmp_path / "run.h5")
    out = tmp_path / "run.poni"
    assert main(["poni", str(source), "-o", str(out)]) == 0
    poni = read_poni(out)
    assert poni.detector.name == "generic" and poni.detector.shape == (40, 60)
    assert poni.detector.pixel_size == (100e-6, 150e-6)
    assert poni.dist == pytest.approx(0.25) and poni.wavelength == pytest.approx(0.8e-10)
    assert poni.poni1 == pytest.approx(12.25 * 100e-6) and poni.poni2 == pytest.approx(30.5 * 150e-6)
    assert main(["poni", str(source), "-o", str(out), "--distance", "300", "--wavelength", "1.5",
                 "--beam-center", "1", "2"]) == 0
    poni = read_poni(out)
    assert (poni.dist, poni.wavelength) == (pytest.approx(0.3), pytest.approx(1.5e-10))
    assert (poni.poni1, poni.poni2) == (pytest.approx(2 * 100e-6), pytest.approx(1 * 150e-6))


def test_registry_detector_matched_from_shape_and_pixel_size(tmp_path):
    source = tmp_path / "p1m.h5"
    _nxmx(source, shape=(1, 1043, 981))
    with h5py.File(source, "a") as handle:
        for axis in "xy":
            handle[f"/entry/instrument/detector/{axis}_pixel_size"][()] = 172e-6
    assert main(["poni", str(source), "-o", str(tmp_path / "p.poni")]) == 0
    assert read_poni(tmp_path / "p.poni").detector is get_detector("pilatus1m")


def test_missing_beam_centre_is_a_one_line_error_without_output(tmp_path, capsys):
    source = _nxmx(tmp_path / "nobeam.h5", beam_center=False)
    out = tmp_path / "nobeam.poni"
    assert main(["poni", str(source), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "beam centre (--beam-center)" in err and str(source) in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob("*.part-*"))
    assert main(["poni", str(source), "-o", str(out), "--beam-center", "10", "20"]) == 0
    assert out.exists()


def test_missing_wavelength_writes_a_poni_without_one(tmp_path, caplog):
    source = _nxmx(tmp_path / "nowl.h5", wavelength=False)
    assert main(["poni", str(source), "-o", str(tmp_path / "g.poni")]) == 0
    assert read_poni(tmp_path / "g.poni").wavelength is None
    assert "states no wavelength" in caplog.text
