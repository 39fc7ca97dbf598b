"""PONI files: read what pyFAI writes, have pyFAI read what we write, round trips, bad files, beam centres."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braggsieve.errors import InputError
from braggsieve.geometry import Detector, Poni, get_detector, read_poni, two_theta, write_poni

pyFAI = pytest.importorskip("pyFAI")
from pyFAI.geometry import Geometry  # noqa: E402
from pyFAI.io.ponifile import PoniFile  # noqa: E402

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
PARAMS = dict(dist=0.1234, poni1=0.0456, poni2=0.0789, rot1=0.012, rot2=-0.034, rot3=0.56, wavelength=0.98e-10)
FIELDS = ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength")


def _same_position(ours: Poni, geometry) -> None:
    for field in FIELDS:
        assert getattr(ours, field) == getattr(geometry, field), field


@pytest.mark.parametrize("pyfai_detector", ["Pilatus1M", "Eiger4M", "Jungfrau4M"])
def test_reads_pyfai_v21_files_of_registry_detectors(tmp_path, pyfai_detector):
    geometry = Geometry(detector=pyFAI.detector_factory(pyfai_detector), **PARAMS)
    geometry.save(tmp_path / "g.poni")
    assert "poni_version: 2.1" in (tmp_path / "g.poni").read_text()
    poni = read_poni(tmp_path / "g.poni")
    _same_position(poni, geometry)
    assert poni.detector is get_detector(pyfai_detector)


@pytest.mark.parametrize("orientation", [1, 2, 3, 4])
def test_reads_pyfai_generic_detector_with_orientation(tmp_path, orientation):
    detector = pyFAI.detectors.Detector(1e-4, 2e-4, max_shape=(100, 150), orientation=orientation)
    geometry = Geometry(detector=detector, **PARAMS)
    geometry.save(tmp_path / "g.poni")
    poni = read_poni(tmp_path / "g.poni")
    _same_position(poni, geometry)
    assert poni.detector.shape == (100, 150) and poni.detector.pixel_size == (1e-4, 2e-4)
    assert poni.detector.orientation == orientation
    np.testing.assert_allclose(two_theta(poni), geometry.center_array(unit="2th_rad", scale=False), rtol=1e-12)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_reads_pyfai_versions_1_2_and_3(tmp_path, version):
    geometry = Geometry(detector=pyFAI.detectors.Detector(1.72e-4, 1.72e-4, max_shape=(40, 50)), **PARAMS)
    ponifile = PoniFile(geometry)
    ponifile.API_VERSION = version
    with open(tmp_path / "g.poni", "w") as handle:
        ponifile.write(handle)
    assert f"poni_version: {version}" in (tmp_path / "g.poni").read_text()
    poni = read_poni(tmp_path / "g.poni")
    _same_position(poni, geometry)
    assert poni.detector.pixel_size == (1.72e-4, 1.72e-4)


@pytest.mark.parametrize("name", ["pilatus1m", "jungfrau4m", "agipd1m", "generic"])
def test_pyfai_reads_ours_and_round_trip(tmp_path, name):
    detector = Detector.generic((64, 48), (1e-4, 1.5e-4)) if name == "generic" else get_detector(name)
    poni = Poni(**PARAMS, detector=detector)
    write_poni(poni, tmp_path / "ours.poni")
    assert read_poni(tmp_path / "ours.poni") == poni
    geometry = pyFAI.load(str(tmp_path / "ours.poni"))
    _same_position(poni, geometry)
    assert (geometry.detector.pixel1, geometry.detector.pixel2) == detector.pixel_size
    assert tuple(geometry.detector.shape) == detector.shape
    if detector.pyfai_name:
        assert type(geometry.detector).__name__ == detector.pyfai_name
    if not detector.multipanel:
        np.testing.assert_allclose(two_theta(poni), geometry.center_array(unit="2th_rad", scale=False),
                                   rtol=1e-12)


def test_poni_without_wavelength_round_trips(tmp_path):
    poni = Poni(**{**PARAMS, "wavelength": None}, detector=get_detector("pilatus1m"))
    write_poni(poni, tmp_path / "g.poni")
    assert read_poni(tmp_path / "g.poni") == poni


def test_real_ceo2_poni_v1():
    path = REAL / "powder" / "CeO2_Pilatus1M.poni"
    if not path.exists():
        pytest.skip("real data absent")
    poni = read_poni(path)
    _same_position(poni, pyFAI.load(str(path)))
    assert poni.detector.pixel_size == (172e-6, 172e-6) and poni.detector.shape is None
    assert poni.for_shape((1043, 981)).detector.shape == (1043, 981)


GOOD = """poni_version: 2
Detector: Detector
Detector_config: {"pixel1": 1e-4, "pixel2": 1e-4, "max_shape": [10, 10]}
Distance: 0.1
Poni1: 0.01
Poni2: 0.02
Rot1: 0
Rot2: 0
Rot3: 0
Wavelength: 1e-10
"""


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("Poni1: 0.01\n", ""), "missing field 'Poni1'"),
    (lambda t: t.replace("Distance: 0.1", "Distance: 0,1"), "'distance' is not a number: '0,1'"),
    (lambda t: t.replace("Rot2: 0", "Rot2: nan"), "'rot2' is not finite"),
    (lambda t: t.replace("Distance: 0.1", "Distance: -0.1"), "'Distance' must be positive"),
    (lambda t: t.replace('{"pixel1"', '{pixel1"'), "'Detector_config' is not valid JSON"),
    (lambda t: t.replace('"pixel1": 1e-4, ', ""), "missing field 'PixelSize1'"),
    (lambda t: t.replace('"max_shape": [10, 10]', '"max_shape": [10]'), "max_shape must be two positive"),
    (lambda t: t.replace('"max_shape"', '"splineFile": "d.spline", "max_shape"'), "spline"),
    (lambda t: t.replace('"max_shape"', '"orientation": 7, "max_shape"'), "orientation must be"),
    (lambda t: "just some text\n", "not a PONI file"),
])
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "bad.poni"
    assert read_poni(_write(path, GOOD)).detector.shape == (10, 10)
    with pytest.raises(InputError) as info:
        read_poni(_write(path, edit(GOOD)))
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read PONI file"):
        read_poni(tmp_path / "absent.poni")


def _write(path, text):
    path.write_text(text)
    return path


def test_from_beam_center_agrees_with_pyfai_fit2d():
    """Pilatus 6M stills header: Beam_xy (1261.61, 1306.96) px, distance 0.351 m, wavelength 0.96859 A."""
    detector = get_detector("pilatus6m")
    poni = Poni.from_beam_center(detector, 0.351, (1261.61, 1306.96), 0.96859e-10)
    reference = Geometry(detector=pyFAI.detector_factory("Pilatus6M"), wavelength=0.96859e-10)
    reference.setFit2D(351.0, 1261.61, 1306.96)
    for field in FIELDS:
        assert getattr(poni, field) == pytest.approx(getattr(reference, field), rel=1e-12, abs=1e-15), field
    ours_as_pyfai = Geometry(detector=pyFAI.detector_factory("Pilatus6M"),
                             **{f: getattr(poni, f) for f in FIELDS})
    fit2d = ours_as_pyfai.getFit2D()
    assert fit2d["centerX"] == pytest.approx(1261.61, rel=1e-12)
    assert fit2d["centerY"] == pytest.approx(1306.96, rel=1e-12)
    assert fit2d["directDist"] == pytest.approx(351.0, rel=1e-12)
    # the beam hits the middle of pixel (row 1306, column 1261) at 2theta ~ 0
    assert two_theta(poni)[1306, 1261] < 1e-3


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dist=st.floats(1e-3, 10.0), poni=st.tuples(*[st.floats(-1.0, 1.0)] * 2),
       rot=st.tuples(*[st.floats(-np.pi, np.pi)] * 3),
       wavelength=st.none() | st.floats(1e-12, 1e-8),
       detector=st.sampled_from(["eiger4m", "jungfrau4m", "cspad_cheetah", "generic"]),
       orientation=st.sampled_from([1, 2, 3, 4]))
def test_any_poni_round_trips_exactly(tmp_path, dist, poni, rot, wavelength, detector, orientation):
    if detector == "generic":
        detector = Detector.generic((7, 9), (1.1e-4, 7.3e-5), orientation=orientation)
    else:
        detector = get_detector(detector)
    original = Poni(dist, *poni, *rot, wavelength, detector)
    write_poni(original, tmp_path / "any.poni")
    assert read_poni(tmp_path / "any.poni") == original


@pytest.mark.parametrize("seed", range(4))
def test_beam_center_of_tilted_geometries_agrees_with_pyfai_getfit2d(seed):
    rng = np.random.default_rng(seed)
    params = dict(dist=rng.uniform(0.1, 1.0), poni1=rng.uniform(0, 0.2), poni2=rng.uniform(0, 0.2),
                  rot1=rng.uniform(-0.5, 0.5), rot2=rng.uniform(-0.5, 0.5), rot3=rng.uniform(-3, 3),
                  wavelength=1e-10)
    poni = Poni(**params, detector=get_detector("pilatus1m"))
    fit2d = Geometry(detector=pyFAI.detector_factory("Pilatus1M"), **params).getFit2D()
    assert poni.beam_center_px() == pytest.approx((fit2d["centerX"], fit2d["centerY"]), rel=1e-12)
    assert poni.beam_distance_m() * 1e3 == pytest.approx(fit2d["directDist"], rel=1e-12)
    # the direct beam's pixel sees 2theta = 0 at its own position: round trip through from_beam_center
    untilted = Poni.from_beam_center(poni.detector, 0.3, (12.5, 40.25), 1e-10)
    assert untilted.beam_center_px() == pytest.approx((12.5, 40.25), rel=1e-15)
    assert untilted.beam_distance_m() == pytest.approx(0.3, rel=1e-15)


def test_poni_with_numpy_scalars_round_trips(tmp_path):
    """Geometry computed with numpy (e.g. a fit) writes plain numbers that both readers accept."""
    import numpy as np

    from braggsieve.geometry.detectors import get_detector
    from braggsieve.geometry.poni import Poni, read_poni, write_poni

    poni = Poni(dist=np.float64(0.1), poni1=np.float32(0.05), poni2=0.04, rot1=np.float64(0.01), rot2=0, rot3=0,
                wavelength=np.float64(1e-10), detector=get_detector("pilatus1m"))
    path = tmp_path / "numpy.poni"
    write_poni(poni, path)
    assert "np." not in path.read_text()
    back = read_poni(path)
    assert back.dist == 0.1 and back.poni1 == float(np.float32(0.05)) and back.wavelength == 1e-10
    import pyFAI

    assert abs(pyFAI.load(str(path)).dist - 0.1) < 1e-15
