"""Where braggsieve's peak-centroid error comes from, on a simulated run with ground truth (issue 5).

    python benchmarks/peaks_centroid.py RUN.h5 [--frames N] [--json out.json]

RUN.h5 comes from ``braggsieve simulate`` (RUN.poni and RUN_truth.h5 next to it; the simulation parameters are
read back from the run's provenance), e.g. the frames of benchmarks/peaks_quality.py.  The reflections studied
are those of the quality benchmark: truth SNR = photons / sqrt(photons + 9 bg) >= 5, centre pixel not masked,
with a braggsieve peak (default parameters) within 2 px; error = peak - truth, in pixels.

Printed:

* bias (mean) and spread (std) of the error per axis; RMS of the 2-D distance by truth SNR, by spot width and
  next to masked pixels; the share of the sum of squares held by the worst 1 % of the reflections;
* the noise-free check: the spots rendered without noise, background or zingers (the simulator's own
  functions), measured by braggsieve's centroid estimator, and their exact intensity centroid over the whole
  spot (is the truth position the centroid?);
* the photon-noise limit: the Cramer-Rao bound of each reflection's position (Poisson Fisher information of
  its pixel-integrated Gaussian spot over its expected background, spot width, amplitude and position
  unknown to the estimator but its width), summed like the errors;
* the same error figures for other centroid estimators run on the same peaks of the same frames (a plain
  centroid, Gaussian windows of other widths, a weighted least-squares Gaussian fit), to choose one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import h5py
import numba as nb
import numpy as np
from peaks_quality import Truth, setup
from scipy import ndimage
from scipy.spatial import cKDTree

from braggsieve.engine.corrections import preprocess
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams
from braggsieve.engine.peaks import (
    _CENTROID_HALF,
    _WINDOW_SIGMA,
    PeakParams,
    _centroid,
    find_peaks,
)
from braggsieve.engine.scratch import scratch
from braggsieve.simulate.params import (
    BackgroundParams,
    BadPixelParams,
    NoiseParams,
    SsxParams,
)
from braggsieve.simulate.spots import add_spots
from braggsieve.simulate.ssx import SsxSimulator

SNR_BINS = (5, 7, 10, 20, 50, 100, np.inf)


def simulator_of(run: Path, poni) -> SsxSimulator:
    """The simulator that wrote ``run`` (parameters from its provenance)."""
    with h5py.File(run, "r") as f:
        config = json.loads(f["/entry/process/configuration/data"][()])["parameters"]

    def build(cls, values):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    return SsxSimulator(poni, build(SsxParams, config["ssx"]), build(BackgroundParams, config["background"]),
                        build(NoiseParams, config["noise"]), build(BadPixelParams, config["bad_pixels"]),
                        seed=config["setup"]["seed"])


# -- estimators on the excess v of one frame (missing pixels NaN), around a peak's maximum pixel (i, j) ----------
@nb.njit(cache=True)
def _engine_centroids(v, mark, ii, jj, out):
    for k in range(ii.size):
        out[k, 0], out[k, 1] = _centroid(v, mark, 0, ii[k], jj[k])


@nb.njit(cache=True)
def _windowed(v, i, j, half, sigma_w, start_r, start_c):
    """Gaussian-windowed centroid (window rms sigma_w px, 0 = plain centroid of the positive excess) over the
    (2 half + 1)^2 box around (i, j), iterated to its fixed point from (start_r, start_c)."""
    ny, nx = v.shape[1], v.shape[2]
    row, col = start_r, start_c
    for _ in range(30 if sigma_w > 0 else 1):
        s = 0.0
        sr = 0.0
        sc = 0.0
        for a in range(max(i - half, 0), min(i + half + 1, ny)):
            for b in range(max(j - half, 0), min(j + half + 1, nx)):
                x = v[0, a, b]
                if not np.isfinite(x):
                    continue
                if sigma_w > 0:
                    w = x * math.exp(-((a - row) ** 2 + (b - col) ** 2) / (2 * sigma_w * sigma_w))
                else:
                    w = max(x, 0.0)
                s += w
                sr += w * a
                sc += w * b
        if not s > 0:
            break
        nr, nc = sr / s, sc / s
        if abs(nr - i) > 1.0 or abs(nc - j) > 1.0:
            break
        moved = abs(nr - row) + abs(nc - col)
        row, col = nr, nc
        if moved < 1e-5:
            break
    return row, col


@nb.njit(cache=True)
def _gauss_fit(v, var_bg, i, j, half, sigma, start_r, start_c):
    """Weighted least-squares fit of amplitude and position of a pixel-integrated Gaussian of std ``sigma`` px
    to the excess over the (2 half + 1)^2 box; weights 1 / (var_bg + model) (Poisson), Gauss-Newton from the
    start position; returns the start where the fit leaves the central pixel's neighbourhood."""
    ny, nx = v.shape[1], v.shape[2]
    row, col = start_r, start_c
    amp = 0.0
    for a in range(max(i - 1, 0), min(i + 2, ny)):
        for b in range(max(j - 1, 0), min(j + 2, nx)):
            if np.isfinite(v[0, a, b]):
                amp += v[0, a, b]
    amp = max(amp / 0.7, 1.0)
    s2 = math.sqrt(2.0) * sigma
    for _ in range(20):
        h00 = h01 = h02 = h11 = h12 = h22 = 0.0
        g0 = g1 = g2 = 0.0
        for a in range(max(i - half, 0), min(i + half + 1, ny)):
            ea0 = math.erf((a - 0.5 - row) / s2)
            ea1 = math.erf((a + 0.5 - row) / s2)
            pr = 0.5 * (ea1 - ea0)
            dpr = -(math.exp(-((a + 0.5 - row) / s2) ** 2) - math.exp(-((a - 0.5 - row) / s2) ** 2)) / (
                math.sqrt(2 * math.pi) * sigma)
            for b in range(max(j - half, 0), min(j + half + 1, nx)):
                x = v[0, a, b]
                if not np.isfinite(x):
                    continue
                pc = 0.5 * (math.erf((b + 0.5 - col) / s2) - math.erf((b - 0.5 - col) / s2))
                dpc = -(math.exp(-((b + 0.5 - col) / s2) ** 2) - math.exp(-((b - 0.5 - col) / s2) ** 2)) / (
                    math.sqrt(2 * math.pi) * sigma)
                model = amp * pr * pc
                w = 1.0 / (var_bg + max(model, 0.0))
                d0, d1, d2 = pr * pc, amp * dpr * pc, amp * pr * dpc
                res = x - model
                h00 += w * d0 * d0
                h01 += w * d0 * d1
                h02 += w * d0 * d2
                h11 += w * d1 * d1
                h12 += w * d1 * d2
                h22 += w * d2 * d2
                g0 += w * d0 * res
                g1 += w * d1 * res
                g2 += w * d2 * res
        det = (h00 * (h11 * h22 - h12 * h12) - h01 * (h01 * h22 - h12 * h02) + h02 * (h01 * h12 - h11 * h02))
        if not abs(det) > 0:
            return start_r, start_c
        s0 = (g0 * (h11 * h22 - h12 * h12) - h01 * (g1 * h22 - h12 * g2) + h02 * (g1 * h12 - h11 * g2)) / det
        s1 = (h00 * (g1 * h22 - g2 * h12) - g0 * (h01 * h22 - h12 * h02) + h02 * (h01 * g2 - g1 * h02)) / det
        sc = (h00 * (h11 * g2 - h12 * g1) - h01 * (h01 * g2 - g1 * h02) + g0 * (h01 * h12 - h11 * h02)) / det
        amp += s0
        row += s1
        col += sc
        if amp <= 0 or abs(row - i) > 1.0 or abs(col - j) > 1.0:
            return start_r, start_c
        if abs(s1) + abs(sc) < 1e-5:
            break
    return row, col


