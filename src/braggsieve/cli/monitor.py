"""``braggsieve monitor``: a live web page of a running ``braggsieve stream`` (hit rate, peaks per frame, the
last hit, and a veto-threshold slider)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Subscribe to the per-frame results that 'braggsieve stream --publish ADDRESS' publishes on a ZeroMQ PUB
socket and show them on a local web page that updates twice a second:
  - frames received, hits, hit rate over the run and over the last 1000 frames, frame rate;
  - peaks per frame of the last --history frames (hits in red) with the veto threshold;
  - the last hit: its frame id, source file and the positions of its peaks on the detector;
  - a veto-threshold slider: the fraction of all frames received that have at least that many peaks
    (the frames a veto at that threshold would keep), computed at once in the browser, with the curve of
    that fraction against the threshold and the peak-count histogram.
Or, with --watch OUTDIR, follow a running 'braggsieve process' (part by part).
Open the printed URL in a browser (from another machine: ssh -L 8050:localhost:8050 HOST, then
http://localhost:8050/).  GET /state returns the same numbers as JSON.  Messages that are not valid
frame results are counted as skipped, never fatal.  Ctrl-C stops the monitor; the run is not affected."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("monitor", help="live web page of a running stream: hit rate, peaks per "
                                   "frame, last hit, veto-threshold slider", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connect", metavar="ADDRESS", help="ZeroMQ address of the publisher to subscribe to, "
                        "e.g. tcp://localhost:5557 (the address given to 'braggsieve stream --publish')")
    parser.add_argument("--bind", metavar="ADDRESS", help="bind the subscriber here instead (e.g. tcp://*:5557), "
                        "when publishers connect to the monitor")
    parser.add_argument("--watch", metavar="OUTDIR",
                        help="instead of a stream: watch the output folder of a running 'braggsieve process'; "
                             "each part's frames appear when the part is complete (hits counted at --min-peaks)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface the web page is served on (default: 127.0.0.1, this machine only; "
                             "0.0.0.0 serves every interface -- the page has no authentication)")
    parser.add_argument("--port", type=int, default=8050, help="HTTP port of the page (default: 8050; 0 = any "
                        "free port, printed)")
    parser.add_argument("--min-peaks", type=int, default=10, metavar="N",
                        help="starting value of the veto slider, and the hit definition for messages that "
                             "carry no 'hit' flag (default: 10)")
    parser.add_argument("--history", type=int, default=2000, metavar="N",
                        help="frames shown in the peaks-per-frame chart (default: 2000); the counts and the "
                             "histogram cover every frame received")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError
    from ..pipeline.monitor import run_monitor

    if sum(x is not None for x in (args.connect, args.bind, args.watch)) != 1:
        raise ParameterError("give exactly one of --connect ADDRESS, --bind ADDRESS or --watch OUTDIR")
    if args.min_peaks < 0 or args.history < 1:
        raise ParameterError("--min-peaks must be >= 0 and --history >= 1")
    if not 0 <= args.port <= 65535:
        raise ParameterError(f"--port {args.port}: not a port number")

    def ready(url: str) -> None:
        source = f"watching {args.watch}" if args.watch else f"subscribed to {args.connect or args.bind}"
        print(f"braggsieve monitor: {url} ({source}; Ctrl-C stops)", flush=True)

    run_monitor(args.connect or args.bind, bind=args.bind is not None, watch=args.watch, host=args.host,
                port=args.port, min_peaks=args.min_peaks, history=args.history, ready=ready)
    return 0
