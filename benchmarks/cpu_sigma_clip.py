"""CPU sigma-clipping: braggsieve (numba) against pyFAI's Cython CSR engine, on one Eiger 4M frame.

One 2167 x 2070 uint32 frame (4.49 Mpixel, Eiger module gaps masked, Poisson background falling with q,
2000 single-pixel spots of 100-10000 counts), 1000 bins in q_nm^-1, solid-angle correction, Poisson error
model, Chauvenet's cut-off (cutoff 0), 5 iterations.  Both engines get the same mask and geometry; the CSR
matrices are built once, outside the timing (so is braggsieve's CSR-ordered norm map, cached by the
warm-up call as in any run).  Prints the median time per frame over REPEATS runs after a
warm-up, for: braggsieve preprocess alone, braggsieve preprocess + sigma_clip (what pyFAI's call does),
pyFAI sigma_clip_ng, and the ratio.  Also checks that both give the same background.

    .venv/bin/python benchmarks/cpu_sigma_clip.py [--repeats 7] [--batch 1]

On a machine busier than its cores (load average above the core count), OpenMP's spinning threads waste
the CPU: compare with NUMBA_THREADING_LAYER=workqueue or OMP_WAIT_POLICY=passive (the latter also applies to
pyFAI's OpenMP loops).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import numpy as np


def median_times(funcs, repeats):
    """Median wall and CPU (all threads) seconds of each function; the functions are run in turn within
    each repeat so that a change of machine load affects all of them alike."""
    for func in funcs:
        func()  # warm-up (numba compilation, pyFAI engine set-up)
    wall = [[] for _ in funcs]
    cpu = [[] for _ in funcs]
    for _ in range(repeats):
        for i, func in enumerate(funcs):
            start, start_cpu = time.perf_counter(), time.process_time()
            func()
            wall[i].append(time.perf_counter() - start)
            cpu[i].append(time.process_time() - start_cpu)
    return [statistics.median(w) for w in wall], [statistics.median(c) for c in cpu]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1, help="frames per braggsieve call (pyFAI: one by one)")
    args = parser.parse_args()
    logging.getLogger("pyFAI").setLevel(logging.ERROR)
    import numba
    from pyFAI.detectors import detector_factory
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    from braggsieve.engine.corrections import prepare_corrections, preprocess
    from braggsieve.engine.csr import build_binning
    from braggsieve.engine.integrate import sigma_clip
    from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams

    detector = detector_factory("Eiger4M")
    shape = detector.max_shape
    mask = detector.mask.astype(bool)
    ai = AzimuthalIntegrator(dist=0.15, poni1=shape[0] * 75e-6 / 2, poni2=shape[1] * 75e-6 / 2,
                             detector=detector, wavelength=1e-10)
    rng = np.random.default_rng(0)
    q = ai.array_from_unit(shape, "center", "q_nm^-1", scale=True)
    frame = rng.poisson(50 * np.exp(-q / 4) + 5).astype(np.uint32)
    spots = rng.choice(frame.size, 2000, replace=False)
    frame.flat[spots] += rng.integers(100, 10000, spots.size).astype(np.uint32)
    frame[mask] = 0xFFFFFFFF
    frames = np.repeat(frame[np.newaxis], args.batch, axis=0)

    params = IntegrationParams(bins=1000, unit="q_nm^-1", error_model="poisson")
    binning = build_binning(q, params, mask=mask)
    corrections = prepare_corrections(shape, CorrectionParams(solid_angle=True), mask=mask,
                                      solid_angle=ai.solidAngleArray(shape))
    clip = ClipParams(cutoff_clip=0.0, cycles=5)

    def ours_pre():
        return preprocess(frames, corrections, "poisson")

    def ours_full():
        return sigma_clip(preprocess(frames, corrections, "poisson"), binning, "poisson", clip)

    def theirs():
        return ai.sigma_clip_ng(frame, 1000, unit="q_nm^-1", method=("no", "csr", "cython"), error_model="poisson",
                                mask=mask, correctSolidAngle=True, thres=0.0, max_iter=5)

    wall, cpu = median_times([ours_pre, ours_full, theirs], args.repeats)
    per_frame = [args.batch, args.batch, 1]
    (t_pre, t_ours, t_pyfai), (c_pre, c_ours, c_pyfai) = ([t / n for t, n in zip(times, per_frame)]
                                                          for times in (wall, cpu))
    ours, ref = ours_full(), theirs()
    filled = ref.count > 10
    agree = np.max(np.abs(ours.mean[0][filled] / ref.intensity[filled] - 1))
    print(f"frame {shape[0]}x{shape[1]} uint32, {binning.nnz} pixels binned, 1000 bins, poisson, Chauvenet, "
          f"5 cycles, batch {args.batch}, numba threads {numba.get_num_threads()} ({numba.threading_layer()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}), "
          f"load average {os.getloadavg()[0]:.2f}")
    print("per frame                      wall ms    CPU ms (all threads)")
    print(f"braggsieve preprocess          {t_pre * 1e3:8.1f}  {c_pre * 1e3:8.1f}")
    print(f"braggsieve preprocess+clip     {t_ours * 1e3:8.1f}  {c_ours * 1e3:8.1f}")
    print(f"pyFAI sigma_clip_ng (Cython)   {t_pyfai * 1e3:8.1f}  {c_pyfai * 1e3:8.1f}")
    print(f"speed-up (pyFAI / braggsieve)  {t_pyfai / t_ours:8.2f}x {c_pyfai / c_ours:8.2f}x   "
          f"(max relative difference of the clipped means where count > 10: {agree:.1e})")

if __name__ == "__main__":
    main()
