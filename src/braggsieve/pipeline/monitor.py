"""The live monitor: per-frame results from a ZeroMQ PUB socket -> a small local web page.

``braggsieve stream --publish tcp://...`` (or any publisher of the same messages) sends one message per frame;
the monitor subscribes (SUB socket, connect or bind), keeps a bounded summary of the run
(:class:`MonitorState`: frame and hit counts, the histogram of peaks per frame, the last ``history`` frames,
the last hit with its peaks) and serves it over HTTP with tornado (already a dependency of dask.distributed):

* ``GET /``       the page (pipeline.monitor_page): hit rate, frame rate, peaks per frame along the run, the
                  peak-count histogram, the last hit with its peaks, and a veto-threshold slider whose fraction
                  of frames kept is computed in the browser from the histogram, so it follows the slider at once;
* ``GET /state``  the summary as JSON (the page polls it twice a second; scripts may too).

It can also watch the output folder of a running ``braggsieve process`` instead (:func:`watch_parts`): each
part's frames appear when the part is complete.

Messages (multipart; each part that decodes as a JSON object or a CBOR map is read, others -- e.g. a topic
-- are ignored):

* a frame: ``{"frame": <id>, "npeaks": <int>, "hit": <bool, optional: else npeaks >= --min-peaks>,
  "series": <str, optional>, "latency_ms": <float, optional>,
  "file": <str, optional>, "index": <int, optional>, "shape": [ny, nx] (optional),
  "peaks_row": [...], "peaks_col": [...] (optional, pixels, centres at integers) or
  "peaks": [[row, col], ...]}``; ``frame_id`` and ``id`` are accepted for ``frame``;
* ``{"type": "start", ...}`` starts a new series (counters reset); ``{"type": "end", ...}`` marks its end
  (also as ``{"htype": "braggsieve-start-1" / "braggsieve-end-1", "series": S}``, the simple format's headers).

A message without ``npeaks`` and without a known ``type`` is malformed: counted and skipped, never fatal.
Memory is bounded whatever the run length: the histogram grows with the largest peak count only.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MAX_PEAKS_SHOWN = 2000  # peaks of the last hit kept for the page


def decode_message(parts: list[bytes]) -> dict | None:
    """The first part of a multipart message that decodes as a JSON object or a CBOR map, else None."""
    for part in parts:
        data = bytes(part)
        if data[:1] == b"{":
            try:
                value = json.loads(data)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        elif data and (data[0] >> 5) == 5:  # CBOR major type 5: map
            import cbor2
            try:
                value = cbor2.loads(data)
            except (ValueError, cbor2.CBORDecodeError):
                continue
            if isinstance(value, dict):
                return value
    return None


def _peak_positions(message: dict) -> tuple[list[float], list[float]]:
    if "peaks_row" in message and "peaks_col" in message:
        rows, cols = list(message["peaks_row"]), list(message["peaks_col"])
    elif "peaks" in message:
        pairs = [p for p in message["peaks"] if isinstance(p, (list, tuple)) and len(p) >= 2]
        rows, cols = [p[0] for p in pairs], [p[1] for p in pairs]
    else:
        return [], []
    n = min(len(rows), len(cols), MAX_PEAKS_SHOWN)
    return [round(float(r), 2) for r in rows[:n]], [round(float(c), 2) for c in cols[:n]]


def _htype_kind(htype) -> str | None:
    """``start``/``end`` for braggsieve's simple-format headers (``braggsieve-start-1``, ``braggsieve-end-1``)."""
    if isinstance(htype, str):
        for kind in ("start", "end"):
            if f"-{kind}-" in htype:
                return kind
    return None


