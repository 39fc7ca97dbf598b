"""``braggsieve mask``: bad-pixel mask from dark (and flat-field) series by robust statistics."""
from __future__ import annotations

import argparse
import logging
import sys

from ..params import add_options, from_sources, load_config

log = logging.getLogger("braggsieve.mask")

DESCRIPTION = """\
Make a bad-pixel mask from dark and flat-field series with robust statistics (RMM, Sadri et al. 2022).
Each pixel's dark mean (F2) and dark noise (F3), gain-indicator levels (F4, F5) and average local SNR under
flat illumination (F6) are compared with the robust Gaussian of the same quantity over its block of
neighbours (an ASIC); a pixel is bad when it lies more than LAMBDA robust sigmas away.  Frames whose
robust mean is an outlier (F1) are left out first.

Inputs are HDF5 files with frames at --h5path: (frames, rows, cols), or (frames, cells, modules, rows,
cols) for multi-module detectors with memory cells (in ADU for integrating detectors), with gain-indicator
data at --gain-path.  Repeat --dark once per gain stage (forced-gain dark runs, in the order high, medium,
low); the files after one --dark are one series, joined along the frame axis.  --flat likewise (the i-th
--flat belongs to the i-th gain stage; usually one, in high gain).
"""

EPILOG = """\
Output (-o, HDF5): /mask/bitmask uint32 (rows, cols), or (cells, modules*rows, cols) with memory cells;
0 = good, any set bit = bad.  Bits (NeXus NXmx where NXmx names the defect): 0 gap/ASIC edge, 1 dead,
2 under-responding (F6), 3 over-responding (F6), 4 noisy (F3), 9 offset (F2), 10 gain stages not
separable (F4), 11 gain level (F5), 12 not enough valid frames, 13 input file's own pixel_mask.  Per gain
stage: /mask/stage_bitmask; counts per bit: attributes of /mask/counts; provenance: /mask/provenance.
--export mask.npy|mask.edf|mask.tif writes a 0/1 image (1 = bad, pyFAI's convention; bad in any cell =
bad); --export mask.geom writes CrystFEL geometry lines (mask0_file/mask0_data/...) for this file.
Use the mask in other commands with --mask out.h5.
Example: braggsieve mask --dark dark_*.h5 --flat flat.h5 --detector eiger4m -o mask.h5 --export mask.edf
"""


