"""Peaks on the real Pilatus 6M grid stills (../shared/data/real): peaks per frame and a picture.

    python benchmarks/peaks_real.py [--out /tmp/peaks_real] [--png docs/peaks_pilatus6m.png]

Runs ``braggsieve peaks`` on the ten CBF stills (geometry from their miniCBF headers), prints the peaks per
frame, and draws the peaks over a crop of frame 2 (the brightest hits are frames 2-10, frame 1 is weak).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from braggsieve.cli import main as braggsieve
from braggsieve.io.cxi import read_cxi
from braggsieve.io.frames import open_frames

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "grid_stills_pilatus3_6m"


def picture(frames_glob: str, peaks, frame: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = open_frames(frames_glob, frames=f"{frame}:{frame + 1}")
    image = np.empty((1, *source.shape), source.dtype)
    source.read_into(image, 0)
    image = image[0].astype(np.float64)
    image[image < 0] = np.nan
    a, b = peaks.frame_ptr[frame], peaks.frame_ptr[frame + 1]
    rows, cols = peaks.row[a:b], peaks.col[a:b]
    cy, cx = 1307, 1262  # beam centre (Beam_xy), crop 800 x 800 px around it
    window = (slice(cy - 400, cy + 400), slice(cx - 400, cx + 400))
    fig, ax = plt.subplots(figsize=(6, 6), constrained_layout=True)
    ax.imshow(np.log1p(np.clip(image[window], 0, None)), cmap="gray_r", origin="upper",
              extent=(cx - 400 - 0.5, cx + 400 - 0.5, cy + 400 - 0.5, cy - 400 - 0.5))
    inside = (np.abs(rows - cy) < 400) & (np.abs(cols - cx) < 400)
    ax.scatter(cols[inside], rows[inside], s=40, facecolors="none", edgecolors="tab:red", linewidths=0.8)
    ax.set(title=f"thaumatin still {frame + 1} (Pilatus3 6M): {b - a} peaks, {inside.sum()} in this crop",
           xlabel="column (fast)", ylabel="row (slow)")
    fig.savefig(png, dpi=64)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/tmp/peaks_real"))
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args(argv)
    files = str(DATA / "thau_3_2_*.cbf.bz2")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    code = braggsieve(["peaks", files, "-o", str(args.out / "pilatus6m.cxi"), "--unit", "2th_deg",
                       "--polarization", "0.99"])
    elapsed = time.perf_counter() - t0
    if code:
        raise SystemExit(code)
    peaks = read_cxi(args.out / "pilatus6m.cxi")
    print(f"peaks per frame: {peaks.npeaks.tolist()} ({elapsed:.1f} s for {peaks.nframes} frames incl. reading "
          f"and decompressing the CBF files and copying them into the CXI file)")
    print(f"median peak SNR per frame: {[round(float(np.median(peaks.snr[a:b])), 1) if b > a else 0 for a, b in zip(peaks.frame_ptr[:-1], peaks.frame_ptr[1:])]}")
    if args.png:
        picture(files, peaks, 1, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
