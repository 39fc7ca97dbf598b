"""``braggsieve peaks``: Bragg peaks of every frame into a CXI file for CrystFEL, the .geom, and the hit veto."""
from __future__ import annotations

import argparse
import sys

from ..engine.peaks import PeakParams
from ..pipeline.veto import VetoParams
from . import common

DESCRIPTION = """\
Find the Bragg peaks of every frame on top of the sigma-clipped azimuthal background, and write:
  OUT.cxi          peaks per frame in CrystFEL's CXI layout (/entry_1/result_1: nPeaks, peakXPosRaw = column
                   (fast axis), peakYPosRaw = row (slow axis), pixel centres at integer values,
                   peakTotalIntensity = background-subtracted counts in detector units (ADU or counts),
                   peakSNR, and peakSigma, peakNPixels, peakMaximumValue, peakBackground, peakResolution (A));
                   the frames at /entry_1/data_1/data (linked for HDF5 inputs -- keep the inputs where they
                   are, relative paths -- copied for CBF/EDF/TIFF inputs)
  OUT.geom         the matching CrystFEL geometry (peak_list = /entry_1/result_1, peak_list_type = cxi)
  OUT.lst          the hits (frames with at least --min-peaks peaks) as 'OUT.cxi //ROW' for indexamajig -i
  OUT_frames.csv   frame,file,index,npeaks,hit for every frame
  OUT_veto.png     histogram of peaks per frame and fraction of frames kept versus the threshold
  OUT_hits.cxi     with --hits-only: the hits only, peaks and images
Index with:  indexamajig -i OUT.lst -g OUT.geom --peaks=cxi -o OUT.stream (CrystFEL >= 0.10).

Per pixel, v = I/norm - bg(r) in photons (bg(r), std(r): the sigma-clipped background of the radial bin).
Zingers (a bright pixel whose 8 neighbours hold < --min-spread of its excess) are ignored like masked pixels.
A peak is the maximum of its --patch-size patch whose 3x3 box holds an excess >= K * sqrt(sum of std(r)^2 +
NOISE^2) (K = --cutoff-peak, plus a Poisson skewness term) and whose 8 neighbours alone exceed --spread-snr
times their noise (a Bragg spot spreads, a zinger does not). Peaks next to masked pixels and gaps are kept
and measured on their valid pixels (--near-mask reject drops them). Positions: Gaussian-windowed centroid.
Intensities in detector counts (norm and gain undone), summed over the 5x5 box around the centroid;
radial unit of the background as --unit."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("peaks", help="Bragg peaks per frame into CXI for CrystFEL, and the hit veto",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_processing_options(parser, "peaks", PeakParams, VetoParams)
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", required=True, metavar="OUT.cxi",
                       help="CXI file to write; the other outputs take its stem")
    group.add_argument("--hits-only", action="store_true",
                       help="also write OUT_hits.cxi with the hit frames only (peaks and images)")
    group.add_argument("--compression", choices=("none", "gzip"), default="none",
                       help="compression of the peak arrays (both readable by CrystFEL without plugins; "
                            "default: none)")
    group.add_argument("--batch-size", type=int, default=4, metavar="N",
                       help="frames processed together; memory grows by about 10 bytes per pixel per frame "
                            "(default: 4)")
    group.add_argument("--no-plot", action="store_true", help="do not write OUT_veto.png")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.peaks import run_peaks

    if not str(args.output).endswith(".cxi"):
        raise ParameterError(f"-o {args.output}: the output must end in .cxi")
    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    summary = run_peaks(source, setup, setup.param(PeakParams), setup.param(VetoParams), args.output,
                        hits_only=args.hits_only, compression=None if args.compression == "none" else "gzip",
                        batch_size=args.batch_size, plots=not args.no_plot, argv=sys.argv)
    nframes = len(summary.npeaks)
    print(f"{nframes} frame(s), {int(summary.npeaks.sum())} peaks, {int(summary.hit.sum())} hit(s) with >= "
          f"{setup.param(VetoParams).min_peaks} peaks; wrote " + ", ".join(str(f) for f in summary.files))
    return 0
