"""``braggsieve peaks`` end to end: preprocess + sigma-clipping + peaks + CXI/.geom/.lst/table/plot.

Frames: a 200x220 generic detector, Poisson background falling with radius, Gaussian spots (erf-integrated)
on the hit frames, nothing on the others, zingers everywhere.  The truth positions are the reference.
"""
from __future__ import annotations

import csv

import fabio
import h5py
import numpy as np
import pytest
from scipy.special import erf

from braggsieve.cli import main
from braggsieve.geometry import Detector, Poni, write_poni
from braggsieve.io.cxi import read_cxi

SHAPE = (200, 220)
NFRAMES = 6
HITS = (1, 2, 4)


def _spots(rng, n):
    rows = rng.uniform(8, SHAPE[0] - 8, n)
    cols = rng.uniform(8, SHAPE[1] - 8, n)
    keep = np.ones(n, bool)
    for k in range(n):  # keep spots at least 8 px apart
        keep[k] = keep[k] and not np.any(np.hypot(rows[:k] - rows[k], cols[:k] - cols[k])[keep[:k]] < 8)
    return rows[keep], cols[keep]


def _image(rows, cols, photons):
    ii = np.arange(SHAPE[0])[:, None]
    jj = np.arange(SHAPE[1])[None, :]
    image = np.zeros(SHAPE)
    s = np.sqrt(2) * 0.9
    for r, c in zip(rows, cols):
        fr = 0.5 * (erf((ii + 0.5 - r) / s) - erf((ii - 0.5 - r) / s))
        fc = 0.5 * (erf((jj + 0.5 - c) / s) - erf((jj - 0.5 - c) / s))
        image += photons * fr * fc
    return image


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peaks")
    rng = np.random.default_rng(42)
    detector = Detector.generic(SHAPE, (100e-6, 100e-6))
    poni = Poni.from_beam_center(detector, 0.08, (105.3, 98.6), 1.0e-10)
    write_poni(poni, folder / "run.poni")
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    background = 3 + 30 * np.exp(-np.hypot(yy - 98.6, xx - 105.3) / 40)
    frames, truth = [], []
    for f in range(NFRAMES):
        rows, cols = _spots(rng, 40) if f in HITS else (np.zeros(0), np.zeros(0))
        lam = background + _image(rows, cols, 1500.0)
        frame = rng.poisson(lam).astype(np.uint32)
        zr, zc = rng.integers(0, SHAPE[0], 30), rng.integers(0, SHAPE[1], 30)
        # zingers away from spots: one on a spot's flank is beyond any single-frame test (docs/peaks.md)
        away = np.hypot(zr[:, None] - rows[None, :], zc[:, None] - cols[None, :]).min(axis=1, initial=99) > 4
        zr, zc = zr[away][:15], zc[away][:15]
        frame[zr, zc] = 4000  # zingers
        frame[:, 150] = 0xFFFFFFFF  # a dead column with the Eiger marker
        frames.append(frame)
        truth.append((rows, cols, zr, zc))
    frames = np.array(frames)
    with h5py.File(folder / "run.h5", "w") as f:
        f["entry/data/data"] = frames
    for k in range(2):
        fabio.edfimage.EdfImage(data=frames[k].astype(np.int32)).write(str(folder / f"img_{k}.edf"))
    code = main(["peaks", str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "-o",
                 str(folder / "out" / "run.cxi"), "--min-peaks", "5", "--hits-only", "--unit", "r_mm",
                 "--bins", "150", "--batch-size", "4"])
    assert code == 0
    return folder, frames, truth


def test_peaks_match_truth_and_zingers_are_not_reported(run):
    folder, frames, truth = run
    peaks = read_cxi(folder / "out" / "run.cxi")
    assert peaks.nframes == NFRAMES
    errors = []
    for f, (rows, cols, zr, zc) in enumerate(truth):
        a, b = peaks.frame_ptr[f], peaks.frame_ptr[f + 1]
        pr, pc = peaks.row[a:b], peaks.col[a:b]
        if f not in HITS:
            assert b == a, f"frame {f} has no spot but {b - a} peaks"
            continue
        d = np.hypot(pr[:, None] - rows[None, :], pc[:, None] - cols[None, :])
        # every peak is a spot, every spot not on the dead column (masked) is found once
        assert (d.min(axis=1) <= 2).all()
        on_dead = np.abs(cols - 150) < 1.5
        found = d.min(axis=0) <= 2
        assert found[~on_dead].all()
        errors.extend(d.min(axis=1)[~on_dead[d.argmin(axis=1)]])
    assert np.sqrt(np.mean(np.square(errors))) < 0.12


def test_cxi_links_the_frames_and_the_geom_lst_table_plot_are_written(run):
    folder, frames, truth = run
    out = folder / "out"
    with h5py.File(out / "run.cxi", "r") as f:
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], frames)
        assert f["entry_1/result_1/nPeaks"].dtype == np.int32
        assert "configuration" in f["entry_1/process_1"]
        # CrystFEL's mask (1 = bad): the dead column filled with the Eiger marker, nothing else
        mask = f["entry_1/data_1/mask"][()]
        assert mask.dtype == np.uint8 and mask[:, 150].all() and mask.sum() == SHAPE[0]
    geom = (out / "run.geom").read_text()
    assert "peak_list = /entry_1/result_1" in geom and "p0/corner_x = 105.300000" in geom
    assert "mask = /entry_1/data_1/mask" in geom and "mask_bad = 1" in geom
    assert (out / "run.lst").read_text().split("\n")[:-1] == [f"run.cxi //{f}" for f in HITS]
    with open(out / "run_frames.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["hit"]) for r in rows] == [int(f in HITS) for f in range(NFRAMES)]
    assert [int(r["index"]) for r in rows] == list(range(NFRAMES))
    assert (out / "run_veto.png").read_bytes()[:4] == b"\x89PNG"
    hits = read_cxi(out / "run_hits.cxi")
    full = read_cxi(out / "run.cxi")
    assert hits.nframes == len(HITS)
    np.testing.assert_array_equal(hits.npeaks, full.npeaks[list(HITS)])
    with h5py.File(out / "run_hits.cxi", "r") as f:
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], frames[list(HITS)])


def test_fabio_inputs_are_copied(run, tmp_path):
    folder, frames, _ = run
    code = main(["peaks", str(folder / "img_*.edf"), "--poni", str(folder / "run.poni"), "-o",
                 str(tmp_path / "e.cxi"), "--unit", "r_mm", "--bins", "150", "--no-plot"])
    assert code == 0
    with h5py.File(tmp_path / "e.cxi", "r") as f:
        data = f["entry_1/data_1/data"]
        assert not data.is_virtual and data.compression == "gzip"
        np.testing.assert_array_equal(data[()], frames[:2].astype(np.int32))
    np.testing.assert_array_equal(read_cxi(tmp_path / "e.cxi").npeaks,
                                  read_cxi(folder / "out" / "run.cxi").npeaks[:2])


def test_bad_input_is_one_line_and_leaves_nothing(run, tmp_path, capsys):
    folder, _, _ = run
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    for argv in (["peaks", str(tmp_path / "bad.h5"), "--poni", str(folder / "run.poni"), "-o",
                  str(tmp_path / "x.cxi")],
                 ["peaks", str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "-o",
                  str(tmp_path / "x.cxi"), "--spread-snr", "-1"],
                 ["peaks", str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "-o",
                  str(tmp_path / "x.h5")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("braggsieve: error:") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5"]
