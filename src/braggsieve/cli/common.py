"""Options and set-up shared by every command that processes frames (integrate, sparsify, peaks, process, ...).

A command module declares its options with one call and gets everything it needs to run with another::

    def register(subparsers):
        parser = subparsers.add_parser("sparsify", help=..., description=...)
        common.add_processing_options(parser, "sparsify", PickParams)
        parser.add_argument("-o", "--output", required=True)
        parser.set_defaults(run=run)

    def run(args):
        source = common.open_source(args)
        setup = common.load_geometry_and_corrections(args, source)
        pick = setup.param(PickParams)
        ...

Parameter precedence: a command-line option wins over the command's table of the ``--config`` TOML file
(``[sparsify]``, ``[peaks]``, ... keys named like the options with ``_`` or ``-``, e.g. ``cutoff_clip = 3`` or
``poni = "run.poni"``; relative paths are relative to the config file), which wins over the defaults.

Geometry: ``--poni`` when given; otherwise it is derived from the first input's metadata (NXmx or miniCBF
header: distance, pixel size, beam centre, wavelength) and one log line says so.  The mask used is always the
union of ``--mask``, the input file's own pixel mask (NeXus ``pixel_mask``; Pilatus -1/-2 and Eiger 0xFFFFFFFF
markers of the first frame) and the detector's gaps.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from ..engine.params import ClipParams, CorrectionParams, IntegrationParams
from ..errors import ParameterError
from ..params import add_options, from_sources, load_config
from ..pipeline.setup import RunSetup, build_setup

DEVICES = ("cpu", "cuda", "auto")
# Options of this module that a config table may also give (the parameter dataclasses' fields come on top).
FILE_KEYS = ("inputs", "h5path", "frames", "poni", "mask", "mask_cell", "dark", "flat", "dark_variance",
             "absorption", "gain_map", "device")
_DEFAULTS = {"h5path": "/entry/data/data", "device": "cpu"}
_PATH_KEYS = ("poni", "mask", "dark", "flat", "dark_variance", "absorption", "gain_map")


def _frame_range(text: str):
    from ..io.frames import FrameRange

    try:
        return FrameRange.parse(text)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_input_options(parser: argparse.ArgumentParser, nargs: str = "*") -> None:
    """INPUT files (``nargs="*"`` so that a config file may list them instead), --h5path, --frames."""
    group = parser.add_argument_group("input frames")
    group.add_argument("inputs", nargs=nargs, metavar="INPUT",
                       help="frame files, read one after the other in the order given: HDF5/NeXus (dataset "
                            "--h5path; 2-D = one frame, 3-D = frames), Eiger *_master.h5 files (all their "
                            "data_NNNNNN files), or anything fabio reads (CBF incl. .cbf.bz2, EDF, TIFF); glob "
                            "patterns such as 'run_*.cbf' are expanded in natural order (quote them)")
    group.add_argument("--h5path", default=None, metavar="PATH",
                       help="dataset holding the frames in HDF5 inputs (default: /entry/data/data)")
    group.add_argument("--frames", type=_frame_range, default=None, metavar="START:STOP[:STEP]",
                       help="frames to process, 0-based over all inputs taken together, python slice semantics "
                            "(STOP excluded, negative counts from the end; '5' = frame 5 only); default: all")


def add_geometry_options(parser: argparse.ArgumentParser) -> None:
    """--poni and the per-pixel correction files."""
    group = parser.add_argument_group("geometry and correction files")
    group.add_argument("--poni", default=None, metavar="FILE",
                       help="pyFAI PONI file (v1 or v2) of the experiment; default: derived from the first "
                            "input's metadata (NXmx: distance, pixel size, beam centre, wavelength; miniCBF "
                            "header: Detector_distance, Pixel_size, Beam_xy, Wavelength) when it has them")
    group.add_argument("--mask", default=None, metavar="FILE",
                       help="bad-pixel mask, 1/nonzero = bad (pyFAI's convention): a braggsieve mask file "
                            "(/mask/bitmask, any set bit), a NeXus file with pixel_mask, an image (EDF, TIFF, "
                            "...) or .npy; name an HDF5 dataset as FILE::/path. CrystFEL/OM masks are 1 = good: "
                            "invert them first. The input's own pixel mask and the detector gaps are always "
                            "added")
    group.add_argument("--mask-cell", type=int, default=None, metavar="K",
                       help="for a per-memory-cell mask (cells, ny, nx): use cell K only (default: a pixel "
                            "bad in any cell is bad)")
    group.add_argument("--dark", default=None, metavar="FILE",
                       help="dark (pedestal) image in raw ADU, subtracted from every frame; a stack of "
                            "frames is averaged (image file, .npy or HDF5, FILE::/path for a dataset)")
    group.add_argument("--flat", default=None, metavar="FILE",
                       help="flat-field image: relative pixel response, 1 = nominal; frames are divided by it")
    group.add_argument("--dark-variance", default=None, metavar="FILE",
                       help="per-pixel variance of the dark in ADU^2 (integrating detectors: pedestal noise "
                            "squared), added to the Poisson variance")
    group.add_argument("--absorption", default=None, metavar="FILE",
                       help="per-pixel relative sensor absorption efficiency (1 = nominal); frames are "
                            "divided by it")
    group.add_argument("--gain-map", default=None, metavar="FILE",
                       help="per-pixel gain in ADU per photon (overrides --gain)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--config and --device."""
    group = parser.add_argument_group("run")
    group.add_argument("--config", default=None, metavar="FILE.toml",
                       help="TOML file with a table named after the command (e.g. [sparsify]) whose keys are "
                            "this command's long options with '_' or '-' (bins = 500, cutoff_clip = 3, "
                            "poni = 'run.poni'); command-line options win over it; relative paths are "
                            "relative to the config file")
    group.add_argument("--device", default=None, choices=DEVICES,
                       help="where to compute: cpu (numba), cuda (GPU through CuPy) or auto (cuda when "
                            "available) (default: cpu)")