@dataclass
class MonitorState:
    """Bounded summary of the frames received so far.

    ``histogram[k]``: frames with exactly k peaks (int64, grows to the largest count seen); ``recent``: the
    last ``history`` (frame id, npeaks, hit) triples; ``times``: arrival times (s, monotonic) of the last
    ``history`` frames, for the frame rate; ``latencies``: the publisher's ``latency_ms`` of the last
    ``history`` frames (receipt to publication, when it sends one).  A frame whose ``series`` differs from the
    current one starts a new series, as a start message does."""

    min_peaks: int = 10
    history: int = 2000
    frames: int = 0
    hits: int = 0
    malformed: int = 0
    series: str = ""
    ended: bool = False
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    recent: collections.deque = None
    times: collections.deque = None
    latencies: collections.deque = None
    last_hit: dict | None = None
    last_frame: dict | None = None
    version: int = 0

    def __post_init__(self):
        self.recent = collections.deque(maxlen=self.history)
        self.times = collections.deque(maxlen=self.history)
        self.latencies = collections.deque(maxlen=self.history)

    def reset(self, series: str = "") -> None:
        """Start a new series: every counter back to zero."""
        self.__init__(min_peaks=self.min_peaks, history=self.history)
        self.series = series

    def add(self, message: dict, now: float | None = None) -> bool:
        """Take one decoded message; returns False (and counts it) when it is malformed."""
        kind = message.get("type") or _htype_kind(message.get("htype"))
        if kind == "start":
            self.reset(str(message.get("series", message.get("series_id", ""))))
            return True
        if kind == "end":
            self.ended = True
            self.version += 1
            return True
        series = message.get("series")
        if series is not None and str(series) != self.series:
            if self.series or self.frames:  # another series without a start message: a new run
                self.reset(str(series))
            self.series = str(series)
        try:
            npeaks = int(message["npeaks"])
            if npeaks < 0:
                raise ValueError(npeaks)
            frame = message.get("frame", message.get("frame_id", message.get("id", self.frames)))
            hit = bool(message["hit"]) if "hit" in message else npeaks >= self.min_peaks
            rows, cols = _peak_positions(message)
        except (KeyError, TypeError, ValueError):
            self.malformed += 1
            self.version += 1
            return False
        if npeaks >= len(self.histogram):
            self.histogram = np.concatenate([self.histogram, np.zeros(npeaks + 1 - len(self.histogram), np.int64)])
        self.histogram[npeaks] += 1
        self.frames += 1
        self.hits += hit
        self.recent.append((frame if isinstance(frame, (int, str)) else str(frame), npeaks, hit))
        self.times.append(time.monotonic() if now is None else now)
        if isinstance(message.get("latency_ms"), (int, float)):
            self.latencies.append(float(message["latency_ms"]))
        self.last_frame = {"frame": frame, "npeaks": npeaks, "hit": hit}
        if hit:
            self.last_hit = {"frame": frame, "npeaks": npeaks, "file": message.get("file"),
                             "index": message.get("index"), "shape": message.get("shape"),
                             "peaks_row": rows, "peaks_col": cols}
        self.version += 1
        return True

    def frame_rate(self, now: float | None = None) -> float:
        """Frames per second over the last ``history`` frames (0 with fewer than 2); drops to 0 after 5 s
        without frames."""
        now = time.monotonic() if now is None else now
        if len(self.times) < 2 or now - self.times[-1] > 5:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict:
        """JSON-ready summary for the page."""
        recent = list(self.recent)
        window = recent[-1000:]
        return {
            "version": self.version, "series": self.series, "ended": self.ended,
            "frames": self.frames, "hits": self.hits, "malformed": self.malformed,
            "min_peaks": self.min_peaks,
            "hit_rate": self.hits / self.frames if self.frames else 0.0,
            "recent_hit_rate": sum(h for _, _, h in window) / len(window) if window else 0.0,
            "frame_rate": round(self.frame_rate(), 2),
            "latency_ms": round(float(np.median(self.latencies)), 2) if self.latencies else None,
            "histogram": self.histogram.tolist(),
            "recent_npeaks": [n for _, n, _ in recent],
            "recent_hit": [int(h) for _, _, h in recent],
            "first_recent": recent[0][0] if recent else None,
            "last_frame": self.last_frame, "last_hit": self.last_hit,
        }


async def receive(socket, state: MonitorState) -> None:
    """Read messages from the SUB ``socket`` (zmq.asyncio) into ``state`` until cancelled."""
    while True:
        parts = await socket.recv_multipart()
        message = decode_message(parts)
        if message is None:
            state.malformed += 1
            state.version += 1
            log.warning("skipped a message that is neither JSON nor CBOR (%d so far)", state.malformed)
            continue
        if not state.add(message):
            log.warning("skipped a malformed message (%d so far): %.120s", state.malformed, message)


