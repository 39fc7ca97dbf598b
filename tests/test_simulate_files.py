"""Files of braggsieve.simulate: NXmx metadata read back by braggsieve.io and pyFAI, bitwise reproducibility,
the command line, errors leaving nothing behind, and the cached demo dataset."""
from __future__ import annotations

import json

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 filter)
import numpy as np
import pytest

from braggsieve.cli import main
from braggsieve.geometry.detectors import get_detector
from braggsieve.geometry.poni import Poni
from braggsieve.io.metadata import read_detector_metadata
from braggsieve.io.provenance import Provenance
from braggsieve.simulate.demo import demo_dataset
from braggsieve.simulate.files import run_files, write_run
from braggsieve.simulate.params import DEFECT_TYPES, SsxParams
from braggsieve.simulate.ssx import SsxSimulator

pyFAI = pytest.importorskip("pyFAI")


def _simulator(seed=5):
    poni = Poni(dist=0.15, poni1=0.08, poni2=0.09, rot1=0.01, rot2=0.02, rot3=0.0, wavelength=1.0e-10,
                detector=get_detector("pilatus1m"))
    return SsxSimulator(poni, SsxParams(hit_fraction=0.5, zingers=3.0), seed=seed)


def _chunks(path):
    with h5py.File(path) as handle:
        data = handle["/entry/data/data"]
        return [data.id.read_direct_chunk((i, 0, 0))[1] for i in range(data.shape[0])]


def _truth_arrays(path):
    arrays = {}
    with h5py.File(path) as handle:
        handle["truth"].visititems(lambda name, node: arrays.__setitem__(name, node[()])
                                   if isinstance(node, h5py.Dataset) and not name.startswith("process") else None)
    return arrays


@pytest.fixture(scope="module")
def simulator():
    return _simulator()


@pytest.fixture(scope="module")
def run(tmp_path_factory, simulator):
    folder = tmp_path_factory.mktemp("run")
    files = write_run(simulator, folder / "run.h5", 5, Provenance.start(), batch_size=2)
    return files


def test_same_seed_gives_bitwise_the_same_frames_and_truth(run, tmp_path):
    again = write_run(_simulator(), tmp_path / "again.h5", 5, Provenance.start(), batch_size=3)
    assert _chunks(run.data) == _chunks(again.data)  # compressed bytes, chunk by chunk
    first, second = _truth_arrays(run.truth), _truth_arrays(again.truth)
    assert first.keys() == second.keys() and len(first) > 15
    for name in first:
        assert np.array_equal(first[name], second[name]), name
    other = write_run(_simulator(seed=6), tmp_path / "other.h5", 1, Provenance.start())
    assert _chunks(other.data)[0] != _chunks(run.data)[0]


def test_nxmx_metadata_and_poni_read_back(run, simulator):
    sim = simulator
    meta = read_detector_metadata(run.data)
    assert meta.wavelength_m == pytest.approx(1.0e-10)
    assert meta.pixel_size_m == pytest.approx((172e-6, 172e-6))
    ai = pyFAI.load(str(run.poni))
    assert (ai.dist, ai.poni1, ai.poni2, ai.rot1, ai.rot2) == pytest.approx((0.15, 0.08, 0.09, 0.01, 0.02))
    # the beam centre recorded in the file is where pyFAI's 2theta map is zero
    x, y = meta.beam_center_px
    tth = ai.twoThetaArray()
    row, col = np.unravel_index(np.argmin(tth), tth.shape)
    assert abs(row + 0.5 - y) < 1 and abs(col + 0.5 - x) < 1
    with h5py.File(run.data) as handle:
        mask = handle["/entry/instrument/detector/pixel_mask"][()]
        frames = handle["/entry/data/data"][()]
    assert np.array_equal(mask & 1 == 1, sim.gap)
    assert np.array_equal(mask > 1, sim.bad_types > 0)
    assert np.array_equal((mask & 2) > 0, sim.bad_types == DEFECT_TYPES["dead"])
    assert frames.dtype == np.int32 and np.all(frames[:, sim.gap] == -1)


