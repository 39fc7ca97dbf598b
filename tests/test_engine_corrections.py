"""Corrections and preprocessing: detector markers, dummies, saturation, dark/gain/variance, norm."""
from __future__ import annotations

import numpy as np
import pytest

from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.params import CorrectionParams
from braggsieve.errors import ParameterError

SHAPE = (6, 7)
NO_CORRECTION = CorrectionParams(solid_angle=False)


def test_detector_markers_are_masked_per_frame():
    corrections = prepare_corrections(SHAPE, NO_CORRECTION)
    eiger = np.full((2,) + SHAPE, 7, np.uint32)
    eiger[0, 1, 2] = 0xFFFFFFFF
    eiger16 = eiger.astype(np.uint16)
    eiger16[1, 3, 3] = 0xFFFF
    pilatus = np.full(SHAPE, 3, np.int32)
    pilatus[0, 0], pilatus[1, 1] = -1, -2
    pre = preprocess(eiger, corrections, "poisson")
    assert np.isnan(pre.signal[0, 1, 2]) and np.isnan(pre.variance[0, 1, 2])
    assert np.isfinite(pre.signal[1]).all() and (pre.signal[1] == 7).all()
    assert np.isnan(preprocess(eiger16, corrections, "poisson").signal[1, 3, 3])
    big_endian = preprocess(eiger.astype(">u4"), corrections, "poisson")
    np.testing.assert_array_equal(big_endian.signal, preprocess(eiger, corrections, "poisson").signal)
    pre = preprocess(pilatus, corrections, "poisson")
    assert pre.signal.shape == (1,) + SHAPE  # a single frame is a batch of one
    assert np.isnan(pre.signal[0, 0, 0]) and np.isnan(pre.signal[0, 1, 1])
    assert np.isfinite(pre.signal).sum() == SHAPE[0] * SHAPE[1] - 2


def test_nan_inf_dummy_saturation_and_static_mask():
    mask = np.zeros(SHAPE, bool)
    mask[5, 6] = True
    params = CorrectionParams(solid_angle=False, dummy=100.0, delta_dummy=0.5, saturation=1000.0)
    corrections = prepare_corrections(SHAPE, params, mask=mask)
    frame = np.full(SHAPE, 10.0, np.float32)
    frame[0, 0], frame[0, 1], frame[0, 2] = np.nan, np.inf, 100.4   # NaN, inf, dummy within delta
    frame[0, 3], frame[0, 4], frame[0, 5] = 100.6, 1000.0, 999.0    # outside delta, saturated, just below
    signal = preprocess(frame, corrections, "poisson").signal[0]
    bad = {(0, 0), (0, 1), (0, 2), (0, 4), (5, 6)}
    for index in np.ndindex(SHAPE):
        assert np.isnan(signal[index]) == (index in bad), index
    assert signal[0, 3] == np.float32(100.6) and signal[0, 5] == 999.0


def test_dark_gain_and_variances_in_photons():
    rng = np.random.default_rng(3)
    dark = rng.uniform(900, 1100, SHAPE)
    dark_variance = rng.uniform(10, 20, SHAPE)
    gain = rng.uniform(8, 12, SHAPE)
    raw = (dark + gain * rng.poisson(5, SHAPE)).astype(np.uint16)
    params = CorrectionParams(solid_angle=False, normalization_factor=2.0)
    corrections = prepare_corrections(SHAPE, params, dark=dark, dark_variance=dark_variance, gain=gain)
    pre = preprocess(raw, corrections, "poisson")
    signal = (raw - dark.astype(np.float32)) / gain.astype(np.float32)
    np.testing.assert_allclose(pre.signal[0], signal, rtol=1e-6)
    np.testing.assert_allclose(pre.variance[0], np.maximum(signal, 1) + dark_variance / gain ** 2, rtol=1e-5)
    np.testing.assert_allclose(pre.norm, 2.0)
    explicit = rng.uniform(1, 50, SHAPE)
    pre = preprocess(raw, corrections, "variance", variance=explicit)
    np.testing.assert_allclose(pre.variance[0], (explicit + dark_variance) / gain ** 2, rtol=1e-5)
    scalar = prepare_corrections(SHAPE, CorrectionParams(solid_angle=False, gain=4.0))
    np.testing.assert_allclose(preprocess(raw, scalar, "poisson").signal[0], raw / 4.0, rtol=1e-6)


def test_norm_is_the_product_and_bad_norm_is_masked():
    rng = np.random.default_rng(4)
    solid, pol, flat, absorption = (rng.uniform(0.5, 1.0, SHAPE) for _ in range(4))
    flat[2, 2] = 0.0
    flat[3, 3] = np.nan
    params = CorrectionParams(solid_angle=True, polarization=0.9, normalization_factor=3.0)
    corrections = prepare_corrections(SHAPE, params, solid_angle=solid, polarization=pol, flat=flat,
                                      absorption=absorption)
    expected = 3.0 * solid * pol * flat * absorption
    good = np.ones(SHAPE, bool)
    good[2, 2] = good[3, 3] = False
    np.testing.assert_allclose(corrections.norm[good], expected[good], rtol=1e-6)
    assert np.array_equal(corrections.mask, ~good)
    assert np.isnan(preprocess(np.ones(SHAPE, np.int32), corrections, "poisson").signal[0][~good]).all()


def test_bad_inputs_raise():
    with pytest.raises(ParameterError, match="solid-angle"):
        prepare_corrections(SHAPE, CorrectionParams())
    with pytest.raises(ParameterError, match="polarisation"):
        prepare_corrections(SHAPE, CorrectionParams(solid_angle=False, polarization=0.9))
    with pytest.raises(ParameterError, match="dark has shape"):
        prepare_corrections(SHAPE, NO_CORRECTION, dark=np.zeros((2, 2)))
    corrections = prepare_corrections(SHAPE, NO_CORRECTION)
    with pytest.raises(ParameterError, match="do not match"):
        preprocess(np.zeros((2, 3)), corrections, "poisson")
    with pytest.raises(ParameterError, match="explicit variance"):
        preprocess(np.zeros(SHAPE), corrections, "variance")
