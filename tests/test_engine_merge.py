"""Property: merging the partial sums of two disjoint pixel sets equals one pass over their union."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from braggsieve.engine.corrections import Preprocessed
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import bin_sums, merge_sums, profile_from_sums
from braggsieve.engine.params import IntegrationParams

SHAPE = (12, 15)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), split=st.sampled_from(["no", "bbox"]), bins=st.integers(1, 12),
       norm_spread=st.floats(0.0, 0.9), fraction=st.floats(0.0, 1.0))
def test_merge_of_two_partitions_equals_one_pass(seed, split, bins, norm_spread, fraction):
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(SHAPE)
    radius = np.hypot(yy - 3.2, xx - 4.7)
    binning = build_binning(radius, IntegrationParams(bins=bins, unit="r_mm", split=split),
                            radial_delta=np.full(SHAPE, 0.7))
    signal = rng.gamma(2.0, 50.0, (2,) + SHAPE).astype(np.float32)
    signal[rng.random(signal.shape) < 0.1] = np.nan  # invalid pixels in either part
    variance = np.where(np.isnan(signal), np.nan, rng.uniform(1, 100, signal.shape)).astype(np.float32)
    norm = rng.uniform(1 - norm_spread, 1 + norm_spread, SHAPE).astype(np.float32)
    in_a = rng.random(SHAPE) < fraction

    def part(selected):
        return Preprocessed(signal=np.where(selected, signal, np.nan), variance=variance, norm=norm)

    whole = bin_sums(Preprocessed(signal=signal, variance=variance, norm=norm), binning)
    merged = merge_sums(bin_sums(part(in_a), binning), bin_sums(part(~in_a), binning))
    for name in ("count", "signal", "variance", "norm", "norm2", "norm2_value", "scatter"):
        np.testing.assert_allclose(getattr(merged, name), getattr(whole, name), rtol=1e-10, atol=1e-9,
                                   err_msg=name)
    for model in ("poisson", "azimuthal"):
        a, b = profile_from_sums(merged, binning, model), profile_from_sums(whole, binning, model)
        np.testing.assert_allclose(a.std, b.std, rtol=1e-10, atol=1e-12, equal_nan=True)
