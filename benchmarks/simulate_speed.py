"""Speed of `braggsieve simulate`: frames per second on a detector, file writing included.

Target (issue 3): 1000 EIGER 4M frames in <= 180 s on the 2-core machine.  There is no peer simulator; the
reference figures printed beside ours are (1) numpy's Generator.poisson drawing the same frame's noise on one
thread (what a plain numpy simulator would spend on noise alone) and (2) writing already-made frames with
h5py + bitshuffle-LZ4 (the I/O floor).  Each figure is the median over frames after one warm-up batch.

    .venv/bin/python benchmarks/simulate_speed.py --detector eiger4m --frames 40
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import h5py
import hdf5plugin
import numpy as np

from braggsieve.io.provenance import Provenance
from braggsieve.simulate.files import write_run
from braggsieve.simulate.params import SetupParams
from braggsieve.simulate.response import record_frames
from braggsieve.simulate.ssx import SsxSimulator, run_geometry


def _median_time(func, repeats):
    func()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="eiger4m")
    parser.add_argument("--frames", type=int, default=40, help="frames of the end-to-end run (default 40)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each stage timing (default 5)")
    args = parser.parse_args()

    print(f"load average {os.getloadavg()}, numba threads {os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    start = time.perf_counter()
    sim = SsxSimulator(run_geometry(SetupParams(detector=args.detector)))
    print(f"{args.detector} {sim.shape[0]}x{sim.shape[1]} {sim.dtype}: setup {time.perf_counter() - start:.2f} s, "
          f"{len(sim.hkl)} reflections to d = {sim.d_min:.2f} A")

    hit_frame = next(i for i in range(100) if sim.truth(i).hit)
    truth = sim.truth(hit_frame)
    expected = np.empty((1, *sim.shape), np.float32)
    t_truth = _median_time(lambda: sim.truth(hit_frame), args.repeats)
    t_expected = _median_time(lambda: sim.expected(truth, expected[0]), args.repeats)
    t_noise = _median_time(lambda: record_frames(expected, sim.response, 1, 0, sim.dtype), args.repeats)
    rng = np.random.default_rng(0)
    t_numpy = _median_time(lambda: rng.poisson(expected[0]), args.repeats)
    raw = record_frames(expected, sim.response, 1, 0, sim.dtype)
    with tempfile.TemporaryDirectory() as folder:
        with h5py.File(os.path.join(folder, "w.h5"), "w") as handle:
            data = handle.create_dataset("d", shape=(args.repeats + 1, *sim.shape), dtype=sim.dtype,
                                         chunks=(1, *sim.shape), **hdf5plugin.Bitshuffle())
            counter = iter(range(args.repeats + 1))
            t_write = _median_time(lambda: data.__setitem__(next(counter), raw[0]), args.repeats)
        start, cpu_start = time.perf_counter(), time.process_time()
        write_run(sim, os.path.join(folder, "run.h5"), args.frames, Provenance.start(), progress=False)
        t_total = (time.perf_counter() - start) / args.frames
        cpu_total = (time.process_time() - cpu_start) / args.frames

    print(f"{'stage (per frame)':34s} {'ours':>9s} {'reference':>10s} {'ratio':>7s}")
    print(f"{'truth (hit: reflections on Ewald)':34s} {t_truth * 1e3:8.1f}ms")
    print(f"{'expected photons (bg + spots)':34s} {t_expected * 1e3:8.1f}ms")
    print(f"{'noise: ours vs numpy poisson':34s} {t_noise * 1e3:8.1f}ms {t_numpy * 1e3:9.1f}ms "
          f"{t_numpy / t_noise:6.2f}x")
    print(f"{'bitshuffle-LZ4 write (h5py)':34s} {'':9s} {t_write * 1e3:9.1f}ms")
    print(f"{'end to end, ' + str(args.frames) + ' frames, 40% hits':34s} {t_total * 1e3:8.1f}ms")
    print(f"{'  CPU time (all threads)':34s} {cpu_total * 1e3:8.1f}ms")
    print(f"1000 frames: {t_total * 1000:.0f} s wall (target 180 s: {'met' if t_total * 1000 <= 180 else 'MISSED'}); "
          f"{cpu_total * 1000:.0f} CPU s, i.e. >= {cpu_total * 500:.0f} s on 2 idle cores")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