@nb.njit(cache=True)
def _variants(v, var_bg, ii, jj, start, out):
    """out[k, m, :] = estimator m's (row, col) for peak k (m: see VARIANTS); ``var_bg`` (k,) is the background
    pixel variance at each peak."""
    for k in range(ii.size):
        i, j = ii[k], jj[k]
        out[k, 0] = _windowed(v, i, j, 1, 0.0, i, j)
        out[k, 1] = _windowed(v, i, j, 2, 0.0, i, j)
        r0, c0 = out[k, 1, 0], out[k, 1, 1]  # every other estimator starts there, as the engine's does
        for m, (half, sigma_w) in enumerate(((2, 0.8), (2, 1.0), (2, 1.2), (3, 1.2), (3, 1.4), (3, 1.6), (3, 1.8),
                                             (4, 1.6), (4, 2.0))):
            out[k, 2 + m] = _windowed(v, i, j, half, sigma_w, r0, c0)
        out[k, 11] = _gauss_fit(v, var_bg[k], i, j, 2, 1.0, r0, c0)
        out[k, 12] = _gauss_fit(v, var_bg[k], i, j, 3, 1.0, r0, c0)
        out[k, 13] = _gauss_fit(v, var_bg[k], i, j, 3, 1.2, r0, c0)


VARIANTS = ("plain centroid 3x3", "plain centroid 5x5", "window 0.8 px, 5x5", "window 1.0 px, 5x5 (before)",
            "window 1.2 px, 5x5", "window 1.2 px, 7x7", "window 1.4 px, 7x7", "window 1.6 px, 7x7",
            "window 1.8 px, 7x7",
            "window 1.6 px, 9x9", "window 2.0 px, 9x9", "Gaussian fit sigma 1.0, 5x5",
            "Gaussian fit sigma 1.0, 7x7", "Gaussian fit sigma 1.2, 7x7")


