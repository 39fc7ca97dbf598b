"""GPU benchmark (issue 6, item 4): braggsieve's CUDA engine beside pyFAI's OpenCL peak finder, same GPU, one run.

Frames: synthetic uint32 Eiger 4M (2167 x 2070) and Eiger 16M (4371 x 4150) frames -- Poisson background
falling with q (solid angle and polarisation applied), 300 Gaussian spots, module gaps filled with the Eiger
marker 0xFFFFFFFF.  Processing: 1000 bins in q, Poisson model, Chauvenet clipping (cutoff 0, 5 cycles),
picking at 3 sigma, peaks at 3 sigma (3 x 3 box detection, 5 x 5 patch); sparsify + peaks + veto
(the veto is the per-frame peak count, which comes with the peaks).

Figures (frames per second, median of ``--repeats`` timed runs after a warm-up):

* ``device``   frames already on the GPU (CuPy arrays), results back on the host;
* ``pinned``   frames in page-locked host memory, i.e. where ``FrameSource.read_into`` decodes them when given
                ``engine.pinned_frames(...)`` (the reader's own decoding time is not included);
* ``pageable`` frames in ordinary numpy arrays (what ``iter_batches`` returns), copied by the engine's staging
                threads into its pinned buffers;
* ``H2D copy`` the bare host->device copy of pinned frames: the PCIe ceiling of ``pinned``;
* pyFAI 2026.9 ``OCL_PeakFinder.sparsify`` and ``.peakfinder`` on the NVIDIA OpenCL platform, frames from
  host memory, one call per frame, same parameters, on each detector measured.

Usage: python benchmarks/gpu.py [--batch 16] [--batches 40] [--repeats 3] [--skip-pyfai] [--json FILE]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.peaks import PeakParams, find_peaks
from braggsieve.engine.pick import PickParams, pick_pixels
from braggsieve.geometry.detectors import get_detector
from braggsieve.geometry.pixels import polarization, radial_map, solid_angle
from braggsieve.geometry.poni import Poni

DISTANCE, WAVELENGTH, POL = 0.15, 1.0e-10, 0.99
INTEGRATION = IntegrationParams(bins=1000, unit="q_nm^-1", error_model="poisson")
CLIP = ClipParams(cutoff_clip=0.0, cycles=5)
PICK = PickParams(cutoff_pick=3.0, noise=1.0)
PEAKS = PeakParams(cutoff_peak=3.0, patch_size=5, noise=1.0)


def scene(name: str, ndistinct: int, seed: int = 0):
    """Geometry, corrections and ``ndistinct`` different uint32 frames of detector ``name``."""
    detector = get_detector(name)
    ny, nx = detector.shape
    poni = Poni.from_beam_center(detector, DISTANCE, (nx / 2 + 11.3, ny / 2 - 7.6), WAVELENGTH)
    q = radial_map(poni, "q_nm^-1")
    sa = solid_angle(poni)
    pol = polarization(poni, POL)
    gaps = detector.gap_mask()
    binning = build_binning(q, INTEGRATION, mask=gaps)
    corrections = prepare_corrections((ny, nx), CorrectionParams(solid_angle=True, polarization=POL), mask=gaps,
                                      solid_angle=sa, polarization=pol)
    rng = np.random.default_rng(seed)
    expected = (40 * np.exp(-q / 8) + 3) * sa * pol
    frames = np.empty((ndistinct, ny, nx), np.uint32)
    yy, xx = np.mgrid[-3:4, -3:4]
    for f in range(ndistinct):
        image = expected.copy()
        for _ in range(300):
            y, x = rng.integers(4, ny - 4), rng.integers(4, nx - 4)
            dy, dx = rng.uniform(-0.5, 0.5, 2)
            image[y - 3:y + 4, x - 3:x + 4] += rng.uniform(20, 2000) * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / 2)
        frames[f] = rng.poisson(image)
        frames[f][gaps] = 0xFFFFFFFF
    return poni, detector, binning, corrections, frames, (sa, pol)


def median_fps(run, nframes: int, repeats: int) -> float:
    run()  # warm-up (compilation, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return nframes / statistics.median(times)


def check_against_cpu(engine, binning, corrections, frames) -> dict:
    """One frame through the GPU and through the CPU engine's functions: agreement figures."""
    got = engine.process(frames)
    pre = preprocess(frames, corrections, INTEGRATION.error_model)
    profile = sigma_clip(pre, binning, INTEGRATION.error_model, CLIP)
    sparse = pick_pixels(frames, pre, binning, profile, PICK, corrections)
    peaks = find_peaks(pre, binning, profile, PEAKS, corrections)
    finite = np.isfinite(profile.mean)
    rel = np.abs(got.profile.mean[finite] - profile.mean[finite]) / np.abs(profile.mean[finite])
    return {"picked_gpu": int(len(got.sparse.index)), "picked_cpu": int(len(sparse.index)),
            "picked_differ": int(len(np.setxor1d(got.sparse.index, sparse.index))),
            "peaks_gpu": int(got.peaks.npeaks.sum()), "peaks_cpu": int(peaks.npeaks.sum()),
            "peaks_differ": int(len(np.setxor1d(got.peaks.index, peaks.index))),
            "background_max_rel_diff": float(rel.max())}


