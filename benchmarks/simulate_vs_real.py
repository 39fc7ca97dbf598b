"""Simulated stills against the measured PILATUS3 6M thaumatin stills in ../shared/data/real.

Same geometry for both (the miniCBF header: 0.96859 Angstrom, 351 mm, beam (1261.61, 1306.96) px): the radial
median background per q ring, the number of bright isolated spots per frame, and their widths (intensity-
weighted second moments after subtracting the local background), measured the same way on both.  Prints a
table and writes a figure.

    .venv/bin/python benchmarks/simulate_vs_real.py --frames 6 --figure docs/simulation_vs_real.png
"""
from __future__ import annotations

import argparse
import glob
import os

import fabio
import numpy as np
from scipy import ndimage

from braggsieve.geometry.detectors import get_detector
from braggsieve.geometry.pixels import q_nm
from braggsieve.geometry.poni import Poni
from braggsieve.simulate.params import SsxParams
from braggsieve.simulate.ssx import SsxSimulator

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real", "grid_stills_pilatus3_6m")
EDGES = np.arange(0.0, 42.0, 2.0)  # q rings, nm^-1


def ring_medians(frame: np.ndarray, q: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median counts per q ring of EDGES (NaN where empty)."""
    ring = np.digitize(q, EDGES) - 1
    return np.array([np.median(frame[valid & (ring == i)]) if (valid & (ring == i)).any() else np.nan
                     for i in range(len(EDGES) - 1)])


def spot_widths(frame: np.ndarray, q: np.ndarray, valid: np.ndarray, min_counts: float = 60.0) -> np.ndarray:
    """(n, 3): sigma_row, sigma_col (pixels) and integrated counts of bright isolated spots (background: the
    median of the pixel's 0.2 nm^-1 ring)."""
    image = np.where(valid, frame, 0).astype(np.float64)
    fine = np.arange(0.0, q[valid].max() + 0.2, 0.2)
    ring = np.digitize(q, fine) - 1
    order = np.argsort(ring[valid], kind="stable")
    values, rings = image[valid][order], ring[valid][order]
    bounds = np.searchsorted(rings, np.arange(len(fine) + 1))
    medians = np.array([np.median(values[a:b]) if b > a else 0.0 for a, b in zip(bounds[:-1], bounds[1:])])
    background = medians[np.clip(ring, 0, len(fine) - 1)]
    excess = image - background
    peak = (excess == ndimage.maximum_filter(excess, size=13)) & (excess > min_counts) \
        & (excess > 10 * np.sqrt(np.maximum(background, 1))) & valid
    bad = ndimage.binary_dilation(~valid, iterations=6)
    rows, cols = np.nonzero(peak & ~bad)
    out = []
    for r, c in zip(rows, cols):
        patch = excess[r - 4:r + 5, c - 4:c + 5]
        if patch.shape != (9, 9) or image[r, c] > 1e5:  # overloaded pixels
            continue
        weight = np.clip(patch, 0, None)
        total = weight.sum()
        y, x = np.mgrid[-4:5, -4:5]
        my, mx = (weight * y).sum() / total, (weight * x).sum() / total
        out.append((np.sqrt((weight * (y - my) ** 2).sum() / total), np.sqrt((weight * (x - mx) ** 2).sum() / total),
                    patch.sum()))
    return np.array(out).reshape(-1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=6, help="frames of each kind (default 6)")
    parser.add_argument("--figure", help="write the comparison figure here (PNG)")
    args = parser.parse_args()
    paths = sorted(glob.glob(os.path.join(REAL, "thau_3_2_*.cbf.bz2")))[1:1 + args.frames]  # frame 1 is weak
    if not paths:
        raise SystemExit(f"no real frames under {REAL}")
    poni = Poni.from_beam_center(get_detector("pilatus6m"), 0.351, (1261.61, 1306.96), 0.96859e-10)
    q = q_nm(poni)
    sim = SsxSimulator(poni, SsxParams(hit_fraction=1.0), seed=1)
    simulated, _ = sim.frames(0, args.frames)

    results = {}
    for name, frames in (("real", [fabio.open(p).data for p in paths]), ("simulated", list(simulated))):
        valid_maps = [f >= 0 for f in frames]
        profiles = np.array([ring_medians(f, q, v) for f, v in zip(frames, valid_maps)])
        spots = [spot_widths(f, q, v) for f, v in zip(frames, valid_maps)]
        results[name] = (np.nanmedian(profiles, axis=0), spots, frames[0])

    centres = 0.5 * (EDGES[1:] + EDGES[:-1])
    print("radial median background (counts/pixel) per q ring:")
    print(" q nm^-1  " + " ".join(f"{c:5.0f}" for c in centres))
    for name, (profile, _, _) in results.items():
        print(f"{name:9s} " + " ".join(f"{v:5.1f}" for v in profile))
    print(f"{'':9s} {'spots/frame':>12s} {'sigma_row px':>13s} {'sigma_col px':>13s} {'median counts':>14s}")
    for name, (_, spots, _) in results.items():
        all_spots = np.concatenate(spots)
        print(f"{name:9s} {np.mean([len(s) for s in spots]):12.0f} {np.median(all_spots[:, 0]):13.2f} "
              f"{np.median(all_spots[:, 1]):13.2f} {np.median(all_spots[:, 2]):14.0f}")

    if args.figure:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
        for name, (profile, spots, _) in results.items():
            axes[0].plot(centres, profile, "o-", label=name)
            widths = np.concatenate(spots)
            axes[1].hist(np.hypot(widths[:, 0], widths[:, 1]) / np.sqrt(2), bins=np.linspace(0.3, 2.5, 30),
                         histtype="step", density=True, label=name)
        axes[0].set(xlabel="q (nm$^{-1}$)", ylabel="median counts / pixel", title="background")
        axes[1].set(xlabel="spot sigma (pixels)", ylabel="density", title="widths of bright isolated spots")
        for ax, (name, (_, _, frame)) in zip(axes[2:], results.items()):
            ax.imshow(np.clip(frame[1150:1450, 1100:1400], 0, 60), cmap="gray_r")
            ax.set(title=f"{name} (300x300 px near the beam)", xticks=[], yticks=[])
        axes[0].legend()
        axes[1].legend()
        fig.tight_layout()
        fig.savefig(args.figure, dpi=80)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
