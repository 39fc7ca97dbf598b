"""Detector registry: shapes, pixel sizes and gap masks against pyFAI's classes; multi-panel layouts."""
from __future__ import annotations

import numpy as np
import pytest

from braggsieve.errors import ParameterError
from braggsieve.geometry import DETECTORS, Detector, get_detector

pyfai_detectors = pytest.importorskip("pyFAI.detectors")

WITH_PYFAI_CLASS = [name for name, d in DETECTORS.items() if d.pyfai_name]
MULTIPANEL = [name for name, d in DETECTORS.items() if d.multipanel]


def test_registry_has_the_required_detectors():
    required = {"eiger4m", "eiger9m", "eiger16m", "pilatus1m", "pilatus6m", "jungfrau4m", "agipd1m", "cspad"}
    assert required <= set(DETECTORS)
    assert get_detector("eiger4m").shape == (2167, 2070)
    assert get_detector("pilatus1m").shape == (1043, 981)
    assert get_detector("pilatus6m").shape == (2527, 2463)
    assert get_detector("agipd1m").shape == (16 * 512, 128)
    assert get_detector("cspad").shape == (32 * 185, 388)
    assert get_detector("cspad_cheetah").shape == (8 * 185, 4 * 388)
    assert get_detector("jungfrau4m_raw").shape == (8 * 512, 1024)


@pytest.mark.parametrize("name", WITH_PYFAI_CLASS)
def test_matches_pyfai_detector_class(name):
    ours = get_detector(name)
    theirs = pyfai_detectors.detector_factory(ours.pyfai_name)
    assert ours.shape == tuple(theirs.shape)
    assert ours.pixel_size == (theirs.pixel1, theirs.pixel2)
    np.testing.assert_array_equal(ours.gap_mask(), theirs.mask.astype(bool))


def test_markers_and_dtypes():
    assert get_detector("eiger4m").dtype == "uint32" and get_detector("eiger4m").markers == (0xFFFFFFFF,)
    assert get_detector("pilatus6m").dtype == "int32" and set(get_detector("pilatus6m").markers) == {-1, -2}
    assert get_detector("eiger16m").counting and get_detector("pilatus1m").counting
    assert not any(get_detector(n).counting for n in ("jungfrau4m", "agipd1m", "cspad"))


def test_lookup_is_lenient_on_spelling_and_strict_on_unknown_names():
    assert get_detector("Pilatus 6M") is get_detector("pilatus6m")
    assert get_detector("Eiger_16M") is get_detector("eiger16m")
    with pytest.raises(ParameterError, match="unknown detector"):
        get_detector("mar345")


@pytest.mark.parametrize("name", MULTIPANEL)
def test_panels_tile_the_raw_array_without_overlap_in_space(name):
    detector = get_detector(name)
    owner = np.zeros(detector.shape, dtype=int)
    for panel in detector.panels:
        owner[panel.ss[0]:panel.ss[1], panel.fs[0]:panel.fs[1]] += 1
    assert (owner == 1).all(), "every raw pixel belongs to exactly one panel"
    p1, p2 = detector.pixel_positions()
    # neighbouring raw pixels of a panel are one pixel apart in space
    for panel in detector.panels[:: max(1, len(detector.panels) // 7)]:
        window = (slice(*panel.ss), slice(*panel.fs))
        a1, a2 = p1[window], p2[window]
        np.testing.assert_allclose(np.hypot(np.diff(a1, axis=1), np.diff(a2, axis=1)), detector.pixel_size[1])
        np.testing.assert_allclose(np.hypot(np.diff(a1, axis=0), np.diff(a2, axis=0)), detector.pixel_size[0])
    # no two pixels of different panels overlap: pixel centres snapped to a half-pixel grid are all distinct
    g1, g2 = (np.round(p.ravel() / (0.5 * detector.pixel_size[0])).astype(np.int64) for p in (p1, p2))
    keys = np.sort(g1 * (g2.max() + 1) + g2)
    assert (np.diff(keys) > 0).all()
    assert np.nanmin(p1) > 0 and np.nanmin(p2) > 0


def test_cspad_raw_layouts_put_each_pixel_at_the_same_place():
    psana, cheetah = get_detector("cspad"), get_detector("cspad_cheetah")
    a1, a2 = psana.pixel_positions()
    b1, b2 = cheetah.pixel_positions()
    # psana row block (8 q + s) holds the sensor that Cheetah keeps at rows 185 s, columns 388 q
    for q in range(4):
        for s in (0, 3, 7):
            src = (slice((8 * q + s) * 185, (8 * q + s + 1) * 185), slice(None))
            dst = (slice(s * 185, (s + 1) * 185), slice(q * 388, (q + 1) * 388))
            np.testing.assert_array_equal(a1[src], b1[dst])
            np.testing.assert_array_equal(a2[src], b2[dst])
    np.testing.assert_array_equal(psana.gap_mask().sum(), cheetah.gap_mask().sum())


def test_jungfrau_raw_positions_agree_with_the_assembled_layout():
    raw, assembled = get_detector("jungfrau4m_raw"), get_detector("jungfrau4m")
    r1, r2 = raw.pixel_positions()
    a1, a2 = assembled.pixel_positions()
    good = ~raw.gap_mask()
    modules, rows, cols = np.nonzero(good.reshape(8, 512, 1024))
    arow = (modules // 2) * 550 + rows + 2 * (rows // 256)
    acol = (modules % 2) * 1038 + cols + 2 * (cols // 256)
    np.testing.assert_allclose(r1[good], a1[arow, acol], rtol=1e-12)
    np.testing.assert_allclose(r2[good], a2[arow, acol], rtol=1e-12)
    assert not assembled.gap_mask()[arow, acol].any()


def test_asic_edges_are_masked_for_stacked_detectors():
    mask = get_detector("agipd1m").gap_mask().reshape(16, 512, 128)
    assert mask[:, 63, :].all() and mask[:, 64, :].all() and mask[:, :, 0].all()
    assert not mask[:, 1:63, 1:63].any()
    jungfrau = get_detector("jungfrau4m_raw").gap_mask().reshape(8, 512, 1024)
    rows, cols = np.nonzero(jungfrau.all(axis=2))[1], np.nonzero(jungfrau.all(axis=1))[1]
    assert set(rows) == {255, 256} and set(cols) == {255, 256, 511, 512, 767, 768}  # double-size pixels only
    assert jungfrau.sum() == 8 * (2 * 1024 + 6 * 512 - 12)
    cspad = get_detector("cspad").gap_mask()
    assert cspad[:, 193].all() and cspad[:, 194].all() and not cspad[1:184, 1:193].any()


def test_generic_detector_and_for_shape():
    generic = Detector.generic(None, (1e-4, 2e-4))
    assert generic.for_shape((10, 20)).shape == (10, 20)
    assert not generic.for_shape((10, 20)).gap_mask().any()
    with pytest.raises(ParameterError, match="differs from detector eiger4m"):
        get_detector("eiger4m").for_shape((100, 100))
    with pytest.raises(ParameterError, match="pixel size"):
        Detector.generic((10, 10), (0.0, 1e-4))
