"""Host time of the CUDA engine's batch loop (issue 6): how much of each batch's GPU time the Python side uses.

With frames already on the GPU, ``CudaEngine.process_many`` keeps ``streams`` batches in flight: for each batch
the host submits the kernels and copies (``submit``), later waits for the batch (``wait``) and turns its outputs
into numpy results (``collect``: result copies, the profile from the sums).  While submit + collect stay well
below the GPU time of a batch, the GPU never waits for the host; the margin says how much host noise the
frame rate tolerates.  Prints frames/s and the per-batch medians and maxima (ms) of each timed run.

Usage (GPU machine): python benchmarks/gpu_host.py [--detector eiger4m] [--batch 16] [--batches 40] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from gpu import CLIP, INTEGRATION, PEAKS, PICK, scene


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="eiger4m")
    parser.add_argument("--batch", type=int, default=16, help="frames per batch (default 16)")
    parser.add_argument("--batches", type=int, default=40, help="batches per timed run (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up (default 3)")
    args = parser.parse_args(argv)

    import cupy as cp

    from braggsieve.engine.cuda import CudaEngine
    from braggsieve.engine.cuda import engine as module

    _, _, binning, corrections, distinct, _ = scene(args.detector, 4)
    engine = CudaEngine(binning, corrections, INTEGRATION, CLIP, PICK, PEAKS)
    pool = np.concatenate([distinct] * (-(-4 * args.batch // len(distinct))))
    batches = [cp.asarray(pool[k * args.batch:(k + 1) * args.batch]) for k in range(4)]
    spent: dict[str, list[float]] = {"submit": [], "wait": [], "collect": []}
    submit, collect = module._Slot.submit, module._Slot.collect

    def timed_submit(slot, *args_, **kwargs):
        start = time.perf_counter()
        submit(slot, *args_, **kwargs)
        spent["submit"].append(time.perf_counter() - start)

    def timed_collect(slot):
        start = time.perf_counter()
        slot.event.synchronize()
        ready = time.perf_counter()
        result = collect(slot)
        spent["wait"].append(ready - start)
        spent["collect"].append(time.perf_counter() - ready)
        return result

    module._Slot.submit, module._Slot.collect = timed_submit, timed_collect
    try:
        for run in range(args.repeats + 1):
            for values in spent.values():
                values.clear()
            start = time.perf_counter()
            for _ in engine.process_many(batches[k % len(batches)] for k in range(args.batches)):
                pass
            wall = time.perf_counter() - start
            if run == 0:
                continue  # warm-up: compiles the kernels
            rate, per_batch = args.batch * args.batches / wall, 1e3 * wall / args.batches
            print(f"{args.detector}: {rate:.0f} frames/s, {per_batch:.3f} ms a batch; host ms a batch: " + ", ".join(
                      f"{name} median {1e3 * statistics.median(v):.3f} max {1e3 * max(v):.3f}"
                      for name, v in spent.items()), flush=True)
    finally:
        module._Slot.submit, module._Slot.collect = submit, collect
    return 0


if __name__ == "__main__":
    sys.exit(main())
