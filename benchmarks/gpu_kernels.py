"""Driver for kernel profilers (``ncu``, ``compute-sanitizer``): a few batches of benchmarks/gpu.py's synthetic
frames through the CUDA engine on one stream, nothing timed here.

    ncu --clock-control none -k regex:"sigma_clip|tile_pass" --launch-skip 20 --launch-count 8 \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum python3 benchmarks/gpu_kernels.py --batches 4

Usage: python benchmarks/gpu_kernels.py [--detector eiger4m] [--batch 16] [--batches 4]
"""
from __future__ import annotations

import argparse
import sys

from gpu import CLIP, INTEGRATION, PEAKS, PICK, scene


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="eiger4m")
    parser.add_argument("--batch", type=int, default=16, help="frames per batch (default 16)")
    parser.add_argument("--batches", type=int, default=4, help="batches processed (default 4)")
    args = parser.parse_args(argv)

    import cupy as cp

    from braggsieve.engine.cuda import CudaEngine

    _, _, binning, corrections, distinct, _ = scene(args.detector, 2)
    engine = CudaEngine(binning, corrections, INTEGRATION, CLIP, PICK, PEAKS, streams=1)
    frames = cp.asarray(distinct[[k % len(distinct) for k in range(args.batch)]])
    for _ in range(args.batches):
        result = engine.process(frames)
    print(f"{args.detector}: {len(result.sparse.index) / args.batch:.0f} picked pixels and "
          f"{result.peaks.npeaks.mean():.0f} peaks per frame")
    return 0


if __name__ == "__main__":
    sys.exit(main())
