"""Accuracy of the mask maker on simulated series with planted defects, across lambda, robust vs non-robust.

The non-robust baseline is the same pipeline (same features F1-F6, same blocks) with the robust Gaussian
fit replaced by the plain mean and standard deviation (mean +- lambda sigma), as in the paper's Table 1.
Run: .venv/bin/python benchmarks/mask_accuracy.py
"""
from __future__ import annotations

import numpy as np

import braggsieve.mask.features as features
from braggsieve.mask.maker import ArraySeries, make_mask
from braggsieve.mask.params import MaskParams
from braggsieve.simulate.badpixels import plant_bad_pixels
from braggsieve.simulate.params import DEFECT_TYPES, BadPixelParams, NoiseParams
from braggsieve.simulate.response import nominal_response, record_frames
from braggsieve.simulate.series import (COUNTING_TYPES, INTEGRATING_TYPES, CountingSeries, CountingSeriesParams,
                                        IntegratingSeries, IntegratingSeriesParams)

ROBUST_FIT = features.robust_gaussian_fit


def plain_fit(values, axis=-1, *, lam=3.0, likely=0.5, min_sigma=0.0):
    """Non-robust stand-in: mean and std (ddof=1) of the finite samples."""
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(values, axis=axis)
        sigma = np.maximum(np.nanstd(values, axis=axis, ddof=1), min_sigma)
    return mu, sigma, np.sum(np.isfinite(values), axis=axis)


def score(bits, truth, types):
    bad = bits != 0
    truth = np.broadcast_to(truth, bad.shape)
    per_type = {name: bad[truth == code].mean() for code, name in enumerate(types) if code and name != "-"}
    return bad[truth > 0].mean(), bad[truth == 0].mean(), per_type


DARK_VISIBLE = "hot,noisy,offset,bimodal,stuck"


def simulated_detector_dark(shape=(1024, 1024), frames=32):
    """A Pilatus-like (int32, marker -1) zero-count dark series recorded with braggsieve.simulate's detector
    model, with the defect types a dark can reveal planted (dead, under- and over-responding need light).
    Returns (dark frames, truth codes (ny, nx), type names indexed by code)."""
    rng = np.random.default_rng(7)
    gap = np.zeros(shape, bool)
    response = nominal_response(shape, gap, -1, NoiseParams(), True, rng)
    truth, response = plant_bad_pixels(response, BadPixelParams(bad_fraction=1e-3, bad_types=DARK_VISIBLE), rng)
    darks = record_frames(np.zeros((frames,) + shape, np.float32), response, seed=8, first_frame=0, dtype=np.int32)
    names = ["good"] + sorted(DEFECT_TYPES, key=DEFECT_TYPES.get)
    return darks, truth, tuple(name if name in DARK_VISIBLE.split(",") or name == "good" else "-" for name in names)


def main():
    counting = CountingSeries(CountingSeriesParams(shape=(256, 512), dark_frames=50, flat_frames=50))
    dark_c, flat_c = [ArraySeries(counting.dark())], [ArraySeries(counting.flat())]
    integ = IntegratingSeries(IntegratingSeriesParams(frames=60, flat_frames=60, cells=2, modules=2))
    darks_i = [ArraySeries(*integ.dark(s)) for s in range(3)]
    flats_i = [ArraySeries(integ.flat())]
    sim_dark, sim_truth, sim_types = simulated_detector_dark()
    cases = [("counting 256x512, 50+50 frames", dark_c, flat_c, True, counting.truth, COUNTING_TYPES),
             ("simulate's detector model, zero-count dark 1024x1024, 32 frames", [ArraySeries(sim_dark)], [],
              True, sim_truth, sim_types),
             ("AGIPD-like 2 cells x 2 x 128x128, 3 stages x 60 + 60 flat", darks_i, flats_i, False, integ.truth,
              INTEGRATING_TYPES)]
    print("| detector | fit | lambda | recall | FPR | weakest type (recall) |")
    print("|---|---|---|---|---|---|")
    for label, darks, flats, is_counting, truth, types in cases:
        for fit_name, fit in (("robust", ROBUST_FIT), ("mean+-std", plain_fit)):
            features.robust_gaussian_fit = fit
            for lam in (7.0, 8.0, 10.0, 12.0):
                result = make_mask(darks, flats, params=MaskParams(lam=lam), counting=is_counting)
                recall, fpr, per_type = score(result.bits, truth, types)
                weakest = min(per_type, key=per_type.get)
                print(f"| {label} | {fit_name} | {lam:g} | {100 * recall:.2f} % | {fpr:.1e} | "
                      f"{weakest} ({100 * per_type[weakest]:.1f} %) |", flush=True)
    features.robust_gaussian_fit = ROBUST_FIT


if __name__ == "__main__":
    main()
