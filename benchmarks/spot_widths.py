"""Angular width of strong isolated Bragg spots: real stills against simulated frames (issue 5, step 2).

    python benchmarks/spot_widths.py [--sim RUN.h5 ...] [--cspad frames.npy] [--defaults 4]

Each data set goes through braggsieve's engine (preprocess, sigma-clip, find_peaks with default parameters);
the spots kept are peaks with SNR >= 50, no other peak within 12 px, no masked pixel and no pixel at the
detector's count cut-off in the 11 x 11 box around the maximum.  Their widths are the second moments of the
background-subtracted excess over that box around the centroid: sigma in pixels as measured (it includes the
pixel's own box, variance 1/12 px^2), the spot's own sigma = sqrt(sigma^2 - 1/12), and that in mrad of
scattering angle (own sigma x pixel / distance).  Medians over the spots, per axis (rows = slow, cols = fast).

Data sets:
* the PILATUS3 6M thaumatin grid stills 2-10 (``../shared/data/real``; geometry from their miniCBF headers);
* ``--cspad``: the two thermolysin CSPAD stills as a (frames, 5920, 388) int32 .npy, the four quadrants of each
  CBF stacked (fabio cannot read them; the pycbf wheel can, in its own venv)::

      python3 -m venv /tmp/pycbf_venv && /tmp/pycbf_venv/bin/pip install pycbf numpy
      /tmp/pycbf_venv/bin/python -c "import pycbf, numpy as np, sys
      def quads(p):
          h = pycbf.cbf_handle_struct(); h.read_widefile(p.encode(), pycbf.MSG_DIGEST)
          h.rewind_datablock(); h.select_datablock(0); h.find_category(b'array_data'); h.rewind_row()
          for r in range(h.count_rows()):
              r and h.next_row(); h.find_column(b'data')
              yield np.frombuffer(h.get_integerarray_as_string(), np.int32).reshape(8 * 185, 388)
      np.save(sys.argv[1], np.array([np.concatenate(list(quads(p))) for p in sys.argv[2:]]))" \
          /tmp/cspad/frames.npy ../shared/data/real/ssx_cspad/*.cbf

  each 185 x 194 ASIC's median is subtracted first (the frames carry a different offset per ASIC), the error
  model is azimuthal (gain unknown), geometry = the ``cspad`` registry layout at the header's 130.1 mm and
  1.2726 A;
* ``--sim``: simulated runs (``braggsieve simulate``; only frames with a crystal);
* ``--defaults N``: N hits simulated in memory with the simulator's default spot parameters on an Eiger 4M
  at its default 120 mm and on the PILATUS3 6M stills' geometry.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
from pathlib import Path

import fabio
import h5py
import numpy as np
from scipy.spatial import cKDTree

from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.peaks import PeakParams, find_peaks
from braggsieve.engine.scratch import scratch
from braggsieve.geometry import get_detector, pixels
from braggsieve.geometry.poni import Poni, read_poni
from braggsieve.io.frames import open_frames
from braggsieve.simulate.params import SsxParams
from braggsieve.simulate.ssx import SsxSimulator

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
HALF = 5          # the moments use the 11 x 11 box around the peak's maximum
MIN_SNR = 50.0
ISOLATION = 12.0  # px to the nearest other peak
PILATUS6M_STILLS = Poni.from_beam_center(get_detector("pilatus6m"), 0.351, (1261.61, 1306.96), 0.96859e-10)


def spot_moments(frames, poni: Poni, mask: np.ndarray, saturation: float, error_model: str = "poisson"):
    """(k, 2) measured sigma (rows, cols) in px of the strong isolated spots of ``frames`` (iterable of (ny, nx)
    arrays); mask True = bad, pixels >= saturation are excluded from the spots kept."""
    shape = mask.shape
    corr = prepare_corrections(shape, CorrectionParams(polarization=0.99), mask=mask,
                               solid_angle=pixels.solid_angle(poni), polarization=pixels.polarization(poni, 0.99))
    integration = IntegrationParams(bins=1000, error_model=error_model)
    binning = build_binning(pixels.radial_map(poni, integration.unit), integration, mask=corr.mask)
    params = PeakParams()
    out = []
    ny, nx = shape
    offsets = np.arange(-HALF, HALF + 1)
    for frame in frames:
        pre = preprocess(np.asarray(frame)[None], corr, integration.error_model)
        profile = sigma_clip(pre, binning, integration.error_model, ClipParams())
        peaks = find_peaks(pre, binning, profile, params, corr)
        if len(peaks.row) < 2:
            continue
        v = scratch("peaks_excess", (1, ny, nx), np.float32)[0].astype(np.float64)
        bad = corr.mask | (np.asarray(frame) >= saturation)
        pos = np.c_[peaks.row, peaks.col]
        dist, _ = cKDTree(pos).query(pos, k=2)
        pi, pj = np.divmod(peaks.index.astype(np.int64), nx)
        keep = (peaks.snr >= MIN_SNR) & (dist[:, 1] > ISOLATION) & (pi >= HALF) & (pi < ny - HALF) \
            & (pj >= HALF) & (pj < nx - HALF)
        for k in np.flatnonzero(keep):
            rows, cols = pi[k] + offsets, pj[k] + offsets
            if bad[np.ix_(rows, cols)].any():
                continue
            patch = v[np.ix_(rows, cols)]
            total = patch.sum()
            if not total > 0:
                continue
            mr = (patch.sum(axis=1) * rows).sum() / total
            mc = (patch.sum(axis=0) * cols).sum() / total
            var_r = (patch.sum(axis=1) * (rows - mr) ** 2).sum() / total
            var_c = (patch.sum(axis=0) * (cols - mc) ** 2).sum() / total
            if var_r > 0 and var_c > 0:
                out.append((np.sqrt(var_r), np.sqrt(var_c)))
    return np.array(out).reshape(-1, 2)


def summary(name: str, sigma: np.ndarray, pixel_m: float, distance_m: float) -> dict:
    own = np.sqrt(np.clip(sigma ** 2 - 1 / 12, 0, None))
    mrad = own * pixel_m / distance_m * 1e3
    row = {"spots": len(sigma), "pixel_um": pixel_m * 1e6, "distance_mm": distance_m * 1e3,
           "sigma_px": np.median(sigma, axis=0).tolist(), "own_sigma_px": np.median(own, axis=0).tolist(),
           "own_sigma_mrad": np.median(mrad, axis=0).tolist(),
           "mrad_quartiles": np.quantile(np.sqrt(mrad[:, 0] * mrad[:, 1]), [0.25, 0.75]).tolist() if len(sigma)
           else [np.nan, np.nan]}
    print(f"{name:44s} {row['spots']:6d} {row['pixel_um']:5.0f} {row['distance_mm']:6.1f} "
          f"{row['sigma_px'][0]:5.2f} {row['sigma_px'][1]:5.2f}  {row['own_sigma_px'][0]:5.2f} "
          f"{row['own_sigma_px'][1]:5.2f}  {row['own_sigma_mrad'][0]:5.2f} {row['own_sigma_mrad'][1]:5.2f}  "
          f"{row['mrad_quartiles'][0]:4.2f}-{row['mrad_quartiles'][1]:4.2f}")
    return row


def pilatus6m_stills():
    paths = sorted(glob.glob(str(REAL / "grid_stills_pilatus3_6m" / "thau_3_2_*.cbf.bz2")))[1:]
    if not paths:
        return None
    frames = [fabio.open(p).data for p in paths]
    mask = frames[0] < 0
    return frames, PILATUS6M_STILLS, mask, 115897.0, "poisson"


def cspad_stills(path: Path):
    frames = np.load(path).astype(np.float32)
    nasics = frames.shape[1] // 185, frames.shape[2] // 194
    blocks = frames.reshape(len(frames), nasics[0], 185, nasics[1], 194)
    frames = (blocks - np.median(blocks, axis=(2, 4), keepdims=True)).reshape(frames.shape)
    detector = get_detector("cspad")
    p1, p2 = detector.pixel_positions((0.5, 0.5))  # beam at the middle of the layout (registry's panels)
    centre = ((np.nanmax(p2) + np.nanmin(p2)) / 2 / detector.pixel_size[1],
              (np.nanmax(p1) + np.nanmin(p1)) / 2 / detector.pixel_size[0])
    poni = Poni.from_beam_center(detector, 0.130107, centre, 1.272607e-10)
    mask = ~np.isfinite(frames[0])
    return list(frames), poni, mask, 16383.0 - 100, "azimuthal"


def run_frames(source, indices):
    """Frames ``indices`` of ``source`` (a FrameSource), one (ny, nx) array at a time (the same buffer)."""
    buffer = np.empty((1, *source.shape), source.dtype)
    for i in indices:
        source.read_into(buffer, int(i))
        yield buffer[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", type=Path, nargs="*", default=[])
    parser.add_argument("--cspad", type=Path)
    parser.add_argument("--defaults", type=int, default=0, metavar="N",
                        help="also N hits simulated with the default spot parameters on an Eiger 4M at 120 mm and "
                        "on the PILATUS3 6M stills' geometry")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"{'data set':44s} {'spots':>6s} {'pix':>5s} {'dist':>6s} {'sigma px':>11s}  {'own px':>11s}  "
          f"{'own mrad':>11s}  {'geo-mean mrad IQR'}")
    print(f"{'':44s} {'':6s} {'um':>5s} {'mm':>6s} {'rows  cols':>11s}  {'rows  cols':>11s}  {'rows  cols':>11s}")
    results = {}
    real = pilatus6m_stills()
    if real is not None:
        frames, poni, mask, saturation, model = real
        results["pilatus6m"] = summary("PILATUS3 6M thaumatin stills 2-10 (real)",
                                       spot_moments(frames, poni, mask, saturation, model),
                                       poni.detector.pixel_size[0], poni.dist)
    if args.cspad is not None:
        frames, poni, mask, saturation, model = cspad_stills(args.cspad)
        results["cspad"] = summary("CSPAD thermolysin stills (real)", spot_moments(frames, poni, mask, saturation,
                                                                                   model),
                                   poni.detector.pixel_size[0], poni.dist)
    for run in args.sim:
        source = open_frames(run)
        poni = read_poni(run.with_name(run.name[:-3] + ".poni")).for_shape(source.shape)
        mask = poni.detector.gap_mask() | source.metadata.pixel_mask
        with h5py.File(run.with_name(run.name[:-3] + "_truth.h5"), "r") as f:
            hits = np.flatnonzero(f["truth/frames/hit"][()])
        results[str(run)] = summary(f"simulated {run.name} ({len(hits)} hits)",
                                    spot_moments(run_frames(source, hits), poni, mask, np.inf),
                                    poni.detector.pixel_size[0], poni.dist)
    if args.defaults:
        for name, poni in (("Eiger 4M, 120 mm", Poni.from_beam_center(get_detector("eiger4m"), 0.12, (1035.0, 1083.5),
                                                                      1e-10)),
                           ("PILATUS3 6M, 351 mm (the real stills' geometry)", PILATUS6M_STILLS)):
            sim = SsxSimulator(poni, SsxParams(hit_fraction=1.0), seed=3)
            frames, _ = sim.frames(0, args.defaults)
            results[f"defaults {name}"] = summary(f"simulated defaults, {name}",
                                                  spot_moments(list(frames), poni, sim.gap, np.inf),
                                                  poni.detector.pixel_size[0], poni.dist)
    print(f"load {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
