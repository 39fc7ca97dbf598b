"""``braggsieve compare``: quality report of a sparsify / densify round trip."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Quality of lossy compression: compares ORIGINAL frames with the DENSIFIED frames rebuilt from SPARSE.h5.
  compression   size of SPARSE.h5 against the original frames stored with bitshuffle-LZ4 (one frame per
                chunk, as Dectris detectors write them), pixels kept per frame;
  background    per radial bin of the sparse file: sigma-clipped pixel std (azimuthal scatter, normalised
                units) of the densified frames / of the original frames (1 = same noise);
  spots         with --truth RUN_truth.h5 (from 'braggsieve simulate'): every truth spot integrated the same
                way in both (disc of 3 px minus the median of the 5-8 px annulus); Pearson CC and mean
                ratio densified/original over spots with I/sigma > 3 in the original.
The original and densified inputs must hold the same frames in the same order (use --frames to select the
original's frames that were sparsified)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("compare", help="quality report: compression, background noise, spot intensities",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("original", metavar="ORIGINAL", help="original frames (HDF5/NeXus, Eiger master, CBF...)")
    parser.add_argument("densified", metavar="DENSIFIED", help="densified frames (e.g. OUT_master.h5 of densify)")
    parser.add_argument("--sparse", required=True, metavar="SPARSE.h5", help="the sparse-frames file")
    parser.add_argument("--truth", default=None, metavar="RUN_truth.h5",
                        help="ground truth of a simulated run, for the spot intensities")
    parser.add_argument("--h5path", default="/entry/data/data", help="frames dataset in HDF5 inputs "
                        "(default: /entry/data/data)")
    parser.add_argument("--frames", default=None, metavar="START:STOP", help="frames of ORIGINAL to compare")
    parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="frames read together (default: 4)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..io.frames import open_frames
    from ..pipeline.quality import compression_report, round_trip_report

    original = open_frames([args.original], h5path=args.h5path, frames=args.frames)
    densified = open_frames([args.densified], h5path=args.h5path)
    print(compression_report(original, args.sparse, batch_size=args.batch_size).text())
    print(round_trip_report(original, densified, args.sparse, truth_path=args.truth,
                            batch_size=args.batch_size).text())
    return 0
