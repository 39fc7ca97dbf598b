"""The mask maker on simulated series with planted defects (ground truth), bad input, gaps, files and CLI."""
from __future__ import annotations

import glob
import os

import h5py
import numpy as np
import pytest

from braggsieve.cli import main
from braggsieve.errors import InputError
from braggsieve.io.masks import load_mask
from braggsieve.io.series import write_series
from braggsieve.mask.bits import Bit, flag
from braggsieve.mask.features import SeriesStatistics
from braggsieve.mask.maker import ArraySeries, make_mask
from braggsieve.mask.params import MaskParams
from braggsieve.simulate.badpixels import plant_bad_pixels
from braggsieve.simulate.params import DEFECT_TYPES, BadPixelParams, NoiseParams
from braggsieve.simulate.response import nominal_response, record_frames
from braggsieve.simulate.series import (CountingSeries, CountingSeriesParams, IntegratingSeries,
                                        IntegratingSeriesParams)

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real", "dark_lambda")


@pytest.fixture(scope="module")
def counting():
    series = CountingSeries(CountingSeriesParams(shape=(128, 256), fraction=0.004))
    return series, series.dark(), series.flat()


@pytest.fixture(scope="module")
def integrating():
    series = IntegratingSeries(IntegratingSeriesParams(frames=40, flat_frames=40, cells=1, modules=2, rows=128,
                                                       cols=64, fraction=0.004))
    darks = [ArraySeries(*series.dark(s)) for s in range(3)]
    return series, darks, ArraySeries(series.flat())


def _scores(bad, truth):
    return bad[truth > 0].mean(), bad[truth == 0].mean()


@pytest.mark.parametrize("lam", [7.0, 8.0, 12.0])
def test_counting_recall_and_false_positives(counting, lam):
    series, dark, flat = counting
    result = make_mask([ArraySeries(dark)], [ArraySeries(flat)], params=MaskParams(lam=lam), counting=True)
    recall, fpr = _scores(result.bits != 0, series.truth)
    assert recall >= 0.995 and fpr <= 1e-4
    # a non-robust baseline (mean +- 8 std of the dark mean over the detector) misses most hot pixels
    mean = dark.mean(axis=0)
    naive = np.abs(mean - mean.mean()) > lam * mean.std()
    assert naive[series.truth == 1].mean() < recall


@pytest.mark.parametrize("dark_rate, dtype", [(0.0, np.int32), (0.0, np.uint32), (0.02, np.int32)])
def test_counting_dark_with_simulated_detector_defects(dark_rate, dtype):
    """A hot pixel among zero-count neighbours must be flagged (it scored sqrt(12) = 3.5 when the bulk's ties
    were spread over the 0 -> hot gap).  Dark series recorded by braggsieve.simulate's detector model; every
    type a dark reveals is found: hot, noisy, bimodal, stuck (non-zero), offset (+: high mean; -: a Pilatus
    int32 records negative values, markers -> NO_DATA; an unsigned Eiger clips them to 0, invisible).  Dead,
    under and over need light (a flat series)."""
    shape = (384, 512)
    rng = np.random.default_rng(11)
    gap = np.zeros(shape, bool)
    gap[190:200] = True
    marker = -1 if dtype == np.int32 else np.iinfo(dtype).max
    response = nominal_response(shape, gap, marker, NoiseParams(), True, rng)
    types, response = plant_bad_pixels(response, BadPixelParams(bad_fraction=4e-3), rng)
    darks = record_frames(np.full((32,) + shape, dark_rate, np.float32), response, seed=5, first_frame=0,
                          dtype=dtype)
    bits = make_mask([ArraySeries(darks)], counting=True, exclude=gap).bits
    bad = bits != 0
    assert np.all(bits[gap] == flag(Bit.GAP))
    value = np.full(shape, np.nan)
    value.reshape(-1)[response.defect_index] = response.stuck_value
    offset = np.zeros(shape)
    offset.reshape(-1)[response.defect_index] = response.offset
    invisible = (types == DEFECT_TYPES["stuck"]) & (value == 0)
    if dtype == np.uint32:
        invisible |= (types == DEFECT_TYPES["offset"]) & (offset < 0)
    for name in ("hot", "noisy", "bimodal", "stuck", "offset"):
        planted = (types == DEFECT_TYPES[name]) & ~invisible
        assert planted.sum() >= 30
        assert bad[planted].all(), f"{name}: {np.count_nonzero(~bad[planted])} of {planted.sum()} missed"
    good = (types == 0) & ~gap
    assert bad[good].mean() <= 1e-4


def test_integrating_recall_false_positives_and_outlier_frames(integrating):
    series, darks, flat = integrating
    result = make_mask(darks, [flat], params=MaskParams(), counting=False)
    truth = np.broadcast_to(series.truth, result.bits.shape)
    recall, fpr = _scores(result.bits != 0, truth)
    assert recall >= 0.995 and fpr <= 1e-4
    for stage, rejected in enumerate(result.outlier_frames):
        assert np.array_equal(np.flatnonzero(rejected.any(axis=(1, 2))), series.bad_frames[stage])
    gain_stage = truth == 5
    assert np.all(result.bits[gain_stage] & flag(Bit.GAIN_STAGES))


