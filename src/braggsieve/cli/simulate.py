"""``braggsieve simulate``: synthetic serial-crystallography frames with ground truth."""
from __future__ import annotations

import argparse
import sys

from ..params import add_options, from_sources, load_config
from ..simulate.params import BackgroundParams, BadPixelParams, NoiseParams, SetupParams, SsxParams

DESCRIPTION = """\
Simulate serial-crystallography still frames with their ground truth: an amorphous background (small-angle
scatter and a water ring, x polarisation x solid angle), crystals of the given cell in random orientations on
HIT_FRACTION of the frames (Ewald-sphere partiality, Wilson intensities, Gaussian spots integrated over the
pixels), zingers, counting (Poisson) or integrating (gain + pedestal + read noise) detector noise, planted bad
pixels, and the detector's gaps filled with its marker.

Writes OUTPUT (NXmx-like HDF5: /entry/data/data, one bitshuffle-LZ4 chunk per frame, pixel_mask, wavelength,
distance, pixel size, beam centre), OUTPUT's .poni and OUTPUT's _truth.h5 (every reflection's row, col and
expected photons, hit flags, zingers, bad-pixel types, the noiseless background, pedestal and gain maps).
The same seed gives bitwise the same frames.  Parameters can come from --config FILE.toml, tables [setup],
[ssx], [background], [noise], [bad_pixels] with the option names below (underscores for dashes)."""

EPILOG = """\
example: braggsieve simulate -o run.h5 --detector eiger4m --frames 100 --hit-fraction 0.4 --seed 1
         braggsieve simulate --demo          # prints the paths of the cached demo run
         braggsieve simulate -o jf.h5 --detector jungfrau4m --frames 20   # integrating: ADU, pedestal 1000"""

# TOML table -> parameter dataclass.
TABLES = {"setup": SetupParams, "ssx": SsxParams, "background": BackgroundParams, "noise": NoiseParams,
          "bad_pixels": BadPixelParams}


def register(subparsers) -> None:
    parser = subparsers.add_parser("simulate", help="synthetic SSX frames with ground truth",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", metavar="RUN.h5",
                        help="frames file; RUN.poni and RUN_truth.h5 are written next to it")
    parser.add_argument("--demo", action="store_true",
                        help="make (first time) or find the built-in demo run -- 100 PILATUS 1M stills, 40%% hits -- "
                             "in the cache ($BRAGGSIEVE_CACHE or ~/.cache/braggsieve) and print its paths; other "
                             "options are ignored")
    parser.add_argument("--config", metavar="FILE.toml", help="TOML file with the tables listed above")
    parser.add_argument("--batch-size", type=int, default=4, help="frames generated at once (default: 4)")
    parser.add_argument("--mask-bad-pixels", action=argparse.BooleanOptionalAction, default=True,
                        help="record the planted bad pixels in the file's pixel_mask, as a detector calibration "
                             "would (default: yes; --no-mask-bad-pixels leaves them for 'braggsieve mask' to find)")
    for cls in TABLES.values():
        add_options(parser, cls)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..io.provenance import Provenance
    from ..simulate.files import write_run
    from ..simulate.ssx import SsxSimulator, run_geometry

    if args.demo:
        from ..simulate.demo import demo_dataset
        files = demo_dataset()
        print(f"{files.data}\n{files.poni}\n{files.truth}")
        return 0
    if args.output is None:
        raise ParameterError("braggsieve simulate needs -o/--output RUN.h5 (or --demo)")
    config = load_config(args.config)
    unknown = sorted(set(config) - set(TABLES))
    if unknown:
        raise ParameterError(f"{args.config}: unknown table(s) {', '.join(unknown)}; expected {', '.join(TABLES)}")
    params = {name: from_sources(cls, args, config.get(name, {})) for name, cls in TABLES.items()}
    if args.batch_size < 1:
        raise ParameterError(f"--batch-size must be at least 1, got {args.batch_size}")
    setup = params["setup"]
    poni = run_geometry(setup)
    simulator = SsxSimulator(poni, params["ssx"], params["background"], params["noise"], params["bad_pixels"],
                             seed=setup.seed)
    provenance = Provenance.start(parameters=params, geometry=poni.as_dict(),
                                  inputs=[setup.poni] if setup.poni else (), argv=sys.argv)
    files = write_run(simulator, args.output, setup.frames, provenance, batch_size=args.batch_size,
                      mask_bad_pixels=args.mask_bad_pixels)
    print(f"wrote {files.data} ({setup.frames} frames, {simulator.shape[0]}x{simulator.shape[1]} "
          f"{simulator.dtype}), {files.poni}, {files.truth}")
    return 0
