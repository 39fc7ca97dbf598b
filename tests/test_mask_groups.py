"""Memory-bounded mask making: memory cells in groups (one pass over the files each) give the same mask,
bit for bit, as a single pass."""
from __future__ import annotations

import numpy as np
import pytest

from braggsieve.io.series import HDF5Series, write_series
from braggsieve.mask.maker import ArraySeries, cell_groups, entry_bytes, make_mask
from braggsieve.mask.params import MaskParams
from braggsieve.simulate.series import IntegratingSeries, IntegratingSeriesParams

GAIN = "/entry/data/gain"


@pytest.fixture(scope="module")
def five_d(tmp_path_factory):
    """3 cells x 2 modules x 64 x 64, 3 gain stages with gain data and a flat run, in memory and in HDF5."""
    series = IntegratingSeries(IntegratingSeriesParams(frames=24, flat_frames=16, cells=3, modules=2, rows=64,
                                                       cols=64, fraction=0.004, seed=3))
    folder = tmp_path_factory.mktemp("series")
    arrays = [ArraySeries(*series.dark(s)) for s in range(3)]
    for s in range(3):
        write_series(folder / f"dark{s}.h5", series.dark_batches(s), 24, gain_path=GAIN)
    write_series(folder / "flat.h5", series.flat_batches(), 16)
    files = [HDF5Series([folder / f"dark{s}.h5"], gain_path=GAIN) for s in range(3)]
    return series, arrays, ArraySeries(series.flat()), files, HDF5Series([folder / "flat.h5"])


def test_cell_groups_cover_all_cells_within_the_limit(five_d):
    _, arrays, flat, _, _ = five_d
    per_cell = entry_bytes(arrays, [flat], MaskParams(), False) * 2 * 64 * 64
    assert cell_groups(arrays, [flat], MaskParams(memory_limit=10 * per_cell / 1e9), False) == [None]
    groups = cell_groups(arrays, [flat], MaskParams(memory_limit=2.5 * per_cell / 1e9), False)
    assert groups == [slice(0, 2), slice(2, 3)]
    assert cell_groups(arrays, [flat], MaskParams(memory_limit=0.5 * per_cell / 1e9), False) == \
        [slice(c, c + 1) for c in range(3)]


def test_grouped_equals_single_pass_bit_for_bit(five_d):
    series, arrays, flat, files, flat_file = five_d
    per_cell = entry_bytes(arrays, [flat], MaskParams(), True) * 2 * 64 * 64
    single = make_mask(arrays, [flat], params=MaskParams(), counting=False, keep_features=True)
    grouped = make_mask(files, [flat_file], params=MaskParams(memory_limit=2.5 * per_cell / 1e9), counting=False,
                        keep_features=True)
    assert single.groups == 1 and grouped.groups == 2
    assert grouped.stage_bits.dtype == np.uint32
    assert np.array_equal(grouped.stage_bits, single.stage_bits)
    assert grouped.counts == single.counts
    for a, b in zip(grouped.outlier_frames, single.outlier_frames):
        assert np.array_equal(a, b)
    assert grouped.features[0].keys() == {"F2", "F3", "F6"}  # the flat run belongs to stage 0
    for a, b in zip(grouped.features, single.features):
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key], equal_nan=True)
    # not a trivial mask: the planted defects are found in every cell, the outlier frames of every stage
    truth = np.broadcast_to(series.truth, single.bits.shape)
    assert (single.bits[truth > 0] != 0).mean() >= 0.99
    for stage, rejected in enumerate(grouped.outlier_frames):
        assert np.array_equal(np.flatnonzero(rejected.any(axis=(1, 2))), series.bad_frames[stage])
