"""``braggsieve peaks``, ``sparsify`` and ``process`` with ``--device cuda`` against ``--device cpu``: the same
peaks (positions, intensities) and the same kept pixels from the same files.

Skipped without CuPy or a GPU (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_cuda_cli.py``.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from cuda_available import GPU_ONLY  # skips this module without CuPy

pytestmark = GPU_ONLY

from braggsieve.cli import main  # noqa: E402
from braggsieve.io.cxi import read_cxi  # noqa: E402
from braggsieve.io.sparse import SparseFile  # noqa: E402

from synthetic_runs import spotted_frames  # noqa: E402

SHAPE = (240, 260)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cuda_cli")
    frames = spotted_frames(folder, shape=SHAPE, nframes=6, hits=(1, 2, 4), seed=5, centre=(131.2, 118.7))
    frames[:, :, 200] = 0xFFFFFFFF  # a dead column with the Eiger marker
    with h5py.File(folder / "run.h5", "w") as f:
        f["entry/data/data"] = frames
    return folder


def _common(folder):
    return [str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "--unit", "r_mm", "--bins", "150",
            "--batch-size", "4"]


def test_peaks_on_the_gpu_match_the_cpu(run):
    for device in ("cpu", "cuda"):
        assert main(["peaks", *_common(run), "-o", str(run / device / "run.cxi"), "--min-peaks", "5",
                     "--device", device, "--no-plot"]) == 0
    cpu, gpu = read_cxi(run / "cpu" / "run.cxi"), read_cxi(run / "cuda" / "run.cxi")
    np.testing.assert_array_equal(gpu.frame_ptr, cpu.frame_ptr)
    assert cpu.frame_ptr[-1] >= 20
    np.testing.assert_allclose(gpu.row, cpu.row, atol=2e-4)
    np.testing.assert_allclose(gpu.col, cpu.col, atol=2e-4)
    np.testing.assert_allclose(gpu.intensity, cpu.intensity, rtol=1e-6)
    assert (run / "cuda" / "run.lst").read_text() == (run / "cpu" / "run.lst").read_text()


def test_sparsify_on_the_gpu_matches_the_cpu(run):
    for device in ("cpu", "cuda"):
        assert main(["sparsify", *_common(run), "-o", str(run / f"{device}.h5"), "--device", device]) == 0
    with SparseFile(run / "cpu.h5") as a, SparseFile(run / "cuda.h5") as b:
        cpu, gpu = a.read(0), b.read(0)
    np.testing.assert_array_equal(gpu.frame_ptr, cpu.frame_ptr)
    assert cpu.frame_ptr[-1] > 100
    np.testing.assert_array_equal(gpu.index, cpu.index)
    np.testing.assert_array_equal(gpu.intensity, cpu.intensity)
    np.testing.assert_allclose(gpu.background_avg, cpu.background_avg, rtol=1e-5)


def test_process_on_the_gpu_matches_the_cpu(run):
    """``braggsieve process`` keeps several batches in flight through ``process_many``, in parts."""
    for device in ("cpu", "cuda"):
        assert main(["process", *_common(run), "-o", str(run / f"process_{device}"), "--min-peaks", "5",
                     "--part-size", "4", "--workers", "0", "--device", device, "--no-plot"]) == 0
    cpu, gpu = read_cxi(run / "process_cpu" / "run.cxi"), read_cxi(run / "process_cuda" / "run.cxi")
    np.testing.assert_array_equal(gpu.frame_ptr, cpu.frame_ptr)
    np.testing.assert_allclose(gpu.row, cpu.row, atol=2e-4)
    np.testing.assert_allclose(gpu.intensity, cpu.intensity, rtol=1e-6)
    with SparseFile(run / "process_cpu" / "run_sparse.h5") as a, SparseFile(run / "process_cuda" / "run_sparse.h5") as b:
        cpu_sparse, gpu_sparse = a.read(), b.read()
    np.testing.assert_array_equal(gpu_sparse.frame_ptr, cpu_sparse.frame_ptr)
    np.testing.assert_array_equal(gpu_sparse.index, cpu_sparse.index)
    np.testing.assert_array_equal(gpu_sparse.intensity, cpu_sparse.intensity)