def braggsieve_figures(name: str, args) -> dict:
    import cupy as cp

    from braggsieve.engine.cuda import CudaEngine

    poni, detector, binning, corrections, distinct, _ = scene(name, 4)
    engine = CudaEngine(binning, corrections, INTEGRATION, CLIP, PICK, PEAKS, streams=args.streams)
    out = {"detector": name, "shape": list(binning.shape), "largest_bin": int(engine.static.counts.max())}
    if args.check:
        out["check"] = check_against_cpu(engine, binning, corrections, distinct[:1])
        print(name, "GPU vs CPU:", out["check"], flush=True)
    batch = args.batch
    nframes = batch * args.batches
    pool = np.concatenate([distinct] * ((4 * batch + len(distinct) - 1) // len(distinct)))[:4 * batch]
    pageable = [np.ascontiguousarray(pool[k * batch:(k + 1) * batch]) for k in range(4)]
    pinned = []
    for part in pageable:
        buffer = engine.pinned_frames(batch, np.uint32)
        buffer[...] = part
        pinned.append(buffer)
    on_device = [cp.asarray(part) for part in pageable]

    def consume(batches, **kw):
        total = 0
        for result in engine.process_many((batches[k % len(batches)] for k in range(args.batches)), **kw):
            total += int(result.peaks.npeaks.sum()) if result.peaks is not None else 0
        return total

    out["device"] = median_fps(lambda: consume(on_device), nframes, args.repeats)
    out["device_clip_only"] = median_fps(lambda: consume(on_device, sparse=False, peaks=False), nframes,
                                         args.repeats)
    out["pinned"] = median_fps(lambda: consume(pinned), nframes, args.repeats)
    out["pageable"] = median_fps(lambda: consume(pageable), nframes, args.repeats)

    target = cp.empty(pinned[0].shape, np.uint32)
    stream = cp.cuda.Stream(non_blocking=True)

    def copies():
        for k in range(args.batches):
            source = pinned[k % len(pinned)]
            cp.cuda.runtime.memcpyAsync(target.data.ptr, source.ctypes.data, source.nbytes, 1, stream.ptr)
        stream.synchronize()

    out["h2d_copy"] = median_fps(copies, nframes, args.repeats)
    # GPU time of each stage, one stream (with several the events of overlapping batches would interleave)
    single = CudaEngine(binning, corrections, INTEGRATION, CLIP, PICK, PEAKS, streams=1)
    list(single.process_many(on_device[:1]))  # warm-up
    single.stage_ms = {}
    start = time.perf_counter()
    for _ in single.process_many(on_device[k % len(on_device)] for k in range(args.batches)):
        pass
    wall = time.perf_counter() - start
    out["stages_us_per_frame"] = {k: round(1000 * v / nframes, 2) for k, v in single.stage_ms.items()}
    out["gpu_busy_fraction"] = round(sum(single.stage_ms.values()) / 1000 / wall, 3)
    result = engine.process(on_device[0])
    out["picked_per_frame"] = float(len(result.sparse.index) / batch)
    out["peaks_per_frame"] = float(result.peaks.npeaks.mean())
    return out


def _register_nvidia_icd() -> str:
    """Make sure the ICD loader finds NVIDIA's OpenCL driver; returns what was done."""
    icd = "/etc/OpenCL/vendors/nvidia.icd"
    if os.path.exists(icd):
        return f"{icd} exists"
    candidates = glob.glob("/usr/local/nvidia/lib64/libnvidia-opencl.so.1") + \
        glob.glob("/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1") + glob.glob("/usr/lib64/libnvidia-opencl.so.1")
    if not candidates:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
        candidates = [line.split("=>")[-1].strip() for line in listing.splitlines() if "libnvidia-opencl" in line]
    if not candidates:
        return "libnvidia-opencl.so.1 not found"
    os.makedirs(os.path.dirname(icd), exist_ok=True)
    with open(icd, "w") as handle:
        handle.write(candidates[0] + "\n")
    return f"wrote {icd} -> {candidates[0]}"


def pyfai_figures(name: str, args) -> dict:
    """pyFAI's OpenCL sparsify and peakfinder figures (frames/s from host memory) on detector `name`."""
    out = {"icd": _register_nvidia_icd()}
    try:
        import pyopencl  # noqa: F401
        from pyFAI.detectors import Detector as PyfaiDetector
        from pyFAI.integrator.azimuthal import AzimuthalIntegrator
        from pyFAI.opencl import ocl
        from pyFAI.opencl.peak_finder import OCL_PeakFinder
        from pyFAI.units import to_unit
    except Exception as exc:  # report why, keep the braggsieve figures
        out["error"] = f"import failed: {exc!r}"
        return out
    poni, detector, binning, corrections, distinct, (sa, pol) = scene(name, 4)
    ny, nx = binning.shape
    ai = AzimuthalIntegrator(dist=poni.dist, poni1=poni.poni1, poni2=poni.poni2,
                             detector=PyfaiDetector(poni.detector.pixel_size[0], poni.detector.pixel_size[1],
                                                    max_shape=(ny, nx)),
                             wavelength=WAVELENGTH)
    mask = detector.gap_mask().astype(np.int8)
    unit = to_unit("q_nm^-1")
    try:
        integrator = ai.setup_sparse_integrator((ny, nx), INTEGRATION.bins, mask=mask, unit=unit, split="no",
                                                algo="CSR", scale=False)
        ctx = ocl.create_context(devicetype="GPU")
        out["opencl_device"] = str(ctx.devices[0].name)
        finder = OCL_PeakFinder(integrator.lut, image_size=ny * nx, unit=unit, bin_centers=integrator.bin_centers,
                                radius=ai.array_from_unit(typ="center", unit=unit, scale=False), mask=mask, ctx=ctx)
    except Exception as exc:
        out["error"] = f"OpenCL set-up failed: {exc!r}"
        return out
    common = dict(error_model="poisson", cutoff_clip=CLIP.cutoff_clip, cycle=CLIP.cycles, noise=PICK.noise,
                  safe=False, solidangle=sa.astype(np.float32), polarization=pol.astype(np.float32))
    nframes = args.pyfai_frames

    def sparsify():
        for k in range(nframes):
            finder.sparsify(distinct[k % len(distinct)], cutoff_pick=PICK.cutoff_pick, **common)

    def peakfinder():
        for k in range(nframes):
            finder.peakfinder(distinct[k % len(distinct)], cutoff_peak=PEAKS.cutoff_peak,
                              patch_size=PEAKS.patch_size, connected=3, **common)

    out["sparsify"] = median_fps(sparsify, nframes, args.repeats)
    out["peakfinder"] = median_fps(peakfinder, nframes, args.repeats)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="frames per batch (default 16)")
    parser.add_argument("--batches", type=int, default=40, help="batches per timed run (default 40)")
    parser.add_argument("--streams", type=int, default=3, help="batches in flight (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, median reported (default 3)")
    parser.add_argument("--pyfai-frames", type=int, default=20, help="frames per pyFAI timed run (default 20)")
    parser.add_argument("--detectors", default="eiger4m,eiger16m", help="comma-separated (default eiger4m,eiger16m)")
    parser.add_argument("--skip-pyfai", action="store_true")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the GPU-vs-CPU check")
    parser.add_argument("--json", help="write all figures to this JSON file")
    args = parser.parse_args(argv)

    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(0)
    report = {"gpu": props["name"].decode(), "date": time.strftime("%Y-%m-%d"), "args": vars(args), "braggsieve": []}
    detectors = args.detectors.split(",")
    for name in detectors:
        figures = braggsieve_figures(name, args)
        report["braggsieve"].append(figures)
        print(json.dumps(figures), flush=True)
    if not args.skip_pyfai:
        report["pyfai"] = {}  # by detector
        for name in detectors:
            report["pyfai"][name] = pyfai_figures(name, args)
            print(json.dumps(report["pyfai"][name]), flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)

    print(f"\nGPU: {report['gpu']}, {report['date']}; batch {args.batch} frames, {args.streams} streams")
    print(f"{'detector':10s} {'device':>9s} {'pinned':>9s} {'pageable':>9s} {'H2D copy':>9s} {'clip only':>9s}"
          "   frames/s")
    for figures in report["braggsieve"]:
        print(f"{figures['detector']:10s} {figures['device']:9.0f} {figures['pinned']:9.0f} "
              f"{figures['pageable']:9.0f} {figures['h2d_copy']:9.0f} {figures['device_clip_only']:9.0f}")
    for figures in report["braggsieve"]:
        name = figures["detector"]
        pyfai = report.get("pyfai", {}).get(name, {})
        if "sparsify" in pyfai:
            print(f"pyFAI OpenCL ({pyfai.get('opencl_device')}), {name} from host: sparsify {pyfai['sparsify']:.0f}, "
                  f"peakfinder {pyfai['peakfinder']:.0f} frames/s; ratio braggsieve (pinned, sparsify + peaks + "
                  f"veto) / pyFAI: {figures['pinned'] / pyfai['sparsify']:.1f}x vs sparsify, "
                  f"{figures['pinned'] / pyfai['peakfinder']:.1f}x vs peakfinder")
        else:
            print(f"pyFAI not measured for {name} in this run ({pyfai.get('error', 'skipped')}); issue 6 quotes, "
                  "same H100, Eiger 4M: sparsify 213, peakfinder 238 frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