def test_statistics_add_remove_match_numpy():
    rng = np.random.default_rng(0)
    frames = rng.integers(1000, 1100, (30, 2, 8, 9)).astype(np.uint16)
    stats = SeriesStatistics((2,), (8, 9))
    stats.add(frames[:17])
    stats.add(frames[17:])
    include = np.zeros((30, 2), dtype=bool)
    include[[3, 8], 1] = True
    stats.remove(frames[include.any(axis=1)], include[include.any(axis=1)])
    keep = frames.astype(float)
    keep[[3, 8], 1] = np.nan
    assert np.allclose(stats.mean, np.nanmean(keep, axis=0))
    assert np.allclose(stats.std, np.nanstd(keep, axis=0, ddof=1))
    assert stats.count[1].max() == 28 and stats.count[0].min() == 30


def test_gaps_constant_pixels_and_markers():
    rng = np.random.default_rng(1)
    dark = (1000 + 10 * rng.standard_normal((20, 64, 64))).astype(np.float32)
    dark[:, 5, 5] = 1000.0  # constant: dead for an integrating detector
    dark[:, 7, 7] = np.nan  # never valid
    gaps = np.zeros((64, 64), dtype=bool)
    gaps[:, 31:33] = True
    result = make_mask([ArraySeries(dark)], counting=False, exclude=gaps)
    assert np.all(result.bits[gaps] == flag(Bit.GAP))
    assert result.bits[5, 5] & flag(Bit.DEAD) and result.bits[7, 7] & flag(Bit.NO_DATA)
    assert np.count_nonzero(result.bits) == gaps.sum() + 2
    counts = rng.poisson(0.01, (20, 32, 32)).astype(np.int32)
    counts[:, 3, 3] = -1  # Pilatus-like marker
    counts[:, 4, 4] = 30  # hot
    result = make_mask([ArraySeries(counts)], counting=True)
    assert result.bits[3, 3] == flag(Bit.NO_DATA) and result.bits[4, 4] & flag(Bit.OFFSET)
    assert np.count_nonzero(result.bits) == 2


def test_bad_input_is_a_clear_error():
    dark = np.zeros((20, 16, 16), dtype=np.float32)
    with pytest.raises(InputError, match="at least 10"):
        make_mask([ArraySeries(dark[:5])], counting=False)
    with pytest.raises(InputError, match="differs"):
        make_mask([ArraySeries(dark)], [ArraySeries(np.zeros((20, 16, 8)))], counting=False)
    with pytest.raises(InputError, match="no pixel has enough valid samples"):
        make_mask([ArraySeries(np.full((20, 16, 16), np.nan))], counting=False)


def test_cli_writes_mask_file_and_exports(tmp_path, capsys):
    series = IntegratingSeries(IntegratingSeriesParams(frames=20, flat_frames=20, cells=2, modules=2, rows=64,
                                                       cols=64, fraction=0.004))
    for stage in range(2):
        write_series(tmp_path / f"dark{stage}.h5", series.dark_batches(stage), 20, gain_path="/entry/data/gain")
    write_series(tmp_path / "flat.h5", series.flat_batches(), 20)
    out = tmp_path / "mask.h5"
    argv = ["mask", "--dark", str(tmp_path / "dark0.h5"), "--dark", str(tmp_path / "dark1.h5"), "--flat",
            str(tmp_path / "flat.h5"), "--gain-path", "/entry/data/gain", "-o", str(out), "--export",
            str(tmp_path / "mask.edf"), "--export", str(tmp_path / "mask.npy"), "--export", str(tmp_path / "mask.geom")]
    assert main(argv) == 0
    with h5py.File(out) as handle:
        bitmask = handle["mask/bitmask"][()]
        assert bitmask.shape == (2, 128, 64) and handle["mask/stage_bitmask"].shape == (2, 2, 128, 64)
        assert handle["mask/counts"].attrs["bad_pixels"] == np.count_nonzero(bitmask)
        assert "MaskParams" in handle["mask/provenance/configuration/data"][()].decode()
    truth = series.truth.reshape(128, 64) > 0
    assert np.array_equal(load_mask(out), truth)  # the io engineer's reader: any cell bad = bad
    import fabio
    assert np.array_equal(fabio.open(str(tmp_path / "mask.edf")).data, truth.astype(np.uint8))
    assert np.array_equal(np.load(tmp_path / "mask.npy"), truth.astype(np.uint8))
    assert "mask0_data = /mask/bitmask2d" in (tmp_path / "mask.geom").read_text()
    # bad input: a missing dataset -> exit 2, one line, no output left behind
    bad_out = tmp_path / "bad.h5"
    assert main(["mask", "--dark", str(tmp_path / "flat.h5"), "--h5path", "/nope", "-o", str(bad_out)]) == 2
    assert "no dataset /nope" in capsys.readouterr().err and not bad_out.exists()


@pytest.mark.realdata
def test_lambda_dark_agrees_with_vendor_mask():
    files = sorted(glob.glob(os.path.join(REAL, "*_m1_part*.nxs")))
    if not files:
        pytest.skip("real LAMBDA dark series not available")
    dark = np.concatenate([h5py.File(f)["/entry/instrument/detector/data"][()] for f in files])
    vendor = h5py.File(files[0])["/entry/instrument/detector/pixel_mask"][0]
    ours = make_mask([ArraySeries(dark)], counting=True).bits != 0
    rejected = (vendor & 0xFFFF) != 0
    assert np.all(ours[(vendor & 1) != 0])  # vendor gaps (-1 markers) are never valid
    assert (ours & rejected).sum() / ours.sum() > 0.99  # what we flag, the vendor flags too
    hot = dark.astype(float).mean(axis=0) > 2
    assert np.all(ours[hot])
