"""sparsify -> densify -> compare through the command line, on small frames; outputs checked with FabIO/h5py."""
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (filters for h5py)
import numpy as np
import pytest

from braggsieve.cli import main

fabio = pytest.importorskip("fabio")
pyFAI = pytest.importorskip("pyFAI")
from fabio.ext import dense  # noqa: E402
from fabio.sparseimage import SparseImage  # noqa: E402

SHAPE = (96, 110)
SPOTS = [(30, 40), (60, 80), (70, 20)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Two HDF5 files of 3 and 2 uint32 frames (Poisson background, bright spots) and their PONI."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    tmp = tmp_path_factory.mktemp("sparse_cli")
    ai = AzimuthalIntegrator(dist=0.08, poni1=48.3 * 172e-6, poni2=55.2 * 172e-6, wavelength=1e-10,
                             detector=Detector(pixel1=172e-6, pixel2=172e-6, max_shape=SHAPE))
    ai.save(str(tmp / "run.poni"))
    r = ai.array_from_unit(unit="r_mm")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    frames = []
    for f in range(5):
        expected = 30 * np.exp(-r / 5) + 4
        for y, x in SPOTS:
            expected = expected + 300 * (f + 1) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2)
        frames.append(rng.poisson(expected).astype(np.uint32))
    frames = np.stack(frames)
    for name, part in (("a.h5", frames[:3]), ("b.h5", frames[3:])):
        with h5py.File(tmp / name, "w") as h5:
            h5["/entry/data/data"] = part
    return tmp, frames


def _sparsify(tmp, out, *extra):
    return main(["sparsify", str(tmp / "a.h5"), str(tmp / "b.h5"), "--poni", str(tmp / "run.poni"), "-o", str(out),
                 "--bins", "60", "--unit", "r_mm", "--no-solid-angle", *extra])


def test_round_trip(run, capsys):
    tmp, frames = run
    out = tmp / "sparse.h5"
    assert _sparsify(tmp, out, "--polarization", "0.99", "--report") == 0
    report = capsys.readouterr().out
    assert "compression ratio vs bitshuffle-LZ4 input" in report and "5 frame(s)" in report

    image = SparseImage()
    image.read(str(out))
    assert image.nframes == 5
    with h5py.File(out) as h5:
        files = list(h5["entry_0000/sources/files"].asstr()[()])
        assert [f.rsplit("/", 1)[-1] for f in files] == ["a.h5", "b.h5"]
        assert list(h5["entry_0000/sources/file_number"][()]) == [0, 0, 0, 1, 1]
        assert list(h5["entry_0000/sources/frame_index"][()]) == [0, 1, 2, 0, 1]
        ptr = h5["entry_0000/sparse_frames/frame_ptr"][()]
        index = h5["entry_0000/sparse_frames/index"][()]
        intensity = h5["entry_0000/sparse_frames/intensity"][()]
        assert intensity.dtype == np.uint32
        config = h5["entry_0000/sparsify/configuration/data"][()]
        assert b'"cutoff_pick": 2.0' in config
    for f in range(5):
        stored = index[ptr[f]:ptr[f + 1]]
        np.testing.assert_array_equal(intensity[ptr[f]:ptr[f + 1]], frames[f].ravel()[stored])
        for y, x in SPOTS:  # every spot centre is stored
            assert y * SHAPE[1] + x in stored

    # densify without noise: the Eiger master's frames equal FabIO's densification of the same file
    master = tmp / "dense" / "run_master.h5"
    assert main(["densify", str(out), "-o", str(master), "--noise", "none", "--frames-per-file", "2"]) == 0
    with h5py.File(master) as h5:
        data = h5["entry/data/data"][()]
        assert data.shape == (5,) + SHAPE and data.dtype == np.uint32
        np.testing.assert_array_equal(h5["entry/data/data_000002"][()], data[2:4])
        assert h5["entry/instrument/detector/detectorSpecific/nimages"][()] == 5
        assert h5["entry/instrument/detector/x_pixel_size"][()] == pytest.approx(172e-6)
        assert h5["entry/instrument/detector/detector_distance"][()] == pytest.approx(0.08)
        assert h5["entry/instrument/beam/incident_wavelength"][()] == pytest.approx(1.0)
    for f in range(5):
        np.testing.assert_array_equal(data[f], image.getframe(f).data)

    # noisy densification: stored pixels exact, background noise of the right size
    assert main(["densify", str(out), "-o", str(tmp / "cbf" / "img_{index:03d}.cbf"), "--format", "cbf",
                 "--noise", "poisson", "--seed", "4"]) == 0
    cbf = fabio.open(str(tmp / "cbf" / "img_002.cbf")).data
    stored = index[ptr[2]:ptr[3]]
    np.testing.assert_array_equal(cbf.ravel()[stored], frames[2].ravel()[stored])
    free = np.ones(cbf.size, bool)
    free[stored] = False
    assert abs(cbf.ravel()[free].std() / frames[2].ravel()[free].std() - 1) < 0.1

    # 3 original frames against 5 densified ones: refused
    assert main(["compare", str(tmp / "a.h5"), str(master), "--sparse", str(out)]) == 2


