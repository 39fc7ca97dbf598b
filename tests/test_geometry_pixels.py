"""Per-pixel maps against pyFAI's AzimuthalIntegrator on the same PONI, tilted geometries included."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from braggsieve.errors import ParameterError
from braggsieve.geometry import (Detector, Poni, chi, d_spacing, get_detector, lab_coordinates, polarization,
                                 q_nm, r_mm, radial_delta, radial_map, read_poni, solid_angle, two_theta)

pyFAI = pytest.importorskip("pyFAI")
from pyFAI.integrator.azimuthal import AzimuthalIntegrator  # noqa: E402


def _random_geometries(count, seed):
    """Seeded geometries: the beam anywhere on or off a 0.03 x 0.06 m detector, tilts up to 0.6 rad."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield dict(dist=rng.uniform(0.05, 1.0), poni1=rng.uniform(-0.01, 0.04), poni2=rng.uniform(-0.01, 0.07),
                   rot1=rng.uniform(-0.6, 0.6), rot2=rng.uniform(-0.6, 0.6), rot3=rng.uniform(-np.pi, np.pi),
                   wavelength=rng.uniform(0.3e-10, 2e-10))


GEOMETRIES = [dict(dist=0.2, poni1=0.012, poni2=0.021, rot1=0.0, rot2=0.0, rot3=0.0, wavelength=1e-10)]
GEOMETRIES += list(_random_geometries(6, seed=20260))


def _integrator(geometry, pyfai_detector):
    return AzimuthalIntegrator(detector=pyfai_detector, **geometry)


def _assert_angles_close(ours, theirs, what):
    """1e-6 relative, or 1e-9 rad absolute for angles near zero; chi compared modulo 2 pi."""
    diff = np.angle(np.exp(1j * (ours - theirs)))
    bad = np.abs(diff) > np.maximum(1e-6 * np.abs(theirs), 1e-9)
    assert not bad.any(), f"{what}: {bad.sum()} pixels differ, worst {np.abs(diff).max():.3g} rad"


def _assert_relative(ours, theirs, what, rtol=1e-6):
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0, err_msg=what)


CASES = [(g, 3) for g in GEOMETRIES] + [(GEOMETRIES[1], orientation) for orientation in (1, 2, 4)]


@pytest.mark.parametrize("geometry, orientation", CASES,
                         ids=lambda c: f"{c['rot1']:.2f},{c['rot2']:.2f},{c['rot3']:.2f}" if isinstance(c, dict)
                         else f"orientation{c}")
def test_maps_match_pyfai(geometry, orientation):
    shape, pixel = (150, 320), (2e-4, 1.8e-4)
    poni = Poni(**geometry, detector=Detector.generic(shape, pixel, orientation=orientation))
    ai = _integrator(geometry, pyFAI.detectors.Detector(*pixel, max_shape=shape, orientation=orientation))
    _assert_angles_close(two_theta(poni), ai.center_array(unit="2th_rad", scale=False), "2theta")
    _assert_angles_close(chi(poni), ai.center_array(unit="chi_rad", scale=False), "chi")
    _assert_relative(q_nm(poni), ai.center_array(unit="q_nm^-1"), "q")
    _assert_relative(r_mm(poni), ai.center_array(unit="r_mm"), "r")
    _assert_relative(radial_map(poni, "2th_deg"), ai.center_array(unit="2th_deg"), "2th_deg")
    # pyFAI computes the solid angle and polarisation in float32: compare to its precision
    _assert_relative(solid_angle(poni), ai.solidAngleArray(), "solid angle", rtol=2e-7)
    for factor, offset in ((0.95, 0.0), (-0.5, 0.3)):
        _assert_relative(polarization(poni, factor, offset), ai.polarization(factor=factor, axis_offset=offset),
                         "polarisation", rtol=2e-7)
    d_pyfai = 2 * np.pi / ai.center_array(unit="q_A^-1")
    _assert_relative(d_spacing(poni), d_pyfai, "d-spacing")


@pytest.mark.parametrize("unit", ["q_nm^-1", "2th_deg", "r_mm"])
def test_radial_delta_matches_pyfai(unit):
    geometry = GEOMETRIES[3]
    shape, pixel = (120, 200), (1e-4, 1.5e-4)
    poni = Poni(**geometry, detector=Detector.generic(shape, pixel))
    ai = _integrator(geometry, pyFAI.detectors.Detector(*pixel, max_shape=shape))
    ours = radial_delta(poni, unit)
    theirs = ai.array_from_unit(typ="delta", unit=unit)
    centre = radial_map(poni, unit)
    # pyFAI's corner positions are float32: their values carry ~1e-7 relative error
    assert np.all(np.abs(ours - theirs) <= 1e-6 * np.abs(centre)), unit
    assert np.all(ours > 0)


@pytest.mark.parametrize("name", ["pilatus1m"])
def test_registry_detector_maps_match_pyfai_class(name):
    """Full-size registry detector against pyFAI's own detector class, beam on the detector, tilted."""
    geometry = dict(dist=0.15, poni1=0.08, poni2=0.075, rot1=0.02, rot2=-0.015, rot3=0.1, wavelength=0.9e-10)
    poni = Poni(**geometry, detector=get_detector(name))
    ai = _integrator(geometry, pyFAI.detectors.detector_factory(get_detector(name).pyfai_name))
    _assert_angles_close(two_theta(poni), ai.center_array(unit="2th_rad", scale=False), "2theta")
    _assert_relative(q_nm(poni), ai.center_array(unit="q_nm^-1"), "q")


