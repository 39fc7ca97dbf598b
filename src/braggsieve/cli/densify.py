"""``braggsieve densify``: dense frames from a sparse-frames file, for XDS, DIALS, CrysAlis."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Rebuild dense frames from a sparse-frames file (written by 'braggsieve sparsify' or by pyFAI's
sparsify-Bragg): every valid pixel gets its frame's background at its radius (interpolated between bin
centres, multiplied back by the stored normalisation: flat x solid angle x polarisation x gain), with noise,
and the stored Bragg pixels get their exact values. Masked pixels (NaN in the file's radius map) get DUMMY
and are flagged in the Eiger pixel_mask.

Noise (--noise): gaussian (default, as FabIO's densify-Bragg: max(0, N(bg, FACTOR x std))), poisson
(Poisson(bg) counts: the right model for counting detectors such as Eiger and Pilatus) or none (the smooth
mean: integration programs such as XDS then underestimate the background noise). Without --seed the noise is
drawn from a fresh seed (logged with -v).

Outputs (--format):
  eiger  OUT_master.h5 + OUT_data_000001.h5 ... (Dectris/NXmx layout, bitshuffle-LZ4; frames also at
         /entry/data/data of the master through a virtual dataset) for XDS (Neggia or Durin plugin) and DIALS
  cbf    one miniCBF per frame (int32, Pilatus-style header): OUT with {index} (e.g. 'img_{index:05d}.cbf')
         or OUT_NNNNN.cbf"""


def register(subparsers) -> None:
    parser = subparsers.add_parser("densify", help="dense frames (Eiger HDF5 or CBF) from a sparse-frames file",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sparse", metavar="SPARSE.h5", help="sparse-frames file")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="eiger: the master file (NAME_master.h5); cbf: a file pattern (see above)")
    parser.add_argument("--format", choices=("eiger", "cbf"), default="eiger", help="output format (default: eiger)")
    parser.add_argument("--noise", choices=("gaussian", "poisson", "none"), default="gaussian",
                        help="background noise model (default: gaussian)")
    parser.add_argument("--noise-factor", type=float, default=1.0, metavar="FACTOR",
                        help="scale of the gaussian noise's std, 0..1 (FabIO's --noise; default: 1)")
    parser.add_argument("--no-truncate", action="store_true",
                        help="do not redraw noise above the picking threshold stated in the file (by default a "
                             "pixel that was not stored stays below that threshold, as in the original frames)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, to reproduce frames exactly")
    parser.add_argument("--dummy", type=float, default=None,
                        help="value of masked pixels (default: the file's dummy, 0 for integer data)")
    parser.add_argument("--no-virtual", action="store_true",
                        help="eiger: do not add /entry/data/data (the virtual dataset over the data files) to the "
                             "master; FabIO's Eiger reader counts every data* member and so sees the frames twice "
                             "when it is there, but DIALS (dxtbx FormatNXmx) recognises the master only with it")
    parser.add_argument("--frames-per-file", type=int, default=1000, metavar="N",
                        help="eiger: frames per data file (default: 1000)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N", help="frames densified together "
                        "(default: 8)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.sparse import densify_run

    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")
    if not 0 <= args.noise_factor:
        raise ParameterError(f"--noise-factor must be >= 0, got {args.noise_factor}")
    files = densify_run(args.sparse, args.output, fmt=args.format, noise=args.noise, factor=args.noise_factor,
                        seed=args.seed, dummy=args.dummy, truncate=not args.no_truncate, virtual=not args.no_virtual, frames_per_file=args.frames_per_file,
                        batch_size=args.batch_size)
    shown = ", ".join(str(f) for f in files[:3]) + (f", ... ({len(files)} files)" if len(files) > 3 else "")
    print(f"wrote {shown}")
    return 0