def test_compare_reports_ratios(run, capsys):
    tmp, frames = run
    out = tmp / "sparse_cmp.h5"
    assert _sparsify(tmp, out) == 0
    master = tmp / "cmp" / "x_master.h5"
    assert main(["densify", str(out), "-o", str(master), "--noise", "poisson", "--seed", "1"]) == 0
    with h5py.File(tmp / "all.h5", "w") as h5:
        h5["/entry/data/data"] = frames
    capsys.readouterr()
    assert main(["compare", str(tmp / "all.h5"), str(master), "--sparse", str(out)]) == 0
    text = capsys.readouterr().out
    ratio = float(text.split("median ")[1].split(",")[0])
    assert 0.9 < ratio < 1.1  # densified background noise like the original's


def test_bad_inputs_leave_nothing(run, tmp_path, capsys):
    tmp, frames = run
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes((tmp / "a.h5").read_bytes()[:5000])
    out = tmp_path / "out.h5"
    assert main(["sparsify", str(truncated), "--poni", str(tmp / "run.poni"), "-o", str(out)]) == 2
    assert "cut.h5" in capsys.readouterr().err
    not_sparse = tmp / "a.h5"
    assert main(["densify", str(not_sparse), "-o", str(tmp_path / "d_master.h5")]) == 2
    assert "not a sparse-frames file" in capsys.readouterr().err
    other_shape = tmp_path / "small.h5"
    with h5py.File(other_shape, "w") as h5:
        h5["/entry/data/data"] = frames[:, :50, :50]
    assert main(["sparsify", str(other_shape), "--poni", str(tmp / "run.poni"), "-o", str(out)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.h5", "small.h5"]


REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "grid_stills_pilatus3_6m"


@pytest.mark.slow
@pytest.mark.realdata
def test_real_pilatus_still(tmp_path):
    """A real PILATUS3 6M still (geometry from its miniCBF header): stored pixels are the measured values,
    including overloads above the count cut-off, and the gaps (-1) are masked."""
    frame_file = REAL / "thau_3_2_0002.cbf.bz2"
    if not frame_file.exists():
        pytest.skip("real data absent")
    out = tmp_path / "thau.h5"
    assert main(["sparsify", str(frame_file), "-o", str(out), "--polarization", "0.99"]) == 0
    raw = fabio.open(str(frame_file)).data
    image = SparseImage()
    image.read(str(out))
    with h5py.File(out) as h5:
        index = h5["entry_0000/sparse_frames/index"][()]
        intensity = h5["entry_0000/sparse_frames/intensity"][()]
    np.testing.assert_array_equal(intensity, raw.ravel()[index])
    assert intensity.dtype == np.int32 and 0.001 < len(index) / raw.size < 0.1
    overloads = np.flatnonzero(raw.ravel() >= 115897)
    assert len(overloads) >= 1 and np.isin(overloads, index).all()  # frame 2 has one overloaded pixel
    assert np.isnan(image.mask[raw == -1]).all()
