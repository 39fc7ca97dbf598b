"""Regenerate ``pyfai_sparse_tiny.h5``: a tiny file written by pyFAI's own ``sparsify-Bragg`` (PoCL, CPU OpenCL).

Three uint32 frames of a 64 x 80 detector (172 um pixels, 0.05 m, beam near the centre), smooth background
``20 exp(-r / 6 mm) + 3`` counts with Poisson noise, 6 Gaussian spots per frame, two masked columns.
Run from the repository root (needs pyopencl with an OpenCL platform, e.g. Debian's pocl-opencl-icd)::

    .venv/bin/python tests/data/make_pyfai_sparse.py

It writes ``tests/data/pyfai_sparse_tiny.h5`` (the pyFAI output), ``..._frames.npy`` (the input frames) and
``..._mask.npy`` (the mask given to pyFAI), so tests can compare braggsieve's densification of pyFAI's file
with the frames pyFAI started from.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import fabio
import h5py
import numpy as np
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE = (64, 80)


def main():
    rng = np.random.default_rng(20240601)
    det = Detector(pixel1=172e-6, pixel2=172e-6, max_shape=SHAPE)
    ai = AzimuthalIntegrator(dist=0.05, poni1=31.3 * 172e-6, poni2=40.6 * 172e-6, detector=det,
                             wavelength=1e-10)
    r_mm = ai.array_from_unit(unit="r_mm")
    mask = np.zeros(SHAPE, np.int8)
    mask[:, 10:12] = 1
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    frames = []
    for _ in range(3):
        frame = 20.0 * np.exp(-r_mm / 6.0) + 3.0
        for y, x, amp in zip(rng.uniform(4, 60, 6), rng.uniform(4, 76, 6), rng.uniform(50, 500, 6)):
            frame += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
        frames.append(rng.poisson(frame).astype(np.uint32))
    frames = np.stack(frames)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "tiny.h5")
        with h5py.File(src, "w") as h5:
            h5["/entry/data/data"] = frames
        ai.save(os.path.join(tmp, "tiny.poni"))
        fabio.edfimage.EdfImage(data=mask).write(os.path.join(tmp, "mask.edf"))
        subprocess.run([os.path.join(os.path.dirname(sys.executable), "sparsify-Bragg"), "-p",
                        os.path.join(tmp, "tiny.poni"), "-m", os.path.join(tmp, "mask.edf"), "--device-type", "cpu",
                        "--bins", "50", "--unit", "r_mm", "--cutoff-pick", "3", "-A", "-P", "0.99",
                        "-o", "{basename}_sparse.h5", src], check=True, cwd=tmp)
        shutil.copyfile(os.path.join(tmp, "tiny_sparse.h5"), os.path.join(HERE, "pyfai_sparse_tiny.h5"))
    np.save(os.path.join(HERE, "pyfai_sparse_tiny_frames.npy"), frames)
    np.save(os.path.join(HERE, "pyfai_sparse_tiny_mask.npy"), mask)


if __name__ == "__main__":
    main()
