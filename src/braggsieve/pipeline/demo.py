"""The demo: the whole pipeline on the built-in simulated run (``braggsieve demo``).

1. the demo run (100 PILATUS 1M stills, 40 % hits; braggsieve.simulate.demo, cached after the first use);
2. a dark series and a flat-field series of the same simulated detector (same planted bad pixels) and a
   bad-pixel mask made from them by the robust mask maker (braggsieve.mask), written to ``OUTDIR/demo_mask.h5``;
3. ``process`` with that mask: peaks, veto, sparse frames, master files, summary and veto plot in ``OUTDIR``;
4. ``OUTDIR/report.html`` (braggsieve report) and its figures as ``OUTDIR/plots/*.png``: the veto curves, peaks
   along the run, a hit with its peaks and mask, its sigma-clipped background with the +-sigma band and the
   picking threshold, and the mask per feature.

The summary returned (and in ``OUTDIR/summary.json``) gains ``"demo"``: the mask's bad pixels against the
planted ones, and the veto's hits against the simulated truth.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

DARK_FRAMES = 32
FLAT_FRAMES = 32
FLAT_PHOTONS = 200.0  # photons per pixel and flat-field frame (uniform illumination)


def _demo_mask(path: Path) -> dict[str, Any]:
    """Simulate the demo detector's dark and flat-field series, make the mask (written to ``path``); mask
    statistics."""
    from ..io.mask_file import write_mask_file
    from ..io.provenance import Provenance
    from ..mask.maker import ArraySeries, make_mask
    from ..simulate.demo import DEMO_PARAMS
    from ..simulate.response import record_frames
    from ..simulate.ssx import SsxSimulator, run_geometry

    setup = DEMO_PARAMS["setup"]
    simulator = SsxSimulator(run_geometry(setup), DEMO_PARAMS["ssx"], DEMO_PARAMS["background"],
                             DEMO_PARAMS["noise"], DEMO_PARAMS["bad_pixels"], seed=setup.seed)
    darks = record_frames(np.zeros((DARK_FRAMES, *simulator.shape), np.float32), simulator.response,
                          seed=setup.seed + 1000, first_frame=0, dtype=simulator.dtype)
    flats = record_frames(np.full((FLAT_FRAMES, *simulator.shape), FLAT_PHOTONS, np.float32), simulator.response,
                          seed=setup.seed + 2000, first_frame=0, dtype=simulator.dtype)
    result = make_mask([ArraySeries(darks, name="simulated dark series")],
                       [ArraySeries(flats, name="simulated flat-field series")], counting=simulator.counting,
                       exclude=simulator.gap)
    series = {"dark_frames": DARK_FRAMES, "flat_frames": FLAT_FRAMES, "flat_photons_per_pixel": FLAT_PHOTONS}
    write_mask_file(path, result.bits, stage_bitmask=result.stage_bits, counts=result.counts,
                    provenance=Provenance.start(parameters={"demo_series": series}, argv=["braggsieve demo"]))
    from ..simulate.params import DEFECT_TYPES

    planted = simulator.bad_types > 0
    found = result.bits != 0
    by_type = {name: [int((simulator.bad_types == code).sum()), int((found & (simulator.bad_types == code)).sum())]
               for name, code in DEFECT_TYPES.items()}
    return {"mask": str(path.name), **series, "masked_pixels": int(found.sum()),
            "gap_pixels": int(simulator.gap.sum()), "planted_bad_pixels": int(planted.sum()),
            "planted_masked": int((found & planted).sum()), "planted_and_masked_by_type": by_type,
            "good_pixels_masked": int((found & ~planted & ~simulator.gap).sum())}


def _write_report(outdir: Path, mask_path: Path) -> list[str]:
    """``report.html`` of the run plus each of its figures as ``plots/<name>.png``; the files' names."""
    from .report import write_report

    report = write_report(outdir, outdir / "report.html", mask=str(mask_path))
    (outdir / "plots").mkdir(exist_ok=True)
    names = ["report.html"]
    for title, _caption, png in report.figures:
        name = "plots/" + "".join(c if c.isalnum() else "_" for c in title.lower()).strip("_") + ".png"
        (outdir / name).write_bytes(png)
        names.append(name)
    return names


def run_demo(outdir: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
             progress: bool | None = None, argv=None) -> dict[str, Any]:
    """Run the demo into ``outdir`` (see the module docstring); returns the run summary."""
    from ..engine.params import ClipParams, CorrectionParams, IntegrationParams
    from ..engine.peaks import PeakParams
    from ..engine.pick import PickParams
    from ..io.frames import open_frames
    from ..simulate.demo import demo_dataset
    from .process import ProcessParams, run_process
    from .setup import build_setup
    from .veto import VetoParams

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    files = demo_dataset(cache_dir, progress=progress)
    mask_path = outdir / "demo_mask.h5"
    mask_stats = _demo_mask(mask_path)
    source = open_frames(str(files.data))
    params = {IntegrationParams: IntegrationParams(), CorrectionParams: CorrectionParams(), ClipParams: ClipParams(),
              PickParams: PickParams(), PeakParams: PeakParams(), VetoParams: VetoParams(),
              ProcessParams: ProcessParams(part_size=25)}
    setup = build_setup(source, params, poni=str(files.poni), mask=str(mask_path))
    summary = run_process(source, setup, outdir, params[ProcessParams], params[VetoParams], workers="auto",
                          progress=progress, argv=argv or ["braggsieve", "demo", str(outdir)])
    with h5py.File(files.truth, "r") as truth:
        true_hits = truth["truth/frames/hit"][()]
    hit = np.asarray(summary["per_frame"]["hit"], bool)
    sparse_bytes = sum(path.stat().st_size for path in [outdir / "run_sparse.h5", *outdir.glob("parts/*.h5")])
    summary["demo"] = {"dataset": str(files.data), **mask_stats,
                       "true_hits": int(true_hits.sum()), "hits_found": int((hit & true_hits).sum()),
                       "false_hits": int((hit & ~true_hits).sum()),
                       "input_bytes": files.data.stat().st_size, "sparse_bytes": sparse_bytes,
                       "figures": _write_report(outdir, mask_path)}
    from ..io.atomic import atomic_output

    with atomic_output(outdir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary
