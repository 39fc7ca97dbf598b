"""geometry.crystfel: the .geom file places every pixel where pyFAI (and our geometry layer) says it is.

The check re-implements CrystFEL's reading of a .geom (raw (fs, ss) -> corner + fs * fs_vector +
ss * ss_vector in pixels of ``res``, z = clen + coffset) and compares each pixel centre's scattering angle
with pyFAI's ``twoThetaArray`` on the same PONI, tilted or not.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from braggsieve.errors import InputError
from braggsieve.geometry import Detector, Poni, get_detector, two_theta
from braggsieve.geometry.crystfel import geom_text, read_geom, write_geom


def _parse(text):
    glob, panels = {}, {}
    for line in text.splitlines():
        line = line.split(";")[0].strip()
        if "=" not in line:
            continue
        key, value = (s.strip() for s in line.split("=", 1))
        if "/" in key:
            name, field = key.split("/")
            panels.setdefault(name, {})[field] = value
        else:
            glob[key] = value
    return glob, panels


def _vec(text):
    out = dict(x=0.0, y=0.0, z=0.0)
    for number, axis in re.findall(r"([+-][0-9.]+)([xyz])", text):
        out[axis] = float(number)
    return np.array([out["x"], out["y"], out["z"]])


def _crystfel_two_theta(text, shape):
    """2theta (rad) of every pixel centre as CrystFEL computes it from the .geom text."""
    glob, panels = _parse(text)
    res, clen = float(glob["res"]), float(glob["clen"])
    tth = np.full(shape, np.nan)
    for p in panels.values():
        ss0, ss1, fs0, fs1 = (int(p[k]) for k in ("min_ss", "max_ss", "min_fs", "max_fs"))
        ss, fs = np.mgrid[ss0:ss1 + 1, fs0:fs1 + 1]
        u, v = ss - ss0 + 0.5, fs - fs0 + 0.5  # CrystFEL's half pixel: the centre of pixel (ss, fs)
        corner = np.array([float(p["corner_x"]), float(p["corner_y"]), 0.0])
        xyz = corner[:, None, None] + _vec(p["fs"])[:, None, None] * v + _vec(p["ss"])[:, None, None] * u
        x, y = xyz[0] / res, xyz[1] / res
        z = clen + float(p.get("coffset", 0.0)) + xyz[2] / res
        tth[ss0:ss1 + 1, fs0:fs1 + 1] = np.arctan2(np.hypot(x, y), z)
    return tth


@pytest.mark.parametrize("rots", [(0.0, 0.0, 0.0), (0.05, -0.03, 0.2)])
def test_single_panel_matches_pyfai(rots):
    ai_mod = pytest.importorskip("pyFAI.integrator.azimuthal")
    import pyFAI.detectors
    shape, pixel = (300, 250), 75e-6
    poni = Poni(dist=0.12, poni1=0.011, poni2=0.0093, rot1=rots[0], rot2=rots[1], rot3=rots[2],
                wavelength=1.0e-10, detector=Detector.generic(shape, (pixel, pixel)))
    text = geom_text(poni, adu_per_photon=8)
    ai = ai_mod.AzimuthalIntegrator(dist=poni.dist, poni1=poni.poni1, poni2=poni.poni2, rot1=rots[0],
                                    rot2=rots[1], rot3=rots[2], wavelength=1e-10,
                                    detector=pyFAI.detectors.Detector(pixel, pixel, max_shape=shape))
    np.testing.assert_allclose(_crystfel_two_theta(text, shape), ai.twoThetaArray(shape), rtol=0, atol=1e-6)  # pyFAI: float32
    glob, panels = _parse(text)
    assert glob["peak_list"] == "/entry_1/result_1" and glob["peak_list_type"] == "cxi"
    assert glob["data"] == "/entry_1/data_1/data" and glob["dim0"] == "%" and glob["adu_per_photon"] == "8"
    assert abs(float(glob["photon_energy"]) - 12398.42) < 0.01
    if rots == (0.0, 0.0, 0.0):  # x = -x2, y = x1 (geometry.crystfel docstring), no half-pixel term
        assert float(panels["p0"]["corner_x"]) == pytest.approx(poni.poni2 / pixel)
        assert float(panels["p0"]["corner_y"]) == pytest.approx(-poni.poni1 / pixel)
        assert panels["p0"]["fs"] == "-1.000000x +0.000000y" and "coffset" not in panels["p0"]


def test_multi_panel_detector_has_one_panel_each_and_matches_our_geometry():
    detector = get_detector("cspad")
    poni = Poni(dist=0.1, poni1=0.0, poni2=0.0, rot1=0.0, rot2=0.0, rot3=0.0, wavelength=1.3e-10,
                detector=detector)
    text = geom_text(poni)
    _, panels = _parse(text)
    assert len(panels) == len(detector.panels) == 64  # 32 two-ASIC sensors, one panel per ASIC
    np.testing.assert_allclose(_crystfel_two_theta(text, detector.shape), two_theta(poni), atol=1e-9)


def test_round_trip_of_an_untilted_geometry(tmp_path):
    detector = get_detector("eiger4m")
    poni = Poni.from_beam_center(detector, 0.15, (1030.3, 1100.7), 0.9e-10)
    write_geom(poni, tmp_path / "d.geom")
    back = read_geom(tmp_path / "d.geom", detector)
    for name in ("dist", "poni1", "poni2", "wavelength"):
        assert getattr(back, name) == pytest.approx(getattr(poni, name), rel=1e-7)
    assert back.detector.shape == detector.shape
    generic = read_geom(tmp_path / "d.geom")
    assert generic.detector.shape == detector.shape and generic.detector.pixel_size == pytest.approx((75e-6,) * 2)


def test_import_refuses_what_it_cannot_represent(tmp_path):
    tilted = Poni(dist=0.1, poni1=0.01, poni2=0.01, rot1=0.1, rot2=0.0, rot3=0.0, wavelength=None,
                  detector=Detector.generic((100, 100), (1e-4, 1e-4)))
    write_geom(tilted, tmp_path / "t.geom")
    with pytest.raises(InputError, match="t.geom"):
        read_geom(tmp_path / "t.geom")
    write_geom(Poni(dist=0.1, poni1=0, poni2=0, rot1=0, rot2=0, rot3=0, wavelength=None,
                    detector=get_detector("cspad")), tmp_path / "m.geom")
    with pytest.raises(InputError, match="single-panel"):
        read_geom(tmp_path / "m.geom")
    with pytest.raises(InputError, match="nothing.geom"):
        read_geom(tmp_path / "nothing.geom")
