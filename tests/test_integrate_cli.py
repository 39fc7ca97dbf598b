"""``braggsieve integrate`` end to end: CSV against pyFAI on the same frame, PONI and mask; bad inputs."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from braggsieve.cli import build_parser, main
from braggsieve.cli import common

pyFAI = pytest.importorskip("pyFAI")
logging.getLogger("pyFAI").setLevel(logging.ERROR)
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SHAPE = (150, 170)
HEADER = "radial,mean,std,sem,count"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two Poisson frames (uint32, a masked column of 0xFFFFFFFF markers, bright spots) + a PONI from pyFAI."""
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    folder = tmp_path_factory.mktemp("integrate")
    ai = AzimuthalIntegrator(dist=0.07, poni1=0.008, poni2=0.009, rot1=0.05, rot2=-0.03,
                             detector=Detector(100e-6, 100e-6, max_shape=SHAPE), wavelength=1.2e-10)
    ai.write(str(folder / "run.poni"))
    rng = np.random.default_rng(5)
    q = ai.array_from_unit(SHAPE, "center", "q_nm^-1", scale=True)
    frames = rng.poisson(80 * np.exp(-q / 12) + 4, (2,) + SHAPE).astype(np.uint32)
    frames[1].flat[rng.choice(frames[1].size, 150, replace=False)] += 3000
    frames[:, :, 60] = 0xFFFFFFFF
    with h5py.File(folder / "frames.h5", "w") as handle:
        handle["entry/data/data"] = frames
    return folder, ai, frames


def _read_csv(path):
    lines = Path(path).read_text().splitlines()
    assert lines[0] == HEADER
    return np.loadtxt(path, delimiter=",", skiprows=1)


def _mask_used(argv):
    """The mask the command uses (detector gaps + the file's own markers), to hand the same one to pyFAI."""
    args = build_parser().parse_args(argv)
    return common.load_geometry_and_corrections(args, common.open_source(args)).corrections.mask


@pytest.mark.parametrize("clip", [False, True])
def test_csv_matches_pyfai(files, tmp_path, clip):
    folder, ai, frames = files
    out = tmp_path / "profile.csv"
    argv = ["integrate", str(folder / "frames.h5"), "--poni", str(folder / "run.poni"), "--frame", "1",
            "--bins", "300", "--error-model", "poisson", "-o", str(out)]
    if clip:
        argv += ["--cutoff-clip", "0", "--cycles", "5"]
    assert main(argv) == 0
    table = _read_csv(out)
    mask = _mask_used(argv)
    assert mask[:, 60].all() and mask.sum() == SHAPE[0]
    kwargs = dict(unit="q_nm^-1", method=("no", "csr", "cython"), error_model="poisson", mask=mask,
                  correctSolidAngle=True)
    ref = (ai.sigma_clip_ng(frames[1], 300, thres=0.0, max_iter=5, **kwargs) if clip
           else ai.integrate1d_ng(frames[1], 300, **kwargs))
    filled = ref.count > 10
    np.testing.assert_allclose(table[:, 0], ref.radial, rtol=1e-6)
    np.testing.assert_array_equal(table[filled, 4], ref.count[filled])
    for column, name in ((1, "intensity"), (2, "std"), (3, "sem")):
        np.testing.assert_allclose(table[filled, column], getattr(ref, name)[filled], rtol=1e-4)
    record = json.loads((tmp_path / "profile.json").read_text())
    assert record["frame"] == {"file": str(folder / "frames.h5"), "index": 1, "sigma_clipped": clip}
    assert record["parameters"]["ClipParams"]["cycles"] == 5 and record["end_time"]


@pytest.mark.realdata
def test_real_ceo2_frame(tmp_path):
    tif, poni = REAL / "powder" / "CeO2_Pilatus1M.tif", REAL / "powder" / "CeO2_Pilatus1M.poni"
    if not tif.exists():
        pytest.skip("real data absent")
    import fabio

    out = tmp_path / "ceo2.csv"
    argv = ["integrate", str(tif), "--poni", str(poni), "--polarization", "0.99", "-o", str(out)]
    assert main(argv) == 0
    table = _read_csv(out)
    ai = pyFAI.load(str(poni))
    ref = ai.integrate1d_ng(fabio.open(str(tif)).data, 1000, unit="q_nm^-1", method=("no", "csr", "cython"),
                            error_model="poisson", mask=_mask_used(argv), polarization_factor=0.99)
    filled = ref.count > 10
    np.testing.assert_array_equal(table[filled, 4], ref.count[filled])
    np.testing.assert_allclose(table[filled, 1], ref.intensity[filled], rtol=1e-4)
    np.testing.assert_allclose(table[filled, 2], ref.std[filled], rtol=1e-4)


def _fails(argv, capsys, tmp_path, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("braggsieve: error:") and "\n" not in err and expected in err, err
    assert not list(tmp_path.glob("out*")), "partial output left behind"


def test_bad_inputs_give_one_line_errors_and_no_output(files, tmp_path, capsys):
    folder, _, _ = files
    h5, poni, out = str(folder / "frames.h5"), str(folder / "run.poni"), str(tmp_path / "out.csv")
    _fails(["integrate", str(tmp_path / "missing.h5"), "--poni", poni, "-o", out], capsys, tmp_path,
           "missing.h5")
    _fails(["integrate", h5, "--poni", poni, "--frame", "2", "-o", out], capsys, tmp_path, "--frame 2")
    _fails(["integrate", h5, "--poni", poni, "-o", str(tmp_path / "out.txt")], capsys, tmp_path, ".csv")
    bad_poni = tmp_path / "bad.poni"
    bad_poni.write_text("Distance: twelve\n")
    _fails(["integrate", h5, "--poni", str(bad_poni), "-o", out], capsys, tmp_path, "bad.poni")
    small_mask = tmp_path / "mask.npy"
    np.save(small_mask, np.zeros((3, 3), np.uint8))
    _fails(["integrate", h5, "--poni", poni, "--mask", str(small_mask), "-o", out], capsys, tmp_path, "mask.npy")
    _fails(["integrate", h5, "--poni", poni, "--error-model", "variance", "-o", out], capsys, tmp_path,
           "variance")