def register(subparsers) -> None:
    from ..mask.params import MaskParams

    parser = subparsers.add_parser("mask", help="bad-pixel mask from dark and flat-field series",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("--dark", nargs="+", action="append", required=True, metavar="FILE",
                    help="dark series (HDF5); repeat once per gain stage")
    io.add_argument("--flat", nargs="+", action="append", default=[], metavar="FILE",
                    help="flat-field series (HDF5), optional; the i-th belongs to the i-th gain stage")
    io.add_argument("-o", "--output", required=True, metavar="MASK.h5", help="output mask file (HDF5)")
    io.add_argument("--export", action="append", default=[], metavar="FILE",
                    help="also write a 0/1 image (.npy, .edf, .tif; 1 = bad) or CrystFEL lines (.geom); repeatable")
    io.add_argument("--h5path", default="/entry/data/data", help="dataset of the frames (default: %(default)s)")
    io.add_argument("--gain-path", default=None, metavar="H5PATH",
                    help="dataset of the gain-indicator data in the dark files (enables F4, F5)")
    io.add_argument("--detector", default=None, metavar="NAME",
                    help="registry detector (eiger4m, pilatus6m, agipd1m, ...): masks its gaps and ASIC edges "
                         "(bit 0) and tells counting from integrating")
    io.add_argument("--ignore-input-mask", action="store_true",
                    help="do not apply the input files' own NXmx pixel_mask (bit 13)")
    io.add_argument("--save-features", action="store_true",
                    help="store the F2, F3, F6 SNR maps in the output (float32, one per stage)")
    io.add_argument("--config", metavar="FILE.toml", help="TOML file; its [mask] table sets the options below")
    add_options(parser, MaskParams)
    parser.set_defaults(run=run)


def _counting(kind: str, detector, ndim: int) -> bool:
    if kind != "auto":
        return kind == "counting"
    if detector is not None:
        return detector.counting
    return ndim == 2


def _gaps(detector, frame_shape):
    """Gap/ASIC-edge mask broadcastable to the frame shape (*units, rows, cols), or None."""
    import numpy as np

    from ..errors import InputError

    if detector is None:
        return None
    rows, cols = frame_shape[-2:]
    modules = frame_shape[-3] if len(frame_shape) == 4 else 1
    stacked = (modules * rows, cols)
    if detector.shape is not None and tuple(detector.shape) != stacked:
        raise InputError(f"frames stack to {stacked[0]}x{stacked[1]} pixels but detector {detector.name} is "
                         f"{detector.shape[0]}x{detector.shape[1]}")
    gaps = detector.for_shape(stacked).gap_mask()
    return gaps.reshape((modules, rows, cols)) if len(frame_shape) == 4 else gaps


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..geometry.detectors import get_detector
    from ..io.mask_file import export_crystfel, export_image, write_mask_file
    from ..io.provenance import Provenance
    from ..io.series import HDF5Series
    from ..mask.bits import Bit
    from ..mask.maker import make_mask
    from ..mask.params import MaskParams

    params = from_sources(MaskParams, args, load_config(args.config).get("mask", {}))
    darks = [HDF5Series(files, args.h5path, args.gain_path) for files in args.dark]
    flats = [HDF5Series(files, args.h5path) for files in args.flat]
    detector = get_detector(args.detector) if args.detector else None
    shape = darks[0].frame_shape
    counting = _counting(params.kind, detector, len(shape))
    gaps = _gaps(detector, shape)
    given = None if args.ignore_input_mask or len(shape) != 2 else darks[0].pixel_mask()
    inputs = [f for group in args.dark + args.flat for f in group]
    provenance = Provenance.start({"MaskParams": params}, inputs=inputs,
                                  geometry={"detector": detector.as_dict() if detector else None,
                                            "counting": counting})
    total = sum(s.nframes for s in darks + flats)
    with tqdm(total=total, unit="frame", desc="mask", disable=not sys.stderr.isatty(), file=sys.stderr) as bar:
        result = make_mask(darks, flats, params=params, counting=counting, exclude=gaps, input_mask=given,
                           progress=bar.update, keep_features=args.save_features)
    stage_bits = result.stage_bits
    if len(shape) == 4:  # (stages, cells, modules, rows, cols) -> modules stacked along rows
        stage_bits = stage_bits.reshape(stage_bits.shape[:2] + (-1, shape[-1]))
    bitmask = np.bitwise_or.reduce(stage_bits, axis=0)
    write_mask_file(args.output, bitmask, stage_bitmask=stage_bits, counts=result.counts,
                    outlier_frames=result.outlier_frames,
                    features=result.features, provenance=provenance.finish())
    for path in args.export:
        if str(path).lower().endswith(".geom"):
            export_crystfel(args.output, bitmask.ndim == 3, path)
        else:
            export_image(bitmask, path)
    pixels = bitmask.size
    bad = np.count_nonzero(bitmask)
    rejected = sum(int(o.reshape(o.shape[0], -1).any(axis=1).sum()) for o in result.outlier_frames)
    print(f"{args.output}: {bad} of {pixels} pixel entries bad ({100.0 * bad / pixels:.3f} %), "
          f"{'counting' if counting else 'integrating'} detector, lambda {params.lam:g}, "
          f"{rejected} outlier frame(s) left out (F1)"
          + (f", {result.groups} groups of memory cells (--memory-limit)" if result.groups > 1 else ""))
    for name, count in result.counts.items():
        if count:
            print(f"  bit {int(Bit[name]):2d} {name:<17s} {count}")
    if counting and not flats:
        log.warning("no flat series: dead, under- and over-responding pixels of a counting detector are only "
                    "found under illumination (give --flat)")
    return 0
