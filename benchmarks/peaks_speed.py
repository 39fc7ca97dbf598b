"""Peak-finding speed on one Eiger-4M frame, sigma-clipping included: braggsieve vs pyFAI OpenCL (PoCL) vs OM.

    python benchmarks/peaks_speed.py RUN.h5 [--frame 1] [--repeats 7] [--pyfai-repeats 3]
           [--om-python /tmp/om_pf8/bin/python]

RUN.h5 from ``braggsieve simulate --detector eiger4m ...`` (see peaks_quality.py); the frame should be a hit.
All three get the same frame, mask (gaps + planted bad pixels), solid-angle and polarisation corrections:

* braggsieve: preprocess + sigma-clip (1000 bins in q, Poisson, Chauvenet, 5 cycles) + find_peaks (defaults),
  numba on all cores; its find_peaks alone is reported too;
* pyFAI ``OCL_PeakFinder.peakfinder`` on PoCL (sigma-clip + peak search in one call);
* OM ``Peakfinder8PeakDetection.find_peaks`` (its own radial statistics), single thread, non-fast mode.

Median of repeats after one warm-up call; prints each figure and braggsieve's speed-up over the others.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from braggsieve.engine.corrections import preprocess
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams
from braggsieve.engine.peaks import PeakParams, find_peaks
from braggsieve.geometry import pixels

from peaks_quality import setup  # same set-up as the quality benchmark
from _peers import median_time

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--frame", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--pyfai-repeats", type=int, default=3)
    parser.add_argument("--om-python", default="/tmp/om_pf8/bin/python")
    args = parser.parse_args(argv)

    source, poni, corr, binning, integration = setup(args.run)
    frame = np.empty((1, *source.shape), source.dtype)
    source.read_into(frame, args.frame)
    clip, params, dspacing = ClipParams(), PeakParams(), pixels.d_spacing(poni)

    def ours():
        pre = preprocess(frame, corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, clip)
        return find_peaks(pre, binning, profile, params, corr, dspacing)

    pre = preprocess(frame, corr, integration.error_model)
    profile = sigma_clip(pre, binning, integration.error_model, clip)
    t_ours, peaks = median_time(ours, args.repeats)
    t_find, _ = median_time(lambda: find_peaks(pre, binning, profile, params, corr, dspacing), args.repeats)
    rows = [("braggsieve preprocess + sigma-clip + peaks", t_ours, int(peaks.npeaks[0])),
            ("braggsieve find_peaks alone", t_find, int(peaks.npeaks[0]))]

    if args.pyfai_repeats:
        from peaks_quality import run_pyfai
        pf, pt = run_pyfai(source, poni, corr, [args.frame] * (args.pyfai_repeats + 1), [(5.0, 5, 3)])
        rows.append(("pyFAI OCL_PeakFinder.peakfinder on PoCL (cutoff 5, 5x5, 3)", pt[0], len(pf[0][-1])))
    if args.om_python and Path(args.om_python).exists():
        with tempfile.TemporaryDirectory() as tmp:
            np.save(Path(tmp) / "frame.npy", frame)
            r_px = pixels.r_mm(poni) * 1e-3 / poni.detector.pixel_size[0]
            np.save(Path(tmp) / "radius.npy", r_px.astype(np.float32))
            np.save(Path(tmp) / "good.npy", (~corr.mask).astype(np.int8))
            spec = {"run": str(Path(tmp) / "frame.npy"), "frames": [0] * (args.repeats + 1),
                    "settings": [{"adc": 10.0, "snr": 5.0, "min_pix": 2}], "out": str(Path(tmp) / "om.npz")}
            (Path(tmp) / "spec.json").write_text(json.dumps(spec))
            subprocess.run([args.om_python, str(HERE / "_om_pf8.py"), str(Path(tmp) / "spec.json")], check=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
            data = np.load(Path(tmp) / "om.npz")
            rows.append(("OM peakfinder8 (adc 10, snr 5, 2 px), 1 thread", float(data["times"][0]),
                         len(data["s0_f0"])))
    print(f"Eiger 4M frame {args.frame} of {args.run.name}, {source.shape[0]}x{source.shape[1]} {source.dtype}; "
          f"load average {os.getloadavg()[0]:.2f}; numba threads {os.environ.get('NUMBA_NUM_THREADS', 'all')}")
    print(f"{'':64s} {'s/frame':>9s} {'peaks':>6s} {'ours faster by':>15s}")
    for name, t, n in rows:
        print(f"{name:64s} {t:9.4f} {n:6d} {t / t_ours:14.1f}x")


if __name__ == "__main__":
    main()