# -- photon-noise limit ------------------------------------------------------------------------------------------
def cramer_rao(rows, cols, photons, sig_r, sig_c, bg, valid_map, half=6):
    """Cramer-Rao variance (row, col) px^2 of each spot's position: Poisson Fisher information of
    mu = photons * pixel-integrated Gaussian + bg over the valid pixels of a (2 half + 1)^2 box, parameters
    (amplitude, row, col); (k, 2)."""
    from scipy.special import erf

    def axis(centre, sigma):
        idx = np.round(centre)[:, None] + np.arange(-half, half + 1)[None]
        lo = (idx - 0.5 - centre[:, None]) / (np.sqrt(2) * sigma[:, None])
        hi = (idx + 0.5 - centre[:, None]) / (np.sqrt(2) * sigma[:, None])
        frac = 0.5 * (erf(hi) - erf(lo))
        dfrac = -(np.exp(-hi ** 2) - np.exp(-lo ** 2)) / (np.sqrt(2 * np.pi) * sigma[:, None])
        return idx.astype(int), frac, dfrac

    ir, pr, dpr = axis(rows, sig_r)
    ic, pc, dpc = axis(cols, sig_c)
    if valid_map is None:
        valid = np.ones((len(rows), ir.shape[1], ic.shape[1]), bool)
    else:
        ny, nx = valid_map.shape
        valid = valid_map[np.clip(ir, 0, ny - 1)[:, :, None], np.clip(ic, 0, nx - 1)[:, None, :]]
        valid &= ((ir >= 0) & (ir < ny))[:, :, None] & ((ic >= 0) & (ic < nx))[:, None, :]
    n = photons[:, None, None]
    d = np.stack([pr[:, :, None] * pc[:, None, :], n * dpr[:, :, None] * pc[:, None, :],
                  n * pr[:, :, None] * dpc[:, None, :]], axis=-1)                  # (k, a, b, 3)
    mu = n * pr[:, :, None] * pc[:, None, :] + bg[:, None, None] + 1e-9
    w = np.where(valid, 1.0 / mu, 0.0)
    fisher = np.einsum("kab,kabi,kabj->kij", w, d, d)
    cov = np.linalg.inv(fisher)
    return np.stack([cov[:, 1, 1], cov[:, 2, 2]], axis=1)


