"""Fixed cost of a sparse file: writing its static maps (radius, normalisation), first file against the next ones.

The part files of ``braggsieve process`` and ``stream`` share one geometry: the first file of a run rounds and
compresses the maps, the next ones copy the compressed chunks (io/sparse.py).  This times empty files of an
Eiger 4M geometry (1000 bins) in a row; ``--fresh`` clears the copy before each file, which is what every file
cost before the copy existed.

Usage: python benchmarks/sparse_static_maps.py [--files 5] [--fresh]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import braggsieve.io.sparse as sparse_io


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5, help="files written in a row (default 5)")
    parser.add_argument("--fresh", action="store_true", help="forget the compressed maps before each file")
    args = parser.parse_args(argv)
    rows, cols = np.mgrid[:2167, :2070]
    radius = (np.hypot(rows - 1000.3, cols - 1020.7) * 0.075).astype(np.float32)
    radius[::500] = np.nan
    normalization = (1 + 0.1 * np.cos(cols / 300.0)).astype(np.float32)
    radial = np.linspace(0.05, 150, 1000)
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for k in range(args.files):
            if args.fresh:
                sparse_io._LAST_MAPS = None
            start = time.perf_counter()
            with sparse_io.SparseWriter(os.path.join(folder, f"part{k}.h5"), radius_map=radius, radial=radial,
                                        unit="r_mm", dtype=np.uint32, normalization=normalization):
                pass
            times.append(time.perf_counter() - start)
    later = statistics.median(times[1:]) if len(times) > 1 else float("nan")
    print(f"static maps of an Eiger 4M sparse file: first {times[0]:.3f} s, then median {later:.3f} s per file "
          f"({'maps compressed for every file' if args.fresh else 'compressed maps copied'}); "
          f"all: {', '.join(f'{t:.3f}' for t in times)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