def make_app(state: MonitorState):
    """The tornado application serving the page and ``/state``."""
    import tornado.web

    from .monitor_page import PAGE

    class PageHandler(tornado.web.RequestHandler):
        def get(self):
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Cache-Control", "no-store")
            self.write(PAGE)

    class StateHandler(tornado.web.RequestHandler):
        def get(self):
            self.set_header("Content-Type", "application/json")
            self.set_header("Cache-Control", "no-store")
            self.write(json.dumps(state.snapshot(), default=_json_default, allow_nan=False))

    return tornado.web.Application([(r"/", PageHandler), (r"/state", StateHandler)])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def ingest_parts(outdir: str | os.PathLike, state: MonitorState, seen: set[str]) -> int:
    """Feed ``state`` with the frames of the parts of a ``braggsieve process`` run in ``outdir`` completed
    since the last call (``seen``: names of the part records already read, updated); returns the number of
    frames added.  A frame is a hit when it has >= ``state.min_peaks`` peaks (process applies its veto only
    at the end); the last hit's peaks are read from its part's CXI file."""
    import h5py

    from ..io.cxi import RESULT
    from .parts import read_record

    added = 0
    for record_path in sorted(Path(outdir, "parts").glob("part_*.json")):
        if record_path.name in seen:
            continue
        try:
            record = read_record(record_path)
        except (OSError, ValueError):
            continue  # being renamed into place: read it next time
        seen.add(record_path.name)
        frames, sources = record["frames"], record.get("sources", [])
        last_hit = None
        for row, (position, source, index, npeaks) in enumerate(zip(frames["position"], frames["source"],
                                                                    frames["index"], frames["npeaks"])):
            state.add({"frame": position, "npeaks": npeaks, "index": index,
                       "file": Path(sources[source]).name if source < len(sources) else None})
            last_hit = row if npeaks >= state.min_peaks else last_hit
            added += 1
        if last_hit is not None:
            try:
                with h5py.File(record_path.with_suffix(".cxi"), "r") as handle:
                    n = int(handle[f"{RESULT}/nPeaks"][last_hit])
                    state.last_hit.update(peaks_row=handle[f"{RESULT}/peakYPosRaw"][last_hit, :n].tolist(),
                                          peaks_col=handle[f"{RESULT}/peakXPosRaw"][last_hit, :n].tolist())
                    if "entry_1/data_1/data" in handle:
                        state.last_hit["shape"] = list(handle["entry_1/data_1/data"].shape[-2:])
            except (OSError, KeyError):
                pass  # the counts are there; only the drawing of the last hit is missing
    return added


async def watch_parts(outdir: str | os.PathLike, state: MonitorState, interval: float = 1.0) -> None:
    """Poll ``outdir`` for completed parts (:func:`ingest_parts`) every ``interval`` s until cancelled."""
    seen: set[str] = set()
    state.series = Path(outdir).name
    while True:
        ingest_parts(outdir, state, seen)
        await asyncio.sleep(interval)


async def serve(address: str | None = None, *, bind: bool = False, watch: str | os.PathLike | None = None,
                host: str = "127.0.0.1", port: int = 8050, min_peaks: int = 10, history: int = 2000,
                ready=None) -> None:
    """Subscribe to ``address`` (connect, or bind with ``bind``) -- or watch the output folder ``watch`` of a
    running ``braggsieve process`` -- and serve the page on ``host:port`` until cancelled.  ``ready(url)``
    is called once the page is served (port 0 picks a free port)."""
    import tornado.httpserver
    import tornado.netutil
    import zmq
    import zmq.asyncio

    from ..errors import ParameterError

    state = MonitorState(min_peaks=min_peaks, history=history)
    context = zmq.asyncio.Context()
    socket = None
    try:
        if watch is None:
            socket = context.socket(zmq.SUB)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            socket.setsockopt(zmq.RCVHWM, 10000)
            socket.setsockopt(zmq.LINGER, 0)
            try:
                (socket.bind if bind else socket.connect)(address)
            except zmq.ZMQError as exc:
                raise ParameterError(f"cannot {'bind' if bind else 'connect'} to {address}: {exc}") from None
        elif not Path(watch).is_dir():
            raise ParameterError(f"--watch {watch}: no such folder")
        server = tornado.httpserver.HTTPServer(make_app(state))
        try:
            sockets = tornado.netutil.bind_sockets(port, host)
        except OSError as exc:
            raise ParameterError(f"cannot serve on {host}:{port}: {exc.strerror}") from None
        server.add_sockets(sockets)
        if ready is not None:
            ready(f"http://{host}:{sockets[0].getsockname()[1]}/")
        try:
            await (receive(socket, state) if socket is not None else watch_parts(watch, state))
        finally:
            server.stop()
    finally:
        if socket is not None:
            socket.close()
        context.term()


def run_monitor(address: str | None = None, **options) -> None:
    """Blocking :func:`serve` (Ctrl-C stops it)."""
    asyncio.run(serve(address, **options))
