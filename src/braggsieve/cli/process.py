"""``braggsieve process``: whole runs in one pass -- mask, background, peaks, veto, sparse frames -- in parts."""
from __future__ import annotations

import argparse
import sys

from ..engine.peaks import PeakParams
from ..engine.pick import PickParams
from ..params import add_options
from ..pipeline.process import ProcessParams
from ..pipeline.veto import VetoParams
from . import common

DESCRIPTION = """\
Process whole runs (many files, Eiger master files, CBF series) in one pass: every frame is masked (the
--mask file, the input's own pixel mask and markers, the detector gaps), its azimuthal background is
sigma-clipped ONCE, and from it both the pixels above background (sparse frames, as 'braggsieve sparsify')
and the Bragg peaks (as 'braggsieve peaks') are taken; the veto marks frames with at least --min-peaks peaks.

The frames are cut into parts of --part-size frames, each written on its own under OUTDIR/parts/ and
renamed into place when complete. After a crash or Ctrl-C, run the same command again: complete parts are
skipped, unfinished ones redone (nothing is half-written). Changing inputs or parameters (other than
--min-peaks and --batch-size) with the same OUTDIR is refused unless --restart deletes the old parts.

Outputs in OUTDIR:
  run.cxi          peaks + images of all frames for CrystFEL (virtual datasets over parts/*.cxi; peak
                   columns as in 'braggsieve peaks --help': peakXPosRaw = column, pixel centres at integers)
  run_sparse.h5    sparse frames of all frames (virtual datasets over parts/*.h5): 'braggsieve densify' reads it
  run.geom, run.lst (hits, 'run.cxi //ROW'), run_frames.csv, run_veto.png
  summary.json     frames, hits, peaks, frames/s, checks (missing/duplicated frames: always 0 in a finished
                   run) and per frame: position, source (file number), index, npeaks, hit, kept pixels,
                   input_crc32 (CRC-32 of the raw frame bytes) and result_crc32 (of its sparse pixels,
                   background and peaks)
Keep parts/ (and the inputs, for linked images) next to the master files: they point into them.

Parallel runs: --scheduler ADDRESS sends the parts to a running Dask scheduler (e.g. started by
dask-jobqueue on SLURM; workers need to see the inputs and OUTDIR); --workers N starts a local Dask
cluster of N processes (default 'auto': cores/4 workers on machines with 8 cores or more, else one
process). Outputs do not depend on how the parts were run. See docs/process.md."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("process", help="whole runs in one pass: peaks, veto and sparse frames, "
                                                   "resumable, on Dask", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_processing_options(parser, "process", PeakParams, VetoParams, ProcessParams)
    # --noise is PeakParams' (one noise floor for peaks and picking); PickParams' other options here
    add_options(parser, PickParams, skip=("noise",))
    parser.set_defaults(_param_classes=parser.get_default("_param_classes") + (PickParams,))
    group = parser.add_argument_group("output and execution")
    group.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (created)")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler to run the parts on, e.g. tcp://head:8786 (default: none)")
    group.add_argument("--workers", default="auto", metavar="N|auto",
                       help="without --scheduler: local Dask worker processes (0 or 1 = this process only; "
                            "default: auto)")
    group.add_argument("--restart", action="store_true",
                       help="delete the parts of a previous run in OUTDIR and start again")
    group.add_argument("--no-plot", action="store_true", help="do not write run_veto.png")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.process import run_process

    workers = args.workers
    if workers != "auto":
        try:
            workers = int(workers)
        except ValueError:
            raise ParameterError(f"--workers must be a number or 'auto', got {workers!r}") from None
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    summary = run_process(source, setup, args.output, setup.param(ProcessParams), setup.param(VetoParams),
                          scheduler=args.scheduler, workers=workers, restart=args.restart, plots=not args.no_plot,
                          argv=sys.argv)
    print(f"{summary['frames']} frame(s) in {summary['parts']} part(s) ({summary['parts_resumed']} resumed), "
          f"{summary['peaks']} peaks, {summary['hits']} hit(s) with >= {summary['min_peaks']} peaks "
          f"({100 * summary['hit_rate']:.1f}%), {summary['pixels_kept_per_frame']:.0f} pixels kept per frame; "
          f"{summary['frames_per_second']:.2f} frames/s; wrote {args.output}/summary.json")
    return 0
