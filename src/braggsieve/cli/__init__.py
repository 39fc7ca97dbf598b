"""The ``braggsieve`` command: one entry point, one module per subcommand.

Each subcommand module in this package defines ``register(subparsers)``, which adds its parser and sets
``run=<function(args) -> int>`` as the parser default.  Command modules parse and report; they import
the heavy layers (engine, io, ...) inside ``run`` so that ``braggsieve --help`` stays fast, and they never
compute anything themselves.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import BraggsieveError

# Subcommands, in the order `braggsieve --help` lists them.
COMMANDS: list[str] = [
    "demo",
    "integrate",
    "simulate",
    "peaks",
    "sparsify",
    "densify",
    "compare",
    "mask",
    "poni",
    "process",
    "stream",
    "replay",
    "report",
    "monitor",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="braggsieve",
        description="Separate Bragg peaks from the smooth background of X-ray diffraction frames "
                    "(azimuthal sigma-clipping), and build on it: sparse compression, peak lists for "
                    "CrystFEL, hit veto and bad-pixel masks.",
        epilog="Conventions: arrays are (frame, row, col); pixel centres at integer indices; masks 1 = bad "
               "(pyFAI's convention; CrystFEL and OM use 1 = good and are converted at the boundary). "
               "'braggsieve COMMAND --help' describes each command.",
    )
    parser.add_argument("--version", action="version", version=f"braggsieve {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
                        format="braggsieve: %(message)s")
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except BraggsieveError as exc:
        print(f"braggsieve: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("braggsieve: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
