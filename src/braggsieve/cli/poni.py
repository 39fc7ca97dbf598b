"""``braggsieve poni``: a pyFAI PONI file from the geometry an input file states in its header (NXmx, miniCBF)."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from ..errors import ParameterError
from ..params import add_options, from_sources, option

log = logging.getLogger(__name__)

DESCRIPTION = """\
Write a pyFAI PONI file (version 2.1, readable by pyFAI, pyFAI-calib2 and every braggsieve command's --poni)
from the geometry that FILE states: an NXmx/NeXus HDF5 file or Eiger master file (detector distance, pixel
size, beam_center_x/y, incident wavelength or energy) or a miniCBF header (Detector_distance, Pixel_size,
Beam_xy, Wavelength), e.g. Pilatus .cbf or .cbf.bz2 files.

The PONI describes an untilted detector (rot1 = rot2 = rot3 = 0): Poni1 = beam y x pixel size (slow axis),
Poni2 = beam x x pixel size (fast axis), Distance = the detector distance, as pyFAI's setFit2D does.  The beam
centre is in pixels from the detector's outer corner (the first pixel spans [0, 1)), the convention of NXmx,
miniCBF Beam_xy and Fit2D; a beam hitting the middle of pixel (row i, column j) is at x = j + 0.5, y = i + 0.5.
The detector is the registry detector with the frames' shape and pixel size (eiger4m, pilatus6m, ...; see
docs/geometry.md), or a generic flat detector.  Options below override or complete what the header says.
Refine the result with a calibrant (pyFAI-calib2) when you need tilts."""

EPILOG = """\
example: braggsieve poni thau_3_2_0001.cbf.bz2 -o thau.poni
         braggsieve poni run_master.h5 -o run.poni --wavelength 0.9763   # the file lacks a wavelength"""


@dataclass(frozen=True)
class PoniOverrides:
    """Header overrides: values that replace or complete what the file states"""

    detector: str | None = option(None, "registry detector name (eiger4m, pilatus6m, jungfrau4m, ...) instead "
                                  "of the one matched from the frame shape and pixel size", type=str)
    distance: float | None = option(None, "sample-detector distance in mm", type=float, metavar="MM")
    beam_center: tuple[float, float] | None = option(
        None, "beam centre X (fast axis, column) Y (slow axis, row) in pixels from the detector's outer corner",
        nargs=2, type=float, metavar=("X", "Y"))
    wavelength: float | None = option(None, "X-ray wavelength in Angstrom", type=float, metavar="ANGSTROM")

    def __post_init__(self):
        for name in ("distance", "wavelength"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParameterError(f"--{name} must be positive, got {value}")


def register(subparsers) -> None:
    parser = subparsers.add_parser("poni", help="PONI geometry file from an NXmx or miniCBF header",
                                   description=DESCRIPTION, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="FILE", help="NXmx/NeXus HDF5, Eiger master or miniCBF (.cbf, .cbf.bz2)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.poni", help="PONI file to write")
    parser.add_argument("--h5path", default="/entry/data/data",
                        help="HDF5 dataset of the frames, used for their shape (default: /entry/data/data)")
    add_options(parser, PoniOverrides)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..geometry import Poni, get_detector, match_detector, write_poni
    from ..io.atomic import atomic_output
    from ..io.frames import open_frames

    overrides = from_sources(PoniOverrides, args)
    with open_frames(args.input, h5path=args.h5path) as source:
        shape, metadata = source.shape, source.metadata
    distance = metadata.distance_m if overrides.distance is None else overrides.distance * 1e-3
    beam = metadata.beam_center_px if overrides.beam_center is None else overrides.beam_center
    wavelength = metadata.wavelength_m if overrides.wavelength is None else overrides.wavelength * 1e-10
    if overrides.detector is not None:
        detector = get_detector(overrides.detector).for_shape(shape)
    elif metadata.pixel_size_m is not None:
        detector = match_detector(shape, metadata.pixel_size_m, metadata.detector_name)
    else:
        detector = None
    missing = [what for what, value in (("detector distance (--distance)", distance),
                                        ("beam centre (--beam-center)", beam),
                                        ("pixel size (--detector)", detector)) if value is None]
    if missing:
        raise ParameterError(f"{args.input}: the header does not state the {', '.join(missing)}; "
                             f"give {'it' if len(missing) == 1 else 'them'} on the command line")
    if wavelength is None:
        log.warning("%s states no wavelength and --wavelength was not given: the PONI has none (q and "
                    "d-spacing will not be available)", args.input)
    poni = Poni.from_beam_center(detector, distance, beam, wavelength)
    with atomic_output(args.output) as temporary:
        write_poni(poni, temporary, comment=f"Derived from the header of {args.input}")
    print(f"{args.output}: {detector.name} {shape[0]}x{shape[1]}, distance {distance * 1e3:.6g} mm, beam centre "
          f"(x, y) = ({beam[0]:.6g}, {beam[1]:.6g}) px, wavelength "
          + ("none" if wavelength is None else f"{wavelength * 1e10:.6g} A"))
    return 0
