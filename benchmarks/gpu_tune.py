"""Launch shapes of the CUDA engine's kernels, one factor at a time (issue 6): GPU time of each stage per frame.

For every setting the engine's module constants are changed, the kernels recompiled, and the same Eiger 4M
frames (benchmarks/gpu.py's scene, already on the GPU) processed with one stream; the outputs must equal the
first setting's (picked pixels, peaks, background), else the setting is reported as wrong.

Usage: python benchmarks/gpu_tune.py [--batches 20] [--detector eiger4m] [--set NAME=VALUE,... ...]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from gpu import CLIP, INTEGRATION, PEAKS, PICK, scene

# one factor at a time from the engine's defaults; the last two are the fallbacks (whole-window zinger scan,
# background tables read from device memory)
SETTINGS = [
    {},
    {"TILE_W": 32}, {"TILE_H": 32}, {"TILE_WARPS": 4}, {"TILE_MIN_BLOCKS": 4}, {"CLIP_MIN_BLOCKS": 4},
    {"CLIP_SMALL_BLOCK": 256}, {"CLIP_SMALL_BLOCK": 64}, {"CLIP_SMALL_CAP": 8192},
    {"CLASS_STEP": 2048}, {"CLIP_BATCH": 2}, {"CLIP_BATCH": 8}, {"PEAK_LANES": 8}, {"PEAK_LANES": 32},
    {"ZINGER_LIST": 4}, {"TILE_BINS": 1},
]


def parse(text: str) -> dict:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))}


def run(setting: dict, binning, corrections, frames, batches: int):
    import cupy as cp

    from braggsieve.engine.cuda import engine as module

    saved = {k: getattr(module, k) for k in setting}
    try:
        for k, v in setting.items():
            setattr(module, k, v)
        module._module.cache_clear()
        engine = module.CudaEngine(binning, corrections, INTEGRATION, CLIP, PICK, PEAKS, streams=1)
        result = engine.process(frames[0])  # compiles, warms up
        engine.stage_ms = {}
        nframes = 0
        start = time.perf_counter()
        for k in range(batches):
            engine.process(frames[k % len(frames)])
            nframes += frames[0].shape[0]
        cp.cuda.runtime.deviceSynchronize()
        wall = time.perf_counter() - start
        stages = {k: 1000 * v / nframes for k, v in engine.stage_ms.items()}
        return result, stages, nframes / wall
    finally:
        for k, v in saved.items():
            setattr(module, k, v)
        module._module.cache_clear()


def same(a, b) -> bool:
    return (np.array_equal(a.sparse.index, b.sparse.index) and np.array_equal(a.peaks.index, b.peaks.index)
            and np.array_equal(a.profile.mean, b.profile.mean, equal_nan=True))


def main(argv=None) -> int:
    import cupy as cp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 16 frames per setting (default 20)")
    parser.add_argument("--detector", default="eiger4m")
    parser.add_argument("--set", dest="settings", action="append", type=parse,
                        help="a setting NAME=VALUE,... (repeatable; default: the built-in list)")
    args = parser.parse_args(argv)
    _, _, binning, corrections, distinct, _ = scene(args.detector, 4)
    batch = np.concatenate([distinct] * 4)
    frames = [cp.asarray(np.roll(batch, k, axis=0)) for k in range(2)]
    reference = None
    print(f"{'setting':36s} {'clip':>7s} {'tiles':>7s} {'scan':>7s} {'emit':>7s} {'total':>7s} {'fps 1 stream':>12s}  same")
    for setting in args.settings or SETTINGS:
        name = ",".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
        try:
            result, stages, fps = run(setting, binning, corrections, frames, args.batches)
        except cp.cuda.compiler.CompileException as error:  # e.g. a tile whose shared arrays exceed 48 kB
            print(f"{name:36s} does not compile: {str(error).strip().splitlines()[-1][:100]}", flush=True)
            continue
        reference = reference or result
        print(f"{name:36s} {stages.get('clip', 0):7.1f} {stages.get('tiles', 0):7.1f} {stages.get('scan', 0):7.1f} "
              f"{stages.get('emit', 0):7.1f} {sum(stages.values()):7.1f} {fps:12.0f}  {same(result, reference)}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
