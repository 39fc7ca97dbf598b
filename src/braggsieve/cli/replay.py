"""``braggsieve replay``: send a file's frames over ZeroMQ like a detector (to test 'braggsieve stream')."""
from __future__ import annotations

import argparse

from . import common

DESCRIPTION = """\
Send the frames of INPUT... (any input 'braggsieve process' reads) as one series over ZeroMQ: a start
message, one message per frame (numbered 0, 1, ...), an end message. --format stream2 (default) sends
DECTRIS Stream V2 CBOR messages (frames bitshuffle-LZ4 compressed unless --compression says otherwise);
--format braggsieve sends the simple multipart format (JSON header + raw frame). Like a detector, the PUSH
socket binds --to (receivers connect: 'braggsieve stream --connect'); --connect-to connects instead to a
receiver started with --bind. Sending waits for a receiver, at most --timeout seconds per message."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("replay", help="send a file's frames over ZeroMQ (Stream V2 or simple format)",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_input_options(parser, nargs="+")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", metavar="ADDRESS", help="bind a PUSH socket here, e.g. tcp://*:31001")
    where.add_argument("--connect-to", metavar="ADDRESS", help="connect the PUSH socket to a bound receiver")
    parser.add_argument("--format", choices=("stream2", "braggsieve"), default="stream2",
                        help="message format (default: stream2)")
    parser.add_argument("--compression", choices=("bslz4", "lz4", "none"), default="bslz4",
                        help="frame compression in stream2 messages (default: bslz4)")
    parser.add_argument("--series", default=None, help="series name (default: the first input's file name); "
                                                       "a receiver skips frames of a series it already processed")
    parser.add_argument("--rate", type=float, default=0.0, metavar="HZ",
                        help="frames per second at most (default: 0 = as fast as the receiver takes them)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="give up when no receiver takes a message for this long (default: 60)")
    parser.set_defaults(run=run, _command="replay", _param_classes=())


def run(args: argparse.Namespace) -> int:
    from ..pipeline.replay import replay

    source = common.open_source(args)
    sent = replay(source, args.to or args.connect_to, fmt=args.format, compression=args.compression,
                  series=args.series, bind=args.to is not None, rate=args.rate, timeout=args.timeout)
    print(f"sent {sent} frame(s) to {args.to or args.connect_to}")
    return 0
