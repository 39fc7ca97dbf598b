"""``braggsieve process`` end to end on small synthetic runs split over two files.

References: the frames themselves (CRC-32, images behind the master CXI), the planted spots (hits), and the
separate ``peaks`` and ``sparsify`` pipelines run on the same frames with the same parameters (the one-pass
run must give exactly their peaks and their sparse pixels).  Resuming: a run interrupted inside a part
leaves no file of that part, and the resumed run equals an uninterrupted one.  Dask: a LocalCluster of two
workers gives the same per-frame results as one process.
"""
from __future__ import annotations

import json
import zlib

import h5py
import numpy as np
import pytest

from braggsieve.cli import main
from braggsieve.io.cxi import read_cxi
from braggsieve.io.sparse import SparseFile
from synthetic_runs import spotted_frames

SHAPE = (120, 130)
NFRAMES = 11
HITS = (0, 3, 4, 8)
OPTIONS = ["--unit", "r_mm", "--bins", "80", "--min-peaks", "5", "--part-size", "3", "--batch-size", "2"]


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("process")
    frames = spotted_frames(folder, shape=SHAPE, nframes=NFRAMES, hits=HITS, seed=7, centre=(64.2, 58.7), spots=12)
    frames[:, :, 100] = 0xFFFFFFFF  # dead column, Eiger marker
    for name, block in (("a.h5", frames[:5]), ("b.h5", frames[5:])):
        with h5py.File(folder / name, "w") as handle:
            handle["entry/data/data"] = block
    inputs = [str(folder / "a.h5"), str(folder / "b.h5"), "--poni", str(folder / "run.poni")]
    assert main(["process", *inputs, "-o", str(folder / "single"), "--workers", "0", *OPTIONS]) == 0
    return folder, frames, inputs


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def test_every_frame_once_with_its_checksum_and_the_hits(run_files):
    folder, frames, _ = run_files
    summary = _summary(folder / "single")
    per_frame = summary["per_frame"]
    assert summary["frames"] == NFRAMES and summary["parts"] == 4
    assert per_frame["position"] == list(range(NFRAMES))
    assert per_frame["source"] == [0] * 5 + [1] * 6 and per_frame["index"] == [*range(5), *range(6)]
    assert per_frame["input_crc32"] == [zlib.crc32(np.ascontiguousarray(f)) for f in frames]
    assert np.flatnonzero(per_frame["hit"]).tolist() == list(HITS)
    assert summary["hits"] == len(HITS)
    lst = (folder / "single" / "run.lst").read_text().split("\n")
    assert lst[:-1] == [f"run.cxi //{k}" for k in HITS]
    with h5py.File(folder / "single" / "run.cxi", "r") as handle:  # images behind the virtual dataset
        np.testing.assert_array_equal(handle["entry_1/data_1/data"][()], frames)
        mask = handle["entry_1/data_1/mask"][()]  # CrystFEL's mask, named in run.geom
    assert mask.shape == frames.shape[1:] and mask.dtype == np.uint8
    assert "mask = /entry_1/data_1/mask" in (folder / "single" / "run.geom").read_text()
    assert (folder / "single" / "run_veto.png").stat().st_size > 0


def test_one_pass_equals_the_peaks_and_sparsify_commands(run_files):
    folder, frames, inputs = run_files
    common = [o for o in OPTIONS if o not in ("--part-size", "3")]
    assert main(["peaks", *inputs, "-o", str(folder / "ref" / "ref.cxi"), *common]) == 0
    sparsify = [o for o in common if o not in ("--min-peaks", "5")]
    assert main(["sparsify", *inputs, "-o", str(folder / "ref" / "ref.h5"), *sparsify]) == 0
    ours, ref = read_cxi(folder / "single" / "run.cxi"), read_cxi(folder / "ref" / "ref.cxi")
    assert ours.npeaks.tolist() == _summary(folder / "single")["per_frame"]["npeaks"]
    for name in ("frame_ptr", "row", "col", "intensity", "snr"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(ref, name), err_msg=name)
    with SparseFile(folder / "single" / "run_sparse.h5") as mine, SparseFile(folder / "ref" / "ref.h5") as other:
        a, b = mine.read(), other.read()
        assert mine.nframes == other.nframes == NFRAMES
        for name in ("frame_ptr", "index", "intensity", "background_avg", "background_std"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        np.testing.assert_array_equal(mine.radius_map, other.radius_map)


def test_interrupted_run_leaves_no_partial_part_and_resumes(run_files, monkeypatch):
    folder, frames, inputs = run_files
    from braggsieve.pipeline import parts

    original, calls = parts.CxiWriter.append, []

    def failing(self, *args, **kwargs):  # the 4th batch (part 1, second batch) dies
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(parts.CxiWriter, "append", failing)
    out = folder / "resumed"
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS]) == 130
    monkeypatch.setattr(parts.CxiWriter, "append", original)
    left = sorted(p.name for p in (out / "parts").iterdir())
    assert left == ["part_00000.cxi", "part_00000.h5", "part_00000.json"]  # nothing of part 1, no temporaries
    assert not (out / "summary.json").exists()
    (out / "parts" / "part_00002.h5.part-999999").write_bytes(b"left by a killed worker")
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS]) == 0
    resumed, single = _summary(out), _summary(folder / "single")
    assert resumed["parts_resumed"] == 1
    assert resumed["per_frame"] == single["per_frame"]
    assert not list((out / "parts").glob("*.part-*"))


