"""``braggsieve demo``: the whole pipeline on the built-in simulated run, with a summary a newcomer can read."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Run braggsieve end to end on a built-in simulated serial-crystallography run (100 PILATUS 1M stills, 40 % hits,
made on first use in a few seconds and cached in ~/.cache/braggsieve, or $BRAGGSIEVE_CACHE):
  1. a bad-pixel mask from simulated dark and flat-field series of the same detector (robust statistics,
     braggsieve mask);
  2. one pass over the frames ('braggsieve process'): sigma-clipped background per frame, Bragg peaks (CXI +
     .geom for CrystFEL), the hit veto, and sparse frames (pyFAI/FabIO layout);
  3. a self-contained HTML report and its figures as PNG files.
The summary compares the mask and the veto with the simulation's ground truth."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="run the whole pipeline on a built-in simulated dataset",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", default="demo_output", metavar="OUTDIR",
                        help="output folder (default: demo_output); an earlier demo there is resumed")
    parser.add_argument("--cache", metavar="DIR", help="where the simulated run is cached (default: ~/.cache/braggsieve)")
    parser.set_defaults(run=run)


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from ..pipeline.demo import run_demo

    summary = run_demo(args.output, cache_dir=args.cache, progress=None,
                       argv=["braggsieve", "demo", "-o", args.output])
    demo = summary["demo"]
    hits = max(summary["hits"], 1)
    out = args.output
    lines = [
        f"braggsieve demo: {summary['frames']} simulated PILATUS 1M stills from {demo['dataset']}",
        f"  mask      {demo['masked_pixels']} bad pixels ({demo['gap_pixels']} module gaps) from {demo['dark_frames']} "
        f"dark and {demo['flat_frames']} flat-field frames; planted bad pixels found: {demo['planted_masked']} of "
        f"{demo['planted_bad_pixels']}; good pixels masked: {demo['good_pixels_masked']}",
        f"  veto      {summary['hits']} hits of {summary['frames']} frames (at least {summary['min_peaks']} peaks); "
        f"truth: {demo['true_hits']} hits, {demo['hits_found']} found, {demo['false_hits']} false",
        f"  peaks     {summary['peaks']} peaks ({summary['peaks'] / hits:.0f} per hit) -> {out}/run.cxi + "
        f"{out}/run.geom (indexamajig --peaks=cxi)",
        f"  sparsify  {100 * summary['kept_fraction']:.1f} % of pixels kept; {_megabytes(demo['input_bytes'])} input "
        f"(bitshuffle-LZ4) -> {_megabytes(demo['sparse_bytes'])} sparse "
        f"({demo['input_bytes'] / max(demo['sparse_bytes'], 1):.1f}x) -> {out}/run_sparse.h5",
        f"  speed     {summary['frames_per_second']:.1f} frames/s ({summary['seconds']:.1f} s for the processing pass)",
        f"  see       {out}/{demo['figures'][0]} (open in a browser) and {out}/plots/*.png",
    ]
    print("\n".join(lines))
    return 0
