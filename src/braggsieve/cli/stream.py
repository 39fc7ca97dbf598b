"""``braggsieve stream``: live processing of frames received over ZeroMQ (DECTRIS Stream V2 or simple format)."""
from __future__ import annotations

import argparse
import sys

from ..engine.params import ClipParams, CorrectionParams, IntegrationParams
from ..engine.peaks import PeakParams
from ..engine.pick import PickParams
from ..params import add_options
from ..pipeline.stream import StreamParams
from ..pipeline.veto import VetoParams
from . import common

DESCRIPTION = """\
Receive frames over ZeroMQ and process them as they arrive -- one sigma-clip per frame, peaks, veto and
sparse frames, as 'braggsieve process' -- writing OUTDIR/parts/part_NNNNN.{h5,cxi,json} every --chunk-frames
frames (and at each end of series) and publishing one JSON message per frame on --publish:
  {"series": S, "frame": K, "npeaks": N, "hit": true/false, "kept": PIXELS, "latency_ms": MS}

Formats, recognised per message:
  DECTRIS Stream V2 (SIMPLON 'stream2', CBOR): the detector binds a PUSH socket (port 31001) -- use
    --connect tcp://DCU:31001. Start/image/end messages; images as CBOR typed arrays, uncompressed or
    bitshuffle-LZ4 / LZ4 (DECTRIS tag 56500); the first channel (threshold) is processed.
  simple multipart: a JSON header part (htype braggsieve-start-1 / braggsieve-frame-1 / braggsieve-end-1,
    series, frame, shape [ny, nx], dtype such as '<u2') and, for frames, the raw C-order frame (docs/process.md).
'braggsieve replay FILE --to tcp://...' sends a file's frames in either format.

Nothing is dropped: the queue (--queue-frames) and ZeroMQ's buffers are bounded, so a slow receiver slows
the sender. Malformed messages, frames of another shape and frames already processed are logged, counted
as rejected and skipped. A restarted receiver with the same OUTDIR skips the frames its parts already hold.
Stops on Ctrl-C (finishing the current part), after --max-series end-of-series messages or --idle-timeout
seconds without a message; then OUTDIR/stream_report.json holds the counts (frames received = processed +
rejected), frames/s and latency percentiles. --poni is required (a stream carries no full geometry)."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("stream", help="live processing of frames received over ZeroMQ",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_argument_group("stream").add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="ADDRESS", help="connect a PULL socket to this endpoint (a detector's "
                                                            "DCU: tcp://HOST:31001)")
    where.add_argument("--bind", metavar="ADDRESS", help="bind a PULL socket on this endpoint (senders connect)")
    parser.add_argument("--publish", metavar="ADDRESS", default=None,
                        help="bind a PUB socket here for per-frame results (e.g. tcp://*:5556)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    common.add_geometry_options(parser)
    common.add_run_options(parser)
    classes = (IntegrationParams, CorrectionParams, ClipParams, PeakParams, VetoParams, StreamParams)
    for cls in classes:
        add_options(parser, cls)
    add_options(parser, PickParams, skip=("noise",))  # one --noise (PeakParams') for peaks and picking
    parser.set_defaults(run=run, _command="stream", _param_classes=classes + (PickParams,))


def run(args: argparse.Namespace) -> int:
    import signal

    from ..pipeline.setup import build_setup
    from ..pipeline.stream import StreamProcessor, stream_source

    table = common.config_table(args)
    params = common.load_parameters(args)
    files = {key: common._option(args, table, key) for key in (*common._PATH_KEYS, "mask_cell", "device")}
    if files["poni"] is None:
        from ..errors import ParameterError

        raise ParameterError("braggsieve stream needs --poni (the stream does not carry the geometry)")

    def make_setup(shape, dtype, start):
        return build_setup(stream_source(shape, start), params, **files)

    processor = StreamProcessor(args.connect or args.bind, args.output, make_setup, params[StreamParams],
                                params[VetoParams], bind=args.bind is not None, publish=args.publish, argv=sys.argv)
    previous = signal.signal(signal.SIGINT, lambda *_: processor.stop())
    try:
        report = processor.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = report.as_dict()
    print(f"{summary['frames_received']} frame(s) received: {summary['frames_processed']} processed, "
          f"{summary['frames_rejected']} rejected {summary['rejected'] or ''}; {summary['hits']} hit(s); "
          f"{summary['frames_per_second']:.1f} frames/s, latency ms {summary['latency_ms']}; "
          f"wrote {args.output}/stream_report.json")
    return 0 if report.balanced else 1