def rms(x):
    return float(np.sqrt(np.mean(np.sum(np.square(x), axis=-1)))) if len(x) else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    source, poni, corr, binning, integration = setup(args.run)
    truth = Truth(args.run.with_name(args.run.name[:-3] + "_truth.h5"), corr.mask)
    sim = simulator_of(args.run, poni)
    ny, nx = source.shape
    valid_map = ~corr.mask
    near_mask = ndimage.binary_dilation(corr.mask, iterations=3, border_value=1)  # <= 3 px from mask or edge
    frames = list(range(source.nframes if args.frames is None else min(args.frames, source.nframes)))
    clip, params = ClipParams(), PeakParams()
    out = np.empty((1, ny, nx), source.dtype)
    rec = {k: [] for k in ("err", "snr", "photons", "bg", "sig_r", "sig_c", "near", "frac", "nf_engine",
                           "nf_valid", "nf_all", "variants")}
    spot_only = np.zeros((ny, nx), np.float32)
    t_start = time.perf_counter()
    for f in frames:
        tf = sim.truth(f)
        if not tf.hit:
            continue
        source.read_into(out, f)
        pre = preprocess(out, corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, clip)
        peaks = find_peaks(pre, binning, profile, params, corr)
        v = scratch("peaks_excess", (1, ny, nx), np.float32).copy()
        pos, snr, visible, _ = truth.frame(f)
        a = truth.rptr[f]
        sel = np.flatnonzero((snr >= 5) & visible)
        found = np.c_[peaks.row, peaks.col].astype(np.float64)
        if not len(found) or not len(sel):
            continue
        dist, idx = cKDTree(found).query(pos[sel], distance_upper_bound=2.0)
        ok = np.isfinite(dist)
        sel, idx = sel[ok], idx[ok]
        tr = pos[sel]
        rec["err"].append(found[idx] - tr)
        rec["snr"].append(snr[sel])
        rec["photons"].append(truth.photons[a + sel])
        rec["bg"].append(sim.background[np.round(tr[:, 0]).astype(int), np.round(tr[:, 1]).astype(int)]
                         * tf.background_scale)
        table = tf.reflections
        sigma = sim.spot_sigma(tf)
        rec["sig_r"].append(sigma[sel, 0])
        rec["sig_c"].append(sigma[sel, 1])
        rec["near"].append(near_mask[np.round(tr[:, 0]).astype(int), np.round(tr[:, 1]).astype(int)])
        rec["frac"].append(tr - np.round(tr))
        # noise-free: all spots of the frame, no background, no noise, masked pixels missing
        spot_only[:] = 0
        add_spots(spot_only, table["row"], table["col"], table["photons"], sigma[:, 0], sigma[:, 1],
                  sim.projection.bounds[table["panel"]])
        v_nf = np.where(valid_map, spot_only, np.nan).astype(np.float32)[None]
        ri = np.clip(np.round(tr[:, 0]).astype(np.int64), 0, ny - 1)
        ci = np.clip(np.round(tr[:, 1]).astype(np.int64), 0, nx - 1)
        for _ in range(3):  # climb to the local maximum of the noise-free excess (the engine's start pixel)
            win = np.stack([np.nan_to_num(v_nf[0, np.clip(ri + da, 0, ny - 1), np.clip(ci + db, 0, nx - 1)], nan=-1)
                            for da in (-1, 0, 1) for db in (-1, 0, 1)], axis=1)
            best = np.argmax(win, axis=1)
            ri = np.clip(ri + best // 3 - 1, 0, ny - 1)
            ci = np.clip(ci + best % 3 - 1, 0, nx - 1)
        nf = np.empty((len(sel), 2))
        _engine_centroids(v_nf, np.zeros((1, ny, nx), np.uint8), ri, ci, nf)
        rec["nf_engine"].append(nf - tr)
        # exact intensity centroid of each spot alone, on the valid pixels of a +-6 sigma box
        cen = np.empty((len(sel), 4))
        for k, s in enumerate(sel):
            hr, hc = int(np.ceil(6 * sigma[s, 0])), int(np.ceil(6 * sigma[s, 1]))
            r0, c0 = int(round(tr[k, 0])) - hr, int(round(tr[k, 1])) - hc
            patch = np.zeros((2 * hr + 1, 2 * hc + 1), np.float32)
            add_spots(patch, np.array([tr[k, 0] - r0]), np.array([tr[k, 1] - c0]), np.array([1e4]),
                      sigma[s:s + 1, 0], sigma[s:s + 1, 1],
                      (sim.projection.bounds[table["panel"][s:s + 1]] - np.array([[r0, r0, c0, c0]])))
            rr, cc = np.mgrid[r0:r0 + 2 * hr + 1, c0:c0 + 2 * hc + 1]
            inside = (rr >= 0) & (rr < ny) & (cc >= 0) & (cc < nx)
            weight = patch * inside * valid_map[np.clip(rr, 0, ny - 1), np.clip(cc, 0, nx - 1)]
            cen[k, :2] = (weight * rr).sum() / weight.sum(), (weight * cc).sum() / weight.sum()
            cen[k, 2:] = (patch * rr).sum() / patch.sum(), (patch * cc).sum() / patch.sum()
        rec["nf_valid"].append(cen[:, :2] - tr)
        rec["nf_all"].append(cen[:, 2:] - tr)
        # other estimators on the same noisy peaks
        pi, pj = np.divmod(peaks.index[idx].astype(np.int64), nx)
        fpos = (binning.pixel_radius[pi, pj] - binning.radial[0]) / (binning.radial[1] - binning.radial[0])
        std = np.interp(fpos, np.arange(profile.std.shape[-1]), np.asarray(profile.std).reshape(-1))
        var_out = np.empty((len(sel), len(VARIANTS), 2))
        _variants(v, std ** 2, pi, pj, found[idx], var_out)
        rec["variants"].append(var_out - tr[:, None, :])
    elapsed = time.perf_counter() - t_start
    r = {k: np.concatenate(x) for k, x in rec.items()}
    err = r["err"]
    d2 = np.sum(err ** 2, axis=1)
    # the bound of each spot alone, at its sub-pixel position, no mask
    crb = cramer_rao(r["frac"][:, 0], r["frac"][:, 1], r["photons"], r["sig_r"], r["sig_c"], r["bg"], None)
    crb_rms = float(np.sqrt(np.mean(crb.sum(axis=1))))
    res = {"frames": len(frames), "matched": len(err), "rms_px": rms(err),
           "mean_row": float(err[:, 0].mean()), "mean_col": float(err[:, 1].mean()),
           "std_row": float(err[:, 0].std()), "std_col": float(err[:, 1].std()), "crb_rms_px": crb_rms}
    order = np.sort(d2)[::-1]
    res["worst1pct_share"] = float(order[:max(1, len(order) // 100)].sum() / order.sum())
    res["rms_without_worst1pct"] = float(np.sqrt(order[len(order) // 100:].mean()))
    print(f"{len(err)} matched reflections (SNR >= 5) in {len(frames)} frames ({elapsed:.0f} s); load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"RMS distance {res['rms_px']:.3f} px; row mean {res['mean_row']:+.4f} std {res['std_row']:.3f}; col mean "
          f"{res['mean_col']:+.4f} std {res['std_col']:.3f}")
    print(f"worst 1 % hold {100 * res['worst1pct_share']:.1f} % of the sum of squares; RMS without them "
          f"{res['rms_without_worst1pct']:.3f} px")
    print(f"photon-noise limit (Cramer-Rao, isolated unmasked spots): RMS {crb_rms:.3f} px; efficiency "
          f"(RMS / bound) {res['rms_px'] / crb_rms:.2f}")

    def table(title, groups):
        print(f"\n{title:24s} {'n':>6s} {'share':>6s} {'RMS px':>7s} {'bound':>6s} {'ratio':>6s} {'mean r':>7s} "
              f"{'mean c':>7s}")
        rows = []
        for name, m in groups:
            if not m.any():
                continue
            rr = rms(err[m])
            cb = float(np.sqrt(np.mean(crb[m].sum(axis=1))))
            rows.append({"group": name, "n": int(m.sum()), "share_ss": float(d2[m].sum() / d2.sum()), "rms_px": rr,
                         "crb_px": cb, "mean_row": float(err[m, 0].mean()), "mean_col": float(err[m, 1].mean())})
            print(f"{name:24s} {m.sum():6d} {100 * d2[m].sum() / d2.sum():5.1f}% {rr:7.3f} {cb:6.3f} {rr / cb:6.2f} "
                  f"{err[m, 0].mean():+7.3f} {err[m, 1].mean():+7.3f}")
        return rows

    snr = r["snr"]
    res["by_snr"] = table("truth SNR", [(f"{lo}-{hi}", (snr >= lo) & (snr < hi))
                                        for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:])])
    width = np.sqrt(r["sig_r"] * r["sig_c"])
    edges = np.quantile(width, [0, 0.25, 0.5, 0.75, 1.0])
    res["by_width"] = table("spot sigma (px)", [(f"{lo:.2f}-{hi:.2f}", (width >= lo) & (width <= hi))
                                                for lo, hi in zip(edges[:-1], edges[1:])])
    bgs = r["bg"]
    res["by_background"] = table("background (ph/px)", [(f"{lo}-{hi}", (bgs >= lo) & (bgs < hi))
                                                        for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 80))])
    res["by_mask"] = table("next to a masked pixel", [("no (> 3 px)", ~r["near"]), ("yes (<= 3 px)", r["near"])])
    frac = np.abs(r["frac"]).max(axis=1)
    res["by_subpixel"] = table("|truth - pixel centre|", [("< 0.25 px (both axes)", frac < 0.25),
                                                          (">= 0.25 px", frac >= 0.25)])
    # pixel locking: mean error against the sub-pixel truth position, per axis
    lock = np.polyfit(np.r_[r["frac"][:, 0], r["frac"][:, 1]], np.r_[err[:, 0], err[:, 1]], 1)[0]
    res["pixel_locking_slope"] = float(lock)
    print(f"\npixel locking: slope of error vs truth's offset from the pixel centre {lock:+.3f} (0 = none, -1 = "
          "always the pixel centre)")
    for name in ("nf_engine", "nf_all", "nf_valid"):
        e = r[name]
        label = {"nf_engine": "noise-free spots, braggsieve's estimator",
                 "nf_all": "noise-free spot alone, exact intensity centroid (all pixels of +-6 sigma)",
                 "nf_valid": "noise-free spot alone, exact intensity centroid (valid pixels of +-6 sigma)"}[name]
        far = ~r["near"]
        res[name] = {"rms_px": rms(e), "max_px": float(np.sqrt((e ** 2).sum(1)).max()),
                     "rms_away_from_mask": rms(e[far]), "mean_row": float(e[:, 0].mean()),
                     "mean_col": float(e[:, 1].mean())}
        print(f"{label}: RMS {rms(e):.4f} px (away from masked pixels {rms(e[far]):.4f}), max "
              f"{res[name]['max_px']:.3f}, mean {e[:, 0].mean():+.4f} / {e[:, 1].mean():+.4f}")
    print(f"\n{'estimator (same peaks)':34s} {'RMS px':>7s} {'SNR 5-10':>8s} {'10-20':>6s} {'>= 20':>6s} "
          f"{'worst 1%':>8s}")
    res["estimators"] = {}
    box = 2 * _CENTROID_HALF + 1
    estimators = [(f"braggsieve (window {_WINDOW_SIGMA:g} px, {box}x{box})", err)]
    estimators += [(name, r["variants"][:, m]) for m, name in enumerate(VARIANTS)]
    for name, e in estimators:
        e2 = np.sum(e ** 2, axis=1)
        worst = np.sort(e2)[::-1]
        row = {"rms_px": rms(e), "snr_5_10": rms(e[snr < 10]), "snr_10_20": rms(e[(snr >= 10) & (snr < 20)]),
               "snr_20_up": rms(e[snr >= 20]), "worst1pct_share": float(worst[:len(worst) // 100].sum() / worst.sum())}
        res["estimators"][name] = row
        print(f"{name:34s} {row['rms_px']:7.3f} {row['snr_5_10']:8.3f} {row['snr_10_20']:6.3f} "
              f"{row['snr_20_up']:6.3f} {100 * row['worst1pct_share']:7.1f}%")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
