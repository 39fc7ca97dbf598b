"""Speed of the mask maker (dark analysis of an AGIPD-like detector, reading HDF5 included) and of the
robust fit against RobustGaussianFittingLibrary (RGFLib, run from its own venv if given).

Run: .venv/bin/python benchmarks/mask_speed.py [--modules 2 --cells 4 --frames 100] [--rgflib /tmp/rgf/bin/python]
Input files are generated once under /tmp/braggsieve_mask_bench (reused).  Projection: time scales with
samples (modules x cells x frames x stages x 65536 pixels); AGIPD-1M with 4 cells is 2.5e9 analog samples.

Full size (docs/mask.md, "Speed"): write the three dark runs, then time the command itself:
  .venv/bin/python benchmarks/mask_speed.py --generate /tmp/bs_agipd --modules 16 --cells 4 --frames 200
  /usr/bin/time -v .venv/bin/braggsieve mask --dark /tmp/bs_agipd/dark0.h5 --dark /tmp/bs_agipd/dark1.h5 \
      --dark /tmp/bs_agipd/dark2.h5 --gain-path /entry/data/gain --detector agipd1m -o /tmp/bs_agipd/mask.h5
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from braggsieve.io.series import HDF5Series, write_series
from braggsieve.mask.maker import make_mask
from braggsieve.mask.params import MaskParams
from braggsieve.mask.robust import robust_gaussian_fit
from braggsieve.simulate.series import IntegratingSeries, IntegratingSeriesParams

RGF_SNIPPET = """
import sys, time, numpy as np, RobustGaussianFittingLibrary as R
T = np.load(sys.argv[1]); R.fitValueTensor(T[:, :8, :8])
times = []
for _ in range(2):
    t = time.perf_counter(); out = R.fitValueTensor(T); times.append(time.perf_counter() - t)
np.save(sys.argv[2], out); print(min(times))
"""


def generate(folder: Path, args) -> None:
    """The three forced-gain dark runs (with gain data) of an AGIPD-like detector, dark<stage>.h5 in
    ``folder``, unless already there."""
    params = IntegratingSeriesParams(frames=args.frames, flat_frames=10, cells=args.cells, modules=args.modules,
                                     rows=512, cols=128)
    if not (folder / "done").exists():
        folder.mkdir(parents=True, exist_ok=True)
        series = IntegratingSeries(params)
        for stage in range(3):
            write_series(folder / f"dark{stage}.h5", series.dark_batches(stage), args.frames,
                         gain_path="/entry/data/gain")
        (folder / "done").touch()


def agipd(args):
    folder = Path("/tmp/braggsieve_mask_bench") / f"m{args.modules}_c{args.cells}_f{args.frames}"
    generate(folder, args)
    darks = [HDF5Series([folder / f"dark{s}.h5"], gain_path="/entry/data/gain") for s in range(3)]
    samples = 3 * args.frames * args.cells * args.modules * 512 * 128
    make_mask([HDF5Series([folder / "dark0.h5"])], params=MaskParams(min_frames=3), counting=False)  # warm-up
    start = time.perf_counter()
    make_mask(darks, params=MaskParams(), counting=False)
    elapsed = time.perf_counter() - start
    rate = samples / elapsed
    print(f"AGIPD-like dark, {args.modules} modules x {args.cells} cells x {args.frames} frames x 3 stages "
          f"(+ gain data): {samples:.3g} analog samples in {elapsed:.1f} s = {rate:.3g} samples/s (HDF5 "
          f"bitshuffle-LZ4 read included)")
    for cells in (4, 352):
        total = 3 * 200 * cells * 16 * 512 * 128
        print(f"  projection AGIPD-1M, {cells} cells x 200 frames x 3 stages: {total:.3g} samples, "
              f"{total / rate / 60:.1f} min")


def rgflib(python):
    rng = np.random.default_rng(0)
    tensor = (100 + 3 * rng.standard_normal((200, 512, 128))).astype("float32")
    hit = rng.random(tensor.shape) < 0.1
    tensor[hit] += 200 * rng.random(hit.sum()).astype("float32")
    robust_gaussian_fit(tensor[:, :8, :8], axis=0)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        mu, sigma, _ = robust_gaussian_fit(tensor, axis=0)
        times.append(time.perf_counter() - start)
    ours = min(times)
    line = f"robust fit of (200, 512, 128), 10 % outliers: braggsieve {ours:.2f} s"
    if python and os.path.exists(python):
        tmp = Path("/tmp/braggsieve_mask_bench")
        tmp.mkdir(exist_ok=True)
        np.save(tmp / "tensor.npy", tensor)
        theirs = float(subprocess.run([python, "-c", RGF_SNIPPET, str(tmp / "tensor.npy"), str(tmp / "rgf.npy")],
                                      check=True, capture_output=True, text=True).stdout.split()[-1])
        out = np.load(tmp / "rgf.npy")
        line += (f", RGFLib fitValueTensor {theirs:.2f} s, ratio {theirs / ours:.1f}x; mean |d mu| "
                 f"{np.mean(np.abs(out[0] - mu)):.4f}, mean sigma {sigma.mean():.3f} vs {out[1].mean():.3f} "
                 f"(truth 3)")
    print(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modules", type=int, default=2)
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rgflib", default="/tmp/rgf/bin/python", help="python of a venv with RGFLib")
    parser.add_argument("--generate", metavar="FOLDER", help="only write the dark runs into FOLDER")
    args = parser.parse_args()
    if args.generate:
        return generate(Path(args.generate), args)
    rgflib(args.rgflib)
    agipd(args)


if __name__ == "__main__":
    sys.exit(main())