def test_other_parameters_in_the_same_folder_are_refused_unless_restart(run_files, capsys):
    folder, _, inputs = run_files
    out = folder / "refuse"
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS, "--frames", "0:3"]) == 0
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS, "--frames", "0:3",
                 "--min-peaks", "1"]) == 0  # the veto alone: parts reused
    assert _summary(out)["parts_resumed"] == 1
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS, "--frames", "0:3",
                 "--cutoff-pick", "3"]) == 2
    assert "other inputs, geometry or parameters" in capsys.readouterr().err
    assert main(["process", *inputs, "-o", str(out), "--workers", "0", *OPTIONS, "--frames", "0:3",
                 "--cutoff-pick", "3", "--restart"]) == 0
    assert _summary(out)["parts_resumed"] == 0


def test_missing_input_is_one_line_error_and_no_output(run_files, capsys):
    folder, _, _ = run_files
    out = folder / "missing"
    assert main(["process", str(folder / "nope.h5"), "--poni", str(folder / "run.poni"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nope.h5" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_dask_local_cluster_of_two_workers_gives_the_same_results(run_files):
    folder, _, inputs = run_files
    out = folder / "dask"
    assert main(["process", *inputs, "-o", str(out), "--workers", "2", *OPTIONS]) == 0
    dask, single = _summary(out), _summary(folder / "single")
    assert dask["per_frame"] == single["per_frame"]
    assert dask["checks"] == single["checks"] == {"frames_expected": NFRAMES, "frames_written": NFRAMES,
                                                  "missing": 0, "duplicated": 0}
    for name in ("run.cxi", "run_sparse.h5"):
        with h5py.File(out / name, "r") as a, h5py.File(folder / "single" / name, "r") as b:
            def compare(key, item):
                if isinstance(item, h5py.Dataset) and "process" not in key and "time" not in key \
                        and "sparsify" not in key:
                    np.testing.assert_array_equal(a[key][()], item[()], err_msg=key)
            b.visititems(compare)


def test_demo_finds_the_simulated_hits_and_bad_pixels(tmp_path):
    """The README's main command (braggsieve demo) end to end, on a fresh cache: every simulated hit found, no
    false hit; the mask from simulated dark + flat series catches every planted defect and no good pixel; the
    report and its figures are written."""
    from braggsieve.cli import main
    from braggsieve.pipeline.demo import run_demo

    summary = run_demo(tmp_path / "demo", cache_dir=tmp_path / "cache", progress=False)
    demo = summary["demo"]
    assert summary["frames"] == 100 and summary["checks"]["missing"] == summary["checks"]["duplicated"] == 0
    assert demo["hits_found"] == demo["true_hits"] and demo["false_hits"] == 0
    assert demo["planted_masked"] == demo["planted_bad_pixels"] > 0 and demo["good_pixels_masked"] == 0
    assert demo["figures"][0] == "report.html" and len(demo["figures"]) >= 5
    for name in demo["figures"]:
        assert (tmp_path / "demo" / name).stat().st_size > 1000
    # the command itself, resuming the same folder (every part already complete)
    assert main(["demo", "-o", str(tmp_path / "demo"), "--cache", str(tmp_path / "cache")]) == 0
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["demo"] == demo