def _pyfai_detector_from_panels(detector):
    corners = np.zeros(detector.shape + (4, 3))
    for k, offset in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):  # pyFAI's corner order
        corners[..., k, 1], corners[..., k, 2] = detector.pixel_positions(offset)
    pyfai_detector = pyFAI.detectors.Detector(*detector.pixel_size, max_shape=detector.shape)
    pyfai_detector.set_pixel_corners(corners)
    return pyfai_detector


@pytest.mark.parametrize("name", ["agipd1m"])
def test_multipanel_maps_match_pyfai_with_pixel_corners(name):
    """pyFAI given our pixel corners computes the same angles; pyFAI stores corners in float32, so positions
    carry ~2e-8 m of rounding: tolerances follow from that."""
    detector = get_detector(name)
    geometry = dict(dist=0.12, poni1=0.11, poni2=0.10, rot1=0.05, rot2=-0.03, rot3=0.2, wavelength=1.2e-10)
    poni = Poni(**geometry, detector=detector)
    ai = _integrator(geometry, _pyfai_detector_from_panels(detector))
    position_error = 3e-8  # m
    np.testing.assert_allclose(two_theta(poni), ai.center_array(unit="2th_rad", scale=False), rtol=0,
                               atol=position_error / geometry["dist"])
    radius = r_mm(poni) * 1e-3
    diff = np.angle(np.exp(1j * (chi(poni) - ai.center_array(unit="chi_rad", scale=False))))
    assert np.all(np.abs(diff) <= position_error / radius)
    _assert_relative(solid_angle(poni), ai.solidAngleArray(), "solid angle", rtol=1e-6)


def test_untilted_geometry_closed_form():
    """Without tilt, r is the in-plane distance from the PONI and 2theta = atan(r / dist)."""
    detector = Detector.generic((50, 60), (1e-4, 1e-4))
    poni = Poni(0.1, 0.002, 0.003, 0.0, 0.0, 0.0, 1e-10, detector)
    rows, cols = np.mgrid[0:50, 0:60]
    r = np.hypot((rows + 0.5) * 1e-4 - 0.002, (cols + 0.5) * 1e-4 - 0.003)
    np.testing.assert_allclose(r_mm(poni), r * 1e3, rtol=1e-12)
    np.testing.assert_allclose(two_theta(poni), np.arctan(r / 0.1), rtol=1e-12)
    np.testing.assert_allclose(solid_angle(poni), (0.1 / np.hypot(r, 0.1)) ** 3, rtol=1e-12)


def test_errors():
    detector = Detector.generic((10, 10), (1e-4, 1e-4))
    poni = Poni(0.1, 0.0, 0.0, 0.0, 0.0, 0.0, None, detector)
    with pytest.raises(ParameterError, match="wavelength"):
        q_nm(poni)
    with pytest.raises(ParameterError, match="unknown radial unit"):
        radial_map(poni, "q_A^-1")
    with pytest.raises(ParameterError, match="polarisation factor"):
        polarization(poni, 1.5)
    with pytest.raises(ParameterError, match="shape is unknown"):
        two_theta(Poni(0.1, 0.0, 0.0, 0.0, 0.0, 0.0, None, Detector.generic(None, (1e-4, 1e-4))))


def test_lab_coordinates_agree_with_the_maps():
    detector = get_detector("agipd1m")
    poni = Poni(**GEOMETRIES[2], detector=detector)
    x1, x2, x3 = lab_coordinates(poni)
    np.testing.assert_allclose(two_theta(poni), np.arctan2(np.hypot(x1, x2), x3), rtol=1e-13)
    np.testing.assert_allclose(chi(poni), np.arctan2(x1, x2), rtol=1e-12, atol=1e-15)


def test_real_ceo2_rings_fall_at_the_ceo2_lattice_spacings():
    """Real CeO2 frame (Pilatus 1M) with its Dioptas PONI: the radial profile's ring maxima sit at the q of the
    CeO2 reflections (fluorite, a = 5.4111 A) to 0.3 %.  Dioptas calibrates TIFF images flipped upside down,
    so its PONI applies to the image's rows reversed (unflipped, the rings miss by up to 10 %)."""
    fabio = pytest.importorskip("fabio")
    folder = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "powder"
    if not (folder / "CeO2_Pilatus1M.tif").exists():
        pytest.skip("real data absent")
    image = fabio.open(str(folder / "CeO2_Pilatus1M.tif")).data[::-1].astype(np.float64)
    poni = read_poni(folder / "CeO2_Pilatus1M.poni").for_shape(image.shape)
    q = q_nm(poni)
    good = image >= 0  # -2: gaps
    edges = np.linspace(15.0, 62.0, 3001)
    total = np.histogram(q[good], edges, weights=image[good])[0]
    count = np.histogram(q[good], edges)[0]
    profile = total / np.maximum(count, 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for hkl in ((1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (3, 3, 1), (5, 1, 1)):
        expected = 20 * np.pi * np.sqrt(sum(i * i for i in hkl)) / 5.4111  # nm^-1
        window = np.abs(centres - expected) < 0.015 * expected
        found = centres[window][np.argmax(profile[window])]
        assert abs(found - expected) < 0.003 * expected, (hkl, found, expected)
