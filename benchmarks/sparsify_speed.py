"""Sparsify and densify speed on Eiger-4M frames: braggsieve vs pyFAI OpenCL (PoCL) and FabIO's Cython densify.

    python benchmarks/sparsify_speed.py RUN.h5 [--frame 1] [--repeats 7] [--pyfai-repeats 3]

RUN.h5 from ``braggsieve simulate --detector eiger4m --hit-fraction 1 ...`` (RUN.poni beside it).

* sparsify, per frame: braggsieve preprocess + sigma-clip (1000 bins in q, Poisson, Chauvenet, 5 cycles) +
  pick_pixels (cutoff 2, noise 1), numba on all cores, one frame at a time and in batches of --batch frames
  (as the sparsify command runs; per-frame time), against pyFAI's ``OCL_PeakFinder.sparsify`` (the kernel
  behind sparsify-Bragg) on PoCL with the same mask, solid angle, polarisation and parameters;
* densify, per frame, of the pixels braggsieve kept: ``Densifier`` (bin positions computed once per file) against
  ``fabio.ext.dense.densify`` (what FabIO's SparseImage and densify-Bragg call), noiseless and gaussian; the
  noiseless frames are checked equal.

Median of repeats after one warm-up call; prints both figures and the ratio.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from braggsieve.engine.corrections import preprocess
from braggsieve.engine.densify import Densifier
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams
from braggsieve.engine.pick import PickParams, pick_pixels

from peaks_quality import setup  # the same Eiger 4M set-up as the peak benchmarks
from _peers import median_time, pyfai_peak_finder


def pyfai_sparsifier(source, poni, corr):
    """A function frame -> pyFAI SparseFrame, on the PoCL CPU device."""
    engine, corrections = pyfai_peak_finder(source.shape, poni, corr.mask)

    def run(frame):
        return engine.sparsify(frame, **corrections, error_model="poisson", cutoff_clip=0,
                               cycle=5, noise=1.0, cutoff_pick=2.0)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--frame", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pyfai-repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="frames per batch for the batched figure")
    args = parser.parse_args(argv)

    source, poni, corr, binning, integration = setup(args.run)
    frame = np.empty((1, *source.shape), source.dtype)
    source.read_into(frame, args.frame)
    clip, pick = ClipParams(), PickParams()

    def ours():
        pre = preprocess(frame, corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, clip)
        return pick_pixels(frame, pre, binning, profile, pick, corr)

    t_ours, sparse = median_time(ours, args.repeats)
    pre = preprocess(frame, corr, integration.error_model)
    profile = sigma_clip(pre, binning, integration.error_model, clip)
    t_pick, _ = median_time(lambda: pick_pixels(frame, pre, binning, profile, pick, corr), args.repeats)
    batch = np.empty((args.batch, *source.shape), source.dtype)
    source.read_into(batch, 0)

    def ours_batch():
        pre = preprocess(batch, corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, clip)
        return pick_pixels(batch, pre, binning, profile, pick, corr)

    t_batch, batch_sparse = median_time(ours_batch, max(1, args.repeats // 2))
    t_batch /= args.batch
    rows = [("sparsify: braggsieve preprocess + sigma-clip + pick", t_ours, len(sparse.index), t_ours),
            (f"sparsify: braggsieve, batches of {args.batch} frames (as the CLI)", t_batch,
             len(batch_sparse.index) // args.batch, t_batch),
            ("sparsify: braggsieve pick_pixels alone", t_pick, len(sparse.index), t_pick)]
    if args.pyfai_repeats:
        run = pyfai_sparsifier(source, poni, corr)
        data = frame[0].astype(np.float32)
        data[corr.mask] = np.nan
        t_pyfai, result = median_time(lambda: run(data), args.pyfai_repeats)
        rows.append(("sparsify: pyFAI OCL_PeakFinder.sparsify on PoCL", t_pyfai, len(result.index), t_ours))
        rows.append(("  (against braggsieve's batched figure)", t_pyfai, len(result.index), t_batch))

    from fabio.ext import dense
    radius_map = np.array(binning.pixel_radius, dtype=np.float32)  # writable copies: FabIO's Cython needs them
    radial = binning.radial.astype(np.float32)
    norm = np.array(corr.norm, dtype=np.float32)
    densify = Densifier(radius_map, radial, normalization=norm, dtype=sparse.intensity.dtype)
    bg, std = sparse.background_avg, sparse.background_std

    def fabio_densify(noisy):
        return dense.densify(radius_map, radial, sparse.index, sparse.intensity, sparse.intensity.dtype.type(0),
                             sparse.intensity.dtype, bg[0], std[0] if noisy else None, norm)

    for noise in ("none", "gaussian"):
        t_b, ours_frame = median_time(lambda: densify(bg, std, sparse.frame_ptr, sparse.index, sparse.intensity,
                                                      noise=noise), args.repeats)
        t_f, ref_frame = median_time(lambda: fabio_densify(noise == "gaussian"), args.repeats)
        if noise == "none":
            assert np.array_equal(ours_frame[0], ref_frame), "noiseless densify differs from FabIO's"
        rows.append((f"densify {noise}: braggsieve Densifier", t_b, len(sparse.index), t_b))
        rows.append((f"densify {noise}: FabIO Cython densify", t_f, len(sparse.index), t_b))
    t_p, _ = median_time(lambda: densify(bg, std, sparse.frame_ptr, sparse.index, sparse.intensity,
                                         noise="poisson", truncate=(2.0, 1.0)), args.repeats)
    rows.append(("densify poisson, truncated: braggsieve (no FabIO equivalent)", t_p, len(sparse.index), t_p))
    t_c, _ = median_time(lambda: Densifier(radius_map, radial, normalization=norm, dtype=sparse.intensity.dtype),
                         args.repeats)
    rows.append(("densify set-up once per file: braggsieve bin positions", t_c, 0, t_c))

    print(f"Eiger 4M frame {args.frame} of {args.run.name}, {source.shape[0]}x{source.shape[1]} {source.dtype}; "
          f"load average {os.getloadavg()[0]:.2f}; cpus {os.cpu_count()}; "
          f"numba threads {os.environ.get('NUMBA_NUM_THREADS', 'all')}")
    print(f"{'':62s} {'s/frame':>9s} {'pixels':>8s} {'braggsieve faster by':>21s}")
    for name, t, n, reference in rows:
        print(f"{name:62s} {t:9.4f} {n:8d} {t / reference:20.2f}x")


if __name__ == "__main__":
    main()
