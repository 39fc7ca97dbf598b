"""Whole-command comparison: ``braggsieve sparsify`` against pyFAI's ``sparsify-Bragg`` (PoCL) on the same run.

    python benchmarks/sparsify_cli.py RUN.h5 [--workdir DIR]

RUN.h5 from ``braggsieve simulate`` (RUN.poni beside it; its NXmx pixel_mask is given to pyFAI as an EDF mask).
Both: 1000 bins in q (nm^-1), Poisson, Chauvenet (cutoff-clip 0), 5 cycles, cutoff-pick 2, noise 1, solid angle,
polarisation 0.99.  Prints wall time (reading, computing and writing included, numba compilation cached from an
earlier run), pixels kept, file size and ratio against the input stored with bitshuffle-LZ4, side by side.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from braggsieve.io.frames import open_frames
from braggsieve.pipeline.quality import bslz4_bytes


def timed(cmd, cwd):
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    run = args.run.resolve()
    poni = run.with_suffix(".poni")
    bindir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        import fabio
        with h5py.File(run) as h5:
            mask = h5["/entry/instrument/detector/pixel_mask"][()] != 0
        fabio.edfimage.EdfImage(data=mask.astype(np.int8)).write(str(tmp / "mask.edf"))
        source = open_frames([run])
        input_bytes = sum(bslz4_bytes(frames) for frames, _ in source.iter_batches(8))
        common = ["--bins", "1000", "--unit", "q_nm^-1", "--cutoff-clip", "0", "--cutoff-pick", "2", "--noise", "1",
                  "--error-model", "poisson"]
        ours = timed([str(bindir / "braggsieve"), "sparsify", str(run), "--poni", str(poni), "-o", "ours.h5",
                      "--polarization", "0.99", "--cycles", "5", *common], tmp)
        theirs = timed([str(bindir / "sparsify-Bragg"), "-p", str(poni), "-m", "mask.edf", "--device-type", "cpu",
                        "-A", "-P", "0.99", "--cycle", "5", *common, "-o", "{basename}_pyfai.h5", str(run)], tmp)
        rows = []
        for name, seconds, path in (("braggsieve sparsify", ours, tmp / "ours.h5"),
                                    ("pyFAI sparsify-Bragg (PoCL)", theirs, tmp / f"{run.stem}_pyfai.h5")):
            with h5py.File(path) as h5:
                kept = np.diff(h5["entry_0000/sparse_frames/frame_ptr"][()]).mean()
            rows.append((name, seconds, kept, os.path.getsize(path)))
    print(f"{run.name}: {source.nframes} frames {source.shape} {source.dtype}, input with bitshuffle-LZ4 "
          f"{input_bytes / 1e6:.1f} MB; load average {os.getloadavg()[0]:.2f}, cpus {os.cpu_count()}")
    print(f"{'':30s} {'wall s':>8s} {'s/frame':>8s} {'kept/frame':>11s} {'file MB':>8s} {'ratio':>7s}")
    for name, seconds, kept, size in rows:
        print(f"{name:30s} {seconds:8.1f} {seconds / source.nframes:8.3f} {kept:11.0f} {size / 1e6:8.2f} "
              f"{input_bytes / size:6.2f}x")
    print(f"braggsieve faster by {rows[1][1] / rows[0][1]:.2f}x, file smaller by {rows[1][3] / rows[0][3]:.2f}x")


if __name__ == "__main__":
    main()
