"""Quality report pieces against known answers: spot integration, round trip of identical frames, sizes."""
import h5py
import hdf5plugin
import numpy as np
import pytest

from braggsieve.engine.records import SparseFrames
from braggsieve.io.frames import open_frames
from braggsieve.io.sparse import SparseWriter
from braggsieve.pipeline.quality import (ANNULUS, SPOT_RADIUS, bslz4_bytes, compression_report, round_trip_report,
                                         spot_intensities)

SHAPE = (64, 72)


def _gaussian_spot(total, row, col, sigma=1.0):
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    return total * np.exp(-((yy - row) ** 2 + (xx - col) ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)


def test_spot_intensity_of_a_known_spot():
    frame = 10.0 + _gaussian_spot(1000.0, 30.3, 40.6)
    valid = np.ones(SHAPE, bool)
    intensity, sigma = spot_intensities(frame, np.array([30.3, 2.0]), np.array([40.6, 2.0]), valid)
    # a 2-D Gaussian of sigma 1 px holds 1 - exp(-r^2 / 2) of its total within r (pixel sampling aside)
    assert intensity[0] == pytest.approx(1000 * (1 - np.exp(-SPOT_RADIUS ** 2 / 2)), rel=0.02)
    assert sigma[0] > 0 and np.isnan(intensity[1])  # the second spot is too close to the border
    valid[30, 40] = False
    assert np.isnan(spot_intensities(frame, np.array([30.3]), np.array([40.6]), valid)[0][0])
    assert ANNULUS[0] > SPOT_RADIUS


def _sparse_file(path, nframes):
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    radius = np.hypot(yy - 31.5, xx - 35.5).astype(np.float32)
    radial = np.linspace(0.5, 47.0, 40)
    with SparseWriter(path, radius_map=radius, radial=radial, unit="r_mm", dtype=np.uint32) as writer:
        bg = np.full((nframes, 40), 10.0, np.float32)
        writer.append(SparseFrames(np.zeros(nframes + 1, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint32),
                                   bg, np.sqrt(bg), radial, "r_mm"), ["x"], np.zeros(nframes), np.arange(nframes))


def test_round_trip_of_identical_frames(tmp_path):
    rng = np.random.default_rng(2)
    frames = np.stack([rng.poisson(10 + _gaussian_spot(3000.0, 20.2 + f, 30.7)) for f in range(3)]).astype(np.uint32)
    for name in ("a.h5", "b.h5"):
        with h5py.File(tmp_path / name, "w") as h5:
            h5.create_dataset("/entry/data/data", data=frames, chunks=(1,) + SHAPE, **hdf5plugin.Bitshuffle())
    with h5py.File(tmp_path / "truth.h5", "w") as h5:
        h5["truth/reflections/frame"] = np.arange(3)
        h5["truth/reflections/row"] = 20.2 + np.arange(3.0)
        h5["truth/reflections/col"] = np.full(3, 30.7)
    _sparse_file(tmp_path / "s.h5", 3)
    report = round_trip_report(open_frames([tmp_path / "a.h5"]), open_frames([tmp_path / "b.h5"]),
                               tmp_path / "s.h5", truth_path=tmp_path / "truth.h5")
    assert report.spots_total == 3 and len(report.spot_original) == 3
    assert report.spot_cc == pytest.approx(1.0) and report.spot_mean_ratio == pytest.approx(1.0)
    assert report.sigma_ratio_median == pytest.approx(1.0)
    assert "Pearson CC 1.000000" in report.text()


def test_compression_report_sizes(tmp_path):
    frames = np.random.default_rng(0).poisson(5, (4,) + SHAPE).astype(np.uint32)
    with h5py.File(tmp_path / "in.h5", "w") as h5:
        ds = h5.create_dataset("/entry/data/data", data=frames, chunks=(1,) + SHAPE, **hdf5plugin.Bitshuffle())
        stored = ds.id.get_storage_size()
    assert bslz4_bytes(frames) == stored
    _sparse_file(tmp_path / "s.h5", 4)
    report = compression_report(open_frames([tmp_path / "in.h5"]), tmp_path / "s.h5")
    assert report.input_bytes == stored and report.raw_bytes == frames.nbytes
    assert report.ratio == pytest.approx(stored / (tmp_path / "s.h5").stat().st_size)
    assert list(report.kept) == [0, 0, 0, 0]
