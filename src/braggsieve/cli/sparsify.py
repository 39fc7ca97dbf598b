"""``braggsieve sparsify``: keep only the Bragg pixels and the background curve (lossy compression)."""
from __future__ import annotations

import argparse
import sys

from ..engine.pick import PickParams
from . import common

DESCRIPTION = """\
Lossy compression of diffraction frames: the background of each frame is sigma-clipped azimuthally (its mean
and pixel std per radial bin are stored), and only the pixels standing above it are stored, with their exact
raw values (minus the dark, if one is given) in the input's own dtype. A pixel at radius r is kept when
  I/norm - bg(r) > max(NOISE, K * sqrt(std(r)^2 + NOISE^2))          (K = --cutoff-pick, default 2)
with bg and std interpolated between bin centres (normalised units: I divided by flat x solid angle x
polarisation, and by the gain in ADU/photon). Overloaded pixels (at or above --saturation) are always kept.

All inputs go into ONE output file, frames in input order; /entry_0000/sources records the file and frame
index of each. The layout is pyFAI's sparsify-Bragg layout (/entry_0000/sparse_frames: frame_ptr, index,
intensity, background_avg/std, radius, mask = per-pixel radius with NaN = masked, normalization), readable by
FabIO's fabio.sparseimage.SparseImage().read(FILE) and by 'braggsieve densify'. fabio.open() and FabIO's
densify-Bragg recognise only files whose creator starts with "pyFAI": --fabio-compatible writes such a creator
("pyFAI-compatible sparse frames (braggsieve X)"); see docs/sparse.md. Files need hdf5plugin (bitshuffle,
Blosc2) to be read: 'import hdf5plugin' in Python, HDF5_PLUGIN_PATH elsewhere."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("sparsify", help="lossy compression: keep Bragg pixels + background curve",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_processing_options(parser, "sparsify", PickParams)
    group = parser.add_argument_group("output")
    group.add_argument("-o", "--output", required=True, metavar="OUT.h5", help="sparse-frames file to write")
    group.add_argument("--quantise", type=float, default=0.0, metavar="F",
                       help="noise-aware lossy rounding of the stored intensities to a power-of-two step of at "
                            "most F times the pixel's own Poisson sigma (0 = exact values; 1 adds at most 8%% "
                            "to a pixel's variance: on 20 simulated Eiger 4M hits 8.0x instead of 7.2x, spot CC "
                            "0.9996, background sigma -1.4%%; 2: 8.7x, sigma -2.3%%; see docs/sparse.md); "
                            "default: 0")
    group.add_argument("--fabio-compatible", action="store_true",
                       help="write a root 'creator' starting with 'pyFAI' so that fabio.open and FabIO's "
                            "densify-Bragg recognise the file (it says braggsieve wrote it)")
    group.add_argument("--compression", choices=("bytedelta", "zstd", "bslz4"), default="bytedelta",
                       help="codec of every dataset: bytedelta (HDF5 shuffle, then Blosc2 byte-delta + zstd: "
                            "the smallest, needs c-blosc2 >= 2.10 in the reader's hdf5plugin), zstd (Blosc2 "
                            "shuffle + zstd, for older readers: 1.4x larger) or bslz4 (bitshuffle-LZ4 everywhere, "
                            "as pyFAI writes: 2.6x larger); all come with hdf5plugin (default: bytedelta)")
    group.add_argument("--batch-size", type=int, default=8, metavar="N",
                       help="frames processed together; memory grows by about 25 bytes per pixel per frame "
                            "(default: 8)")
    group.add_argument("--report", action="store_true",
                       help="after writing, print the quality report (compression ratio against the input "
                            "stored with bitshuffle-LZ4, pixels kept per frame) -- see 'braggsieve compare'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.sparse import sparsify_run

    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.quantise < 0:
        raise ParameterError(f"--quantise must be >= 0, got {args.quantise}")
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    summary = sparsify_run(source, setup, setup.param(PickParams), args.output, quantise=args.quantise,
                           creator_compat=args.fabio_compatible, compression=args.compression,
                           batch_size=args.batch_size, argv=sys.argv)
    kept = summary.kept
    print(f"{len(kept)} frame(s), {kept.mean() if len(kept) else 0:.0f} pixels kept per frame "
          f"({100 * summary.kept_fraction.mean() if len(kept) else 0:.3f}% of {summary.npixels} valid); "
          f"wrote {summary.path} ({summary.nbytes / 1e6:.2f} MB)")
    if args.report:
        from ..pipeline.quality import compression_report

        print(compression_report(source, summary.path).text())
    return 0
