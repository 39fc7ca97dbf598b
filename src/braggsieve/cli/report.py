"""``braggsieve report``: a self-contained HTML page of a ``braggsieve process`` run."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Write one self-contained HTML file (figures embedded, no other file needed: mail it, attach it to the
logbook) for the output folder of 'braggsieve process':
  - the run summary: frames, hits and hit rate, peaks, pixels kept by sparsify, timing, checks;
  - the veto: peak-count histogram and the fraction of frames kept versus the threshold (with --stream:
    also the fraction of the frames CrystFEL indexed that the veto keeps, the curve to choose the threshold on);
  - peaks per frame along the run with the running hit rate;
  - one frame (--frame, default a typical hit) with its peaks and masked pixels (its image is read through
    run.cxi, so the input files must still be where the run found them), and its sigma-clipped background
    with the +-1 std band, the picking threshold and the pixels sparsify kept;
  - with --mask: the bad pixels of each feature of a braggsieve mask file;
  - the parameters of the run (run.json).
What cannot be shown is listed on the page rather than failing the report."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="self-contained HTML report of a 'process' output folder",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outdir", metavar="OUTDIR", help="output folder of 'braggsieve process'")
    parser.add_argument("-o", "--output", required=True, metavar="REPORT.html", help="HTML file to write")
    parser.add_argument("--stream", metavar="RUN.stream",
                        help="CrystFEL stream of this run (indexamajig -i OUTDIR/run.lst ... -o RUN.stream): "
                             "frames are matched by CXI file name and event //ROW; frames absent from the "
                             "stream count as not indexed")
    parser.add_argument("--mask", metavar="MASK.h5", help="braggsieve mask file to show per feature")
    parser.add_argument("--frame", type=int, metavar="N",
                        help="frame (0-based, in run order) to show with its peaks and background (default: the "
                             "first hit with the median peak count of the hits)")
    parser.add_argument("--min-peaks", type=int, metavar="N",
                        help="veto threshold to mark and count hits at (default: the run's --min-peaks)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.report import write_report

    if args.min_peaks is not None and args.min_peaks < 0:
        raise ParameterError(f"--min-peaks must be >= 0, got {args.min_peaks}")
    report = write_report(args.outdir, args.output, stream=args.stream, mask=args.mask, frame=args.frame,
                          min_peaks=args.min_peaks)
    print(f"wrote {args.output}: {len(report.figures)} figures" +
          (f"; not shown: {'; '.join(report.notes)}" if report.notes else ""))
    return 0