def add_processing_options(parser: argparse.ArgumentParser, command: str, *extra_params: type,
                           clip: bool = True, nargs: str = "*") -> None:
    """All shared options of a frame-processing command: inputs, geometry and correction files, config and
    device, and the parameter dataclasses IntegrationParams, CorrectionParams, ClipParams (unless
    ``clip=False``) followed by ``extra_params`` (e.g. PickParams, PeakParams)."""
    add_input_options(parser, nargs)
    add_geometry_options(parser)
    add_run_options(parser)
    classes = (IntegrationParams, CorrectionParams) + ((ClipParams,) if clip else ()) + tuple(extra_params)
    for cls in classes:
        add_options(parser, cls)
    parser.set_defaults(_command=command, _param_classes=classes)


# -- config file ---------------------------------------------------------------------------------------------------
def config_table(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` table of this command (keys normalised to ``_``), checked: unknown keys are an error."""
    path = getattr(args, "config", None)
    if path is None:
        return {}
    command = getattr(args, "_command", None)
    table = load_config(path).get(command, {})
    if not isinstance(table, dict):
        raise ParameterError(f"[{command}] must be a TOML table", path)
    table = {key.replace("-", "_"): value for key, value in table.items()}
    known = set(FILE_KEYS).union(*({f.name for f in dataclasses.fields(c)} for c in args._param_classes))
    unknown = sorted(set(table) - known)
    if unknown:
        raise ParameterError(f"unknown key(s) in [{command}]: {', '.join(unknown)}", path)
    base = os.path.dirname(os.path.abspath(path))
    for key in _PATH_KEYS:
        if isinstance(table.get(key), str):
            table[key] = os.path.join(base, table[key])
    if isinstance(table.get("inputs"), list):
        table["inputs"] = [os.path.join(base, p) for p in table["inputs"]]
    return table


def _option(args: argparse.Namespace, table: dict[str, Any], key: str):
    """A file option's value: the command line, else the config table, else the default."""
    value = getattr(args, key, None)
    if value is None or value == []:
        value = table.get(key, _DEFAULTS.get(key))
    return value


def load_parameters(args: argparse.Namespace) -> dict[type, Any]:
    """The command's parameter dataclasses, {class: instance}, from the command line over the config table."""
    table = config_table(args)
    result = {}
    for cls in args._param_classes:
        names = {f.name for f in dataclasses.fields(cls)}
        result[cls] = from_sources(cls, args, {k: v for k, v in table.items() if k in names})
    return result


def open_source(args: argparse.Namespace):
    """The FrameSource of INPUT..., --h5path and --frames (config values where the command line has none)."""
    from ..io.frames import FrameRange, open_frames

    table = config_table(args)
    inputs = _option(args, table, "inputs")
    if not inputs:
        raise ParameterError("no input file given (INPUT... or 'inputs' in the config table)")
    frames = _option(args, table, "frames")
    if isinstance(frames, str):
        frames = FrameRange.parse(frames)
    return open_frames(inputs, h5path=_option(args, table, "h5path"), frames=frames)


# -- geometry and corrections --------------------------------------------------------------------------------------
def load_geometry_and_corrections(args: argparse.Namespace, source) -> RunSetup:
    """Build the geometry, the radial binning and the static corrections of a run over ``source`` from the
    command line over the config table (see :func:`braggsieve.pipeline.setup.build_setup`).

    Raises InputError for unreadable files or shapes that differ from the frames', ParameterError for
    inconsistent parameters (e.g. a q unit without a wavelength)."""
    table = config_table(args)
    files = {key: _option(args, table, key) for key in (*_PATH_KEYS, "mask_cell", "device")}
    return build_setup(source, load_parameters(args), **files)
