"""Downstream effect of the bad-pixel mask on peak finding and hit rates (issue 7 item 6, cf. Table 1 of Sadri et
al. 2022): simulated SSX stills with planted hot and noisy pixels, peaks found with no mask (gaps only), a
non-robust mask (the same features with mean +- k sigma instead of the robust fit, as in
benchmarks/mask_accuracy.py) and braggsieve's robust mask, both made from a dark series of the same detector.

    .venv/bin/python benchmarks/mask_downstream.py [--frames 40] [--detector pilatus1m] [--bad-fraction 1e-3 3e-3]
                                                   [--workdir /tmp/mask_downstream]

The run is written once with ``braggsieve.simulate.files.write_run`` (frames, PONI, truth file) under
``--workdir`` and reused; the dark series (32 frames, no X-rays) is recorded with the run's detector response
(same planted defects).  Peaks: engine.cpu.CpuEngine (sigma-clip + engine.peaks.find_peaks, default
parameters); metrics from benchmarks/peaks_quality.py (``Truth``, ``evaluate``) with every reflection whose
centre is on a gap left out, the same denominator for every mask:

* hit rate: frames with >= 10 peaks (the veto's default --min-peaks) / frames, next to the true hit rate;
  hit accuracy = fraction of frames where (npeaks >= 10) equals the truth;
* precision: peaks within 2 px of a truth reflection / all peaks;
* recall: truth reflections with SNR >= 5 that have a peak within 2 px / all of them;
* false peaks on planted pixels: peaks within 1 px of a planted hot/noisy pixel and not near a reflection.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import braggsieve.mask.features as features
from braggsieve.engine.corrections import prepare_corrections
from braggsieve.engine.cpu import CpuEngine
from braggsieve.engine.csr import build_binning
from braggsieve.engine.params import CorrectionParams, IntegrationParams
from braggsieve.geometry import pixels
from braggsieve.io.frames import open_frames
from braggsieve.io.provenance import Provenance
from braggsieve.mask.maker import ArraySeries, make_mask
from braggsieve.mask.params import MaskParams
from braggsieve.simulate.files import run_files, write_run
from braggsieve.simulate.params import BadPixelParams, SetupParams, SsxParams
from braggsieve.simulate.response import record_frames
from braggsieve.simulate.ssx import SsxSimulator, run_geometry
from mask_accuracy import plain_fit
from peaks_quality import Truth, evaluate
from scipy.spatial import cKDTree

DARK_FRAMES = 32
MIN_PEAKS = 10


def simulate(args, bad_fraction: float) -> tuple[SsxSimulator, Path]:
    setup = SetupParams(detector=args.detector, distance=150.0, frames=args.frames, seed=3)
    simulator = SsxSimulator(run_geometry(setup), SsxParams(hit_fraction=0.4),
                             bad_pixels=BadPixelParams(bad_fraction=bad_fraction, bad_types="hot,noisy"),
                             seed=setup.seed)
    files = run_files(Path(args.workdir) / f"{args.detector}_{args.frames}_{bad_fraction:g}.h5")
    if not files.truth.exists():
        write_run(simulator, files.data, args.frames, Provenance.start(argv=["mask_downstream"]),
                  mask_bad_pixels=False)
    return simulator, files


def masks(simulator: SsxSimulator) -> dict[str, np.ndarray]:
    darks = record_frames(np.zeros((DARK_FRAMES, *simulator.shape), np.float32), simulator.response,
                          seed=simulator.seed + 1000, first_frame=0, dtype=simulator.dtype)
    series = [ArraySeries(darks, name="dark")]
    out = {"no mask (gaps only)": simulator.gap.copy()}
    robust = features.robust_gaussian_fit
    try:
        features.robust_gaussian_fit = plain_fit
        for k in (3.0, 8.0):
            bits = make_mask(series, params=MaskParams(lam=k), counting=True, exclude=simulator.gap).bits
            out[f"non-robust mean +- {k:g} sigma"] = bits != 0
    finally:
        features.robust_gaussian_fit = robust
    bits = make_mask(series, params=MaskParams(), counting=True, exclude=simulator.gap).bits
    out["braggsieve (robust, lambda 8)"] = bits != 0
    return out


def find(source, poni, mask: np.ndarray) -> list[np.ndarray]:
    """(row, col) float64 (npeaks, 2) of the peaks of every frame."""
    corrections = prepare_corrections(source.shape, CorrectionParams(polarization=0.99), mask=mask,
                                      solid_angle=pixels.solid_angle(poni),
                                      polarization=pixels.polarization(poni, 0.99))
    integration = IntegrationParams()
    binning = build_binning(pixels.radial_map(poni, integration.unit), integration, mask=corrections.mask)
    engine = CpuEngine(binning, corrections, integration)
    found = []
    for frames, _ in source.iter_batches(4):
        peaks = engine.process(frames, sparse=False).peaks
        for f in range(peaks.nframes):
            a, b = peaks.frame_ptr[f], peaks.frame_ptr[f + 1]
            found.append(np.c_[peaks.row[a:b], peaks.col[a:b]].astype(np.float64))
    return found


def peaks_on(found: list[np.ndarray], planted: np.ndarray, truth: Truth) -> int:
    """Peaks within 1 px of a planted bad pixel and farther than 2 px from every reflection of their frame."""
    tree = cKDTree(np.argwhere(planted))
    count = 0
    for f, peaks in enumerate(found):
        if not len(peaks):
            continue
        near_bad = tree.query(peaks)[0] <= 1.0
        reflections = truth.frame(f)[0]
        if len(reflections):
            near_bad &= cKDTree(reflections).query(peaks)[0] > 2.0
        count += int(near_bad.sum())
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--detector", default="pilatus1m")
    parser.add_argument("--bad-fraction", type=float, nargs="+", default=[1e-3, 3e-3],
                        help="fraction of the pixels planted hot or noisy (one table row group per value)")
    parser.add_argument("--workdir", default="/tmp/mask_downstream")
    args = parser.parse_args()
    print("| planted | mask | masked (planted / good) | hit rate (true) | hit accuracy | precision | "
          "recall (SNR >= 5) | false peaks on planted pixels |")
    print("|---|---|---|---|---|---|---|---|")
    for bad_fraction in args.bad_fraction:
        simulator, files = simulate(args, bad_fraction)
        source = open_frames(str(files.data))
        planted = simulator.bad_types > 0
        truth = Truth(files.truth, simulator.gap)
        frames = list(range(args.frames))
        for name, mask in masks(simulator).items():
            found = find(source, simulator.poni, mask)
            metrics = evaluate(truth, frames, found)
            hit = np.array([len(p) for p in found]) >= MIN_PEAKS
            masked = f"{int((mask & planted).sum())} / {int((mask & ~planted & ~simulator.gap).sum())}"
            print(f"| {int(planted.sum())} hot/noisy | {name} | {masked} | {hit.mean():.3f} "
                  f"({truth.hit[frames].mean():.3f}) | {np.mean(hit == truth.hit[frames]):.3f} | "
                  f"{metrics['precision']:.3f} | {metrics['recall']:.3f} | {peaks_on(found, planted, truth)} |",
                  flush=True)


if __name__ == "__main__":
    main()