def test_truth_file_layout(run):
    with h5py.File(run.truth) as handle:
        truth = handle["truth"]
        hit = truth["frames/hit"][()]
        ptr = truth["frames/reflection_ptr"][()]
        frame_of = truth["reflections/frame"][()]
        assert ptr[0] == 0 and ptr[-1] == frame_of.size and len(ptr) == 6
        for i in range(5):
            assert np.all(frame_of[ptr[i]:ptr[i + 1]] == i)
            assert (ptr[i + 1] > ptr[i]) == hit[i]
        legend = json.loads(truth["bad_pixels"].attrs["legend"])
        assert legend["hot"] == DEFECT_TYPES["hot"]
        assert truth["background"].shape == (1043, 981)
        zptr = truth["frames/zinger_ptr"][()]
        assert zptr[-1] == truth["zingers/row"].shape[0]


def test_command_line_writes_the_run_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    config = tmp_path / "sim.toml"
    config.write_text("[ssx]\nhit_fraction = 1.0\n[noise]\nnoise_model = 'integrating'\n")
    rc = main(["simulate", "-o", str(out), "--detector", "pilatus1m", "--frames", "2", "--seed", "3",
               "--distance", "100", "--config", str(config), "--gain", "10"])
    assert rc == 0
    files = run_files(out)
    with h5py.File(files.data) as handle:
        frames = handle["/entry/data/data"][()]
        process = json.loads(handle["/entry/process/configuration/data"][()])
    assert frames.shape == (2, *get_detector("pilatus1m").shape) and frames.dtype == np.int32
    assert process["parameters"]["ssx"]["hit_fraction"] == 1.0 and process["parameters"]["noise"]["gain"] == 10.0
    with h5py.File(files.truth) as handle:
        pedestal = handle["truth/detector/pedestal"][()]
        assert handle["truth/frames/hit"][()].all()
    assert abs(np.median(frames[0] - pedestal) / 10 - 5) < 4  # ADU over the pedestal: a few photons x gain

    bad = tmp_path / "bad.h5"
    assert main(["simulate", "-o", str(bad), "--hit-fraction", "1.5"]) == 2
    assert main(["simulate", "-o", str(bad), "--frames", "1", "--config", str(tmp_path / "missing.toml")]) == 2
    assert main(["simulate", "-o", str(bad), "--detector", "nosuchdetector"]) == 2
    no_wavelength = tmp_path / "nowl.poni"
    no_wavelength.write_text("poni_version: 2\nDetector: Pilatus1M\nDetector_config: {}\nDistance: 0.1\n"
                             "Poni1: 0.08\nPoni2: 0.08\nRot1: 0\nRot2: 0\nRot3: 0\n")
    assert main(["simulate", "-o", str(bad), "--poni", str(no_wavelength)]) == 2
    err = capsys.readouterr().err
    assert "hit-fraction" in err and "nowl.poni" in err and "wavelength" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cli.h5", "cli.poni", "cli_truth.h5", "sim.toml",
                                                                 "nowl.poni"])


def test_demo_dataset_is_made_once_and_cached(tmp_path, monkeypatch, capsys):
    import braggsieve.simulate.demo as demo
    monkeypatch.setitem(demo.DEMO_PARAMS, "setup", demo.DEMO_PARAMS["setup"].__class__(
        detector="pilatus1m", distance=150.0, frames=3, seed=1))
    monkeypatch.setenv("BRAGGSIEVE_CACHE", str(tmp_path))
    assert main(["simulate", "--demo"]) == 0
    files = demo_dataset()
    assert capsys.readouterr().out.split() == [str(files.data), str(files.poni), str(files.truth)]
    assert files.data.exists() and files.poni.exists() and files.truth.exists()
    stamp = files.data.stat().st_mtime_ns
    assert demo_dataset(tmp_path) == files and files.data.stat().st_mtime_ns == stamp
    with h5py.File(files.data) as handle:
        assert handle["/entry/data/data"].shape == (3, 1043, 981)
