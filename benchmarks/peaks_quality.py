"""Peak-finding quality on simulated SSX frames with ground truth: braggsieve vs pyFAI (OpenCL) vs OM peakfinder8.

    python benchmarks/peaks_quality.py RUN.h5 [--pyfai-frames 10] [--om-python /tmp/om_pf8/bin/python]
           [--grid] [--json out.json]

RUN.h5 comes from ``braggsieve simulate`` (RUN.poni and RUN_truth.h5 next to it), e.g.::

    braggsieve simulate -o /tmp/pkbench/ssx.h5 --detector eiger4m --frames 100 --hit-fraction 0.4 --seed 5 \\
        --lowq 45 --floor 3 --zingers 5 --mask-bad-pixels

Metrics, the same code for every finder, on the same frames and the same mask (gaps + planted bad pixels):

* precision: peaks within 2 px of a truth reflection (any strength) / all peaks;
* recall: truth reflections with SNR >= 5 (SNR = photons / sqrt(photons + 9 * background), background = the
  expected photons per pixel at the spot) that have a peak within 2 px / all of them; reflections whose centre
  pixel is masked are left out for every finder;
* centroid: RMS distance of those matched peaks to their reflection, px; also on the reflections that both
  braggsieve and the peer found (like for like: a finder that misses the faint reflections has a lower RMS);
* zingers: peaks within 1 px of a zinger pixel and farther than 2 px from every reflection;
* hit accuracy: (npeaks >= MIN_PEAKS) == truth hit flag, MIN_PEAKS scanned, best reported with its value;
* time: finder time per frame (braggsieve: preprocess + sigma-clip + peaks; pyFAI: its peakfinder call, which
  sigma-clips too; OM: find_peaks, single thread), median over frames after one warm-up frame.

pyFAI (``OCL_PeakFinder`` on the PoCL CPU device, ~5 s/frame here) runs on the first --pyfai-frames frames
only; OM peakfinder8 (``ondamonitor``, needs numpy < 2) runs in its own virtual environment through
benchmarks/_om_pf8.py.  Every finder's figures are computed on the frames it ran on; braggsieve's figures are
also given on the pyFAI subset so that the comparison is like for like.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial import cKDTree

from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.peaks import PeakParams, find_peaks
from braggsieve.geometry import pixels, read_poni
from braggsieve.io.frames import open_frames
from _peers import pyfai_peak_finder

HERE = Path(__file__).resolve().parent


# -- ground truth and metrics ----------------------------------------------------------------------------------
class Truth:
    def __init__(self, path: Path, mask: np.ndarray):
        with h5py.File(path, "r") as f:
            t = f["truth"]
            self.hit = t["frames/hit"][()]
            self.bg_scale = t["frames/background_scale"][()]
            self.rptr = t["frames/reflection_ptr"][()]
            self.zptr = t["frames/zinger_ptr"][()]
            self.rows = t["reflections/row"][()]
            self.cols = t["reflections/col"][()]
            self.photons = t["reflections/photons"][()].astype(np.float64)
            self.zrows = t["zingers/row"][()]
            self.zcols = t["zingers/col"][()]
            background = t["background"][()]
        ny, nx = mask.shape
        ri = np.clip(np.round(self.rows).astype(int), 0, ny - 1)
        ci = np.clip(np.round(self.cols).astype(int), 0, nx - 1)
        frame = np.repeat(np.arange(len(self.hit)), np.diff(self.rptr))
        bg = background[ri, ci] * self.bg_scale[frame]
        self.snr = self.photons / np.sqrt(self.photons + 9 * bg)
        self.visible = ~mask[ri, ci]

    def frame(self, f):
        a, b = self.rptr[f], self.rptr[f + 1]
        za, zb = self.zptr[f], self.zptr[f + 1]
        return (np.c_[self.rows[a:b], self.cols[a:b]], self.snr[a:b], self.visible[a:b],
                np.c_[self.zrows[za:zb], self.zcols[za:zb]])


def evaluate(truth: Truth, frames: list[int], found: list[np.ndarray], min_snr=5.0) -> dict:
    """``found[k]`` = (npeaks, 2) (row, col) of frame ``frames[k]``."""
    tp = fp = zing = 0
    strong = strong_found = 0
    errors = {}  # (frame, reflection) -> distance to its peak, px
    npeaks = []
    for f, peaks in zip(frames, found):
        pos, snr, visible, zingers = truth.frame(f)
        npeaks.append(len(peaks))
        if len(peaks) == 0:
            sel = (snr >= min_snr) & visible
            strong += int(sel.sum())
            continue
        if len(pos):
            tree = cKDTree(pos)
            dist, nearest = tree.query(peaks, distance_upper_bound=2.0)
            matched = np.isfinite(dist)
        else:
            matched = np.zeros(len(peaks), bool)
        tp += int(matched.sum())
        fp += int((~matched).sum())
        if len(zingers):
            zdist, _ = cKDTree(zingers).query(peaks)
            zing += int(((zdist <= 1.0) & ~matched).sum())
        sel = (snr >= min_snr) & visible
        strong += int(sel.sum())
        if sel.any():
            pdist, pidx = cKDTree(peaks).query(pos[sel], distance_upper_bound=2.0)
            ok = np.isfinite(pdist)
            strong_found += int(ok.sum())
            errors.update(zip(zip([f] * int(ok.sum()), np.flatnonzero(sel)[ok].tolist()), pdist[ok].tolist()))
    npeaks = np.array(npeaks)
    hit = truth.hit[frames]
    accuracy = {m: float(np.mean((npeaks >= m) == hit)) for m in range(1, 41)}
    best = max(accuracy, key=lambda m: (accuracy[m], -abs(m - 10)))
    return {"frames": len(frames), "peaks": int(npeaks.sum()), "precision": tp / max(tp + fp, 1),
            "recall": strong_found / max(strong, 1), "strong": strong,
            "rms_px": float(np.sqrt(np.mean(np.square(list(errors.values()))))) if errors else float("nan"),
            "errors": errors,
            "zingers": zing, "hit_accuracy": accuracy[best], "best_min_peaks": best,
            "accuracy_at_10": accuracy[10]}


# -- braggsieve -----------------------------------------------------------------------------------------------------
def setup(run: Path, bins=1000):
    source = open_frames(run)
    poni = read_poni(run.with_name(run.name[:-3] + ".poni")).for_shape(source.shape)
    mask = poni.detector.gap_mask() | source.metadata.pixel_mask
    correction = CorrectionParams(polarization=0.99)
    corr = prepare_corrections(source.shape, correction, mask=mask, solid_angle=pixels.solid_angle(poni),
                               polarization=pixels.polarization(poni, 0.99))
    integration = IntegrationParams(bins=bins)
    binning = build_binning(pixels.radial_map(poni, integration.unit), integration, mask=corr.mask)
    return source, poni, corr, binning, integration


def run_braggsieve(source, poni, corr, binning, integration, settings: list[PeakParams], frames: list[int]):
    """Peaks of ``frames`` for each PeakParams; (found per setting, seconds per frame per setting)."""
    clip = ClipParams()
    dspacing = pixels.d_spacing(poni)
    found = [[] for _ in settings]
    times = [[] for _ in settings]
    out = np.empty((1, *source.shape), source.dtype)
    for f in frames:
        source.read_into(out, f)
        t0 = time.perf_counter()
        pre = preprocess(out, corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, clip)
        t_clip = time.perf_counter() - t0
        for k, params in enumerate(settings):
            t1 = time.perf_counter()
            peaks = find_peaks(pre, binning, profile, params, corr, dspacing)
            times[k].append(t_clip + time.perf_counter() - t1)
            found[k].append(np.c_[peaks.row, peaks.col].astype(np.float64))
    return found, [float(np.median(t[1:] if len(t) > 1 else t)) for t in times]


# -- pyFAI OpenCL (PoCL) ----------------------------------------------------------------------------------------------
def run_pyfai(source, poni, corr, frames, settings):
    engine, corrections = pyfai_peak_finder(source.shape, poni, corr.mask)
    found = [[] for _ in settings]
    times = [[] for _ in settings]
    out = np.empty((1, *source.shape), source.dtype)
    for f in frames:
        source.read_into(out, f)
        data = out[0].astype(np.float32)
        data[corr.mask] = -1
        for k, (cutoff, patch, connected) in enumerate(settings):
            t0 = time.perf_counter()
            peaks = engine.peakfinder(data, dummy=-1, delta_dummy=0.5, **corrections,
                                      error_model="poisson", cutoff_clip=0, cycle=5, noise=1.0, cutoff_peak=cutoff,
                                      patch_size=patch, connected=connected)
            times[k].append(time.perf_counter() - t0)
            found[k].append(np.c_[peaks["pos0"], peaks["pos1"]].astype(np.float64))
    return found, [float(np.median(t[1:] if len(t) > 1 else t)) for t in times]


# -- OM peakfinder8 (separate environment) ----------------------------------------------------------------------
def run_om(om_python, run, poni, corr, frames, settings):
    with tempfile.TemporaryDirectory() as tmp:
        r_px = pixels.r_mm(poni) * 1e-3 / poni.detector.pixel_size[0]
        np.save(Path(tmp) / "radius.npy", r_px.astype(np.float32))
        np.save(Path(tmp) / "good.npy", (~corr.mask).astype(np.int8))
        spec = {"run": str(run), "frames": frames, "settings": settings, "out": str(Path(tmp) / "om.npz")}
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run([om_python, str(HERE / "_om_pf8.py"), str(Path(tmp) / "spec.json")], check=True, env=env)
        data = np.load(Path(tmp) / "om.npz")
        found = [[data[f"s{k}_f{f}"] for f in frames] for k in range(len(settings))]
        return found, [float(x) for x in data["times"]]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    parser.add_argument("--pyfai-frames", type=int, default=10)
    parser.add_argument("--om-python", default="/tmp/om_pf8/bin/python")
    parser.add_argument("--grid", action="store_true", help="scan braggsieve's settings (to choose defaults)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    source, poni, corr, binning, integration = setup(args.run)
    truth = Truth(args.run.with_name(args.run.name[:-3] + "_truth.h5"), corr.mask)
    frames = list(range(source.nframes if args.frames is None else min(args.frames, source.nframes)))
    results = {}
    settings = [PeakParams()]
    if args.grid:
        settings += [PeakParams(cutoff_peak=c, patch_size=p, noise=n)
                     for c in (4.0, 4.25, 4.4, 4.5, 5.0) for p in (3, 5) for n in (1.0,)]
        settings = list(dict.fromkeys(settings))
    found, times = run_braggsieve(source, poni, corr, binning, integration, settings, frames)
    for params, fnd, t in zip(settings, found, times):
        name = (f"braggsieve cutoff {params.cutoff_peak:g} patch {params.patch_size} noise {params.noise:g}"
                + (" (default)" if params == PeakParams() else ""))
        results[name] = {**evaluate(truth, frames, fnd), "s_per_frame": t}
    sub = frames[:args.pyfai_frames]
    if args.pyfai_frames:
        results["braggsieve default, pyFAI subset"] = {**evaluate(truth, sub, found[0][:len(sub)]),
                                                       "s_per_frame": times[0]}
        pyfai_settings = [(5.0, 5, 3), (4.0, 3, 2)]
        try:
            pf, pt = run_pyfai(source, poni, corr, sub, pyfai_settings)
            for s, fnd, t in zip(pyfai_settings, pf, pt):
                results[f"pyFAI OpenCL PoCL cutoff {s[0]:g} patch {s[1]} connected {s[2]}"] = {
                    **evaluate(truth, sub, fnd), "s_per_frame": t}
        except Exception as exc:  # reported, not hidden
            print(f"pyFAI failed: {exc!r}", file=sys.stderr)
    if args.om_python and Path(args.om_python).exists():
        om_settings = [{"adc": 10.0, "snr": 5.0, "min_pix": 2}, {"adc": 5.0, "snr": 4.0, "min_pix": 2}]
        of, ot = run_om(args.om_python, args.run, poni, corr, frames, om_settings)
        for s, fnd, t in zip(om_settings, of, ot):
            results[f"OM peakfinder8 adc {s['adc']:g} snr {s['snr']:g} min_pix {s['min_pix']}"] = {
                **evaluate(truth, frames, fnd), "s_per_frame": t}
    ours = {"braggsieve": results[next(iter(results))]["errors"]}
    if "braggsieve default, pyFAI subset" in results:
        ours["pyFAI"] = results["braggsieve default, pyFAI subset"]["errors"]
    print("centroid RMS on the reflections both found (SNR >= 5):")
    for name, r in results.items():
        if name.startswith("braggsieve"):
            continue
        mine = ours["pyFAI" if name.startswith("pyFAI") else "braggsieve"]
        common = sorted(set(mine) & set(r["errors"]))
        r["common"] = len(common)
        r["rms_common_px"] = float(np.sqrt(np.mean([r["errors"][k] ** 2 for k in common]))) if common else np.nan
        r["ours_rms_common_px"] = float(np.sqrt(np.mean([mine[k] ** 2 for k in common]))) if common else np.nan
        print(f"  {name:58s} {len(common):6d} reflections: theirs {r['rms_common_px']:.3f} px, braggsieve "
              f"{r['ours_rms_common_px']:.3f} px")
    for r in results.values():
        del r["errors"]
    header = (f"{'finder':58s} {'frames':>6s} {'prec':>7s} {'recall':>7s} {'rms px':>7s} {'zing':>5s} "
              f"{'hit acc':>8s} {'@N':>3s} {'acc@10':>7s} {'s/frame':>8s}")
    print(header)
    for name, r in results.items():
        print(f"{name:58s} {r['frames']:6d} {r['precision']:7.4f} {r['recall']:7.4f} {r['rms_px']:7.3f} "
              f"{r['zingers']:5d} {r['hit_accuracy']:8.3f} {r['best_min_peaks']:3d} {r['accuracy_at_10']:7.3f} "
              f"{r['s_per_frame']:8.3f}")
    print(f"strong reflections (SNR >= 5, visible): {results[next(iter(results))]['strong']}; load: "
          f"{os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
