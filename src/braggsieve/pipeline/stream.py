"""Live processing of frames arriving over ZeroMQ (DECTRIS Stream V2 or the simple format: pipeline.messages).

Threads and queues::

    ZeroMQ PULL socket --(receiver thread: decode)--> bounded queue --(main thread)--> engine --> parts
                                                                                        \\--> PUB socket

* Backpressure: the queue holds at most ``queue_frames`` frames and the socket's receive high-water mark is
  as small; when processing falls behind, the receiver blocks, ZeroMQ stops reading, and the sender's PUSH
  socket blocks (a detector's DCU buffers).  Nothing is dropped.
* A malformed message (not CBOR/JSON, unknown type, bad array, wrong size) is logged, counted as a rejected
  frame and skipped; so is a frame whose shape differs from the series' or one already processed.
* Outputs: every ``chunk_frames`` frames (and at each end of series) a part is written in ``OUTDIR/parts``
  exactly as for ``braggsieve process`` (sparse frames, CXI peaks without images, JSON record), atomically.
  The frames of a series are identified as ``stream:<series>`` and their frame numbers.
* Restart: on start-up the records of the parts already written give the frames already processed; those
  frames are rejected if they come again, so a restarted receiver never processes a frame twice.  Frames
  received but not yet written when the receiver is killed are lost with their unfinished part (a clean
  stop -- Ctrl-C, end of series count, idle time-out -- finishes the part first).
* Results: for each processed frame one JSON message on the PUB socket (when ``publish`` is given):
  ``{"series", "frame", "npeaks", "hit", "kept", "latency_ms"}`` (latency from receipt to publication).
* At the end ``frames received = processed + rejected`` is checked and reported (``StreamReport``), with two
  rates: over the whole session (``frames_per_second``, which includes the wait for the first frame) and over
  ``streaming_seconds``, from the receipt of the first processed frame to the publication of the last one
  (``streaming_frames_per_second``: the rate while frames flow, one-time set-up of a new frame shape included).
"""
from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ParameterError
from ..io.frames import FrameIds
from ..params import option
from .messages import End, Frame, MalformedMessage, Start, decode
from .parts import PartPaths, read_record, write_part
from .veto import VetoParams, is_hit

log = logging.getLogger(__name__)
_STOP = object()


@dataclass(frozen=True)
class StreamParams:
    """Live stream reception."""

    chunk_frames: int = option(200, "frames per output part (a part is also closed at each end of series)",
                               metavar="N")
    batch_size: int = option(4, "frames processed together (latency grows with it)", metavar="N")
    queue_frames: int = option(32, "frames held between reception and processing; beyond it the sender is "
                               "slowed down (backpressure)", metavar="N")
    max_series: int = option(0, "stop after this many end-of-series messages (0 = run until Ctrl-C)",
                             metavar="N")
    idle_timeout: float = option(0.0, "stop after this many seconds without any message (0 = never)",
                                 metavar="SECONDS")

    def __post_init__(self):
        if min(self.chunk_frames, self.batch_size, self.queue_frames) < 1 or self.max_series < 0 \
                or self.idle_timeout < 0:
            raise ParameterError("--chunk-frames, --batch-size, --queue-frames must be >= 1, --max-series and "
                                 "--idle-timeout >= 0")


@dataclass
class StreamReport:
    """Counts of a receiver's session (JSON-ready through ``as_dict``)."""

    messages: int = 0
    frames_received: int = 0
    frames_processed: int = 0
    frames_rejected: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    series_started: int = 0
    series_ended: int = 0
    hits: int = 0
    parts_written: int = 0
    latency_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    streaming_seconds: float = 0.0  # receipt of the first processed frame -> publication of the last one

    def reject(self, reason: str, frames: int = 1) -> None:
        self.frames_received += frames
        self.frames_rejected += frames
        self.rejected[reason] = self.rejected.get(reason, 0) + frames

    @property
    def balanced(self) -> bool:
        return self.frames_received == self.frames_processed + self.frames_rejected

    def as_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_ms)
        percentiles = {f"p{p}": round(float(np.percentile(lat, p)), 3) for p in (50, 90, 99)} if len(lat) else {}
        return {"messages": self.messages, "frames_received": self.frames_received,
                "frames_processed": self.frames_processed, "frames_rejected": self.frames_rejected,
                "rejected": dict(self.rejected), "balanced": self.balanced, "series_started": self.series_started,
                "series_ended": self.series_ended, "hits": self.hits, "parts_written": self.parts_written,
                "seconds": round(self.seconds, 3),
                "frames_per_second": round(self.frames_processed / self.seconds, 3) if self.seconds else 0.0,
                "streaming_seconds": round(self.streaming_seconds, 3),
                "streaming_frames_per_second": round(self.frames_processed / self.streaming_seconds, 3)
                if self.streaming_seconds else 0.0,
                "latency_ms": percentiles}


def setup_key(shape: tuple[int, int], dtype, start: Start | None) -> tuple:
    """What a run set-up depends on for frames of ``shape``/``dtype`` in the series that ``start`` opened: the
    shape, the dtype, and the start message's saturation and pixel mask (by digest), so that a series whose
    detector mask changed gets its own set-up instead of the previous series'."""
    mask = None if start is None else start.pixel_mask
    digest = None if mask is None else hashlib.sha1(np.ascontiguousarray(mask).view(np.uint8)).hexdigest()
    return (tuple(shape), np.dtype(dtype).str, None if start is None else start.saturation, digest)


def stream_source(shape: tuple[int, int], start: Start | None):
    """What pipeline.setup.build_setup needs to know of a stream: the frame shape, a name, and the metadata of
    the series' start message (saturation, pixel mask)."""
    from types import SimpleNamespace

    from ..io.metadata import DetectorMetadata

    mask = start.pixel_mask if start is not None and start.pixel_mask is not None \
        and start.pixel_mask.shape == tuple(shape) else None
    metadata = DetectorMetadata(saturation=start.saturation if start is not None else None, pixel_mask=mask,
                                source="stream")
    return SimpleNamespace(shape=tuple(shape), sources=["stream"], metadata=metadata)


def processed_frames(parts_folder: Path) -> tuple[dict[str, set[int]], int]:
    """({series: frame numbers already written}, next part number) from the part records in ``parts_folder``."""
    done: dict[str, set[int]] = {}
    last = -1
    for path in sorted(parts_folder.glob("part_*.json")):
        record = read_record(path)
        last = max(last, int(record["part"]))
        names = record["sources"]
        for source, index in zip(record["frames"]["source"], record["frames"]["index"]):
            done.setdefault(names[source].removeprefix("stream:"), set()).add(int(index))
    return done, last + 1


class _Receiver(threading.Thread):
    """Reads the PULL socket, decodes, and puts ``(event or MalformedMessage, receipt time)`` on the queue."""

    def __init__(self, address: str, bind: bool, events: queue.Queue, hwm: int):
        super().__init__(name="braggsieve-receiver", daemon=True)
        import zmq

        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        (self.socket.bind if bind else self.socket.connect)(address)
        self.events = events
        self.stopping = threading.Event()
        self.last_seen = time.monotonic()  # when the last message arrived

    def run(self) -> None:
        import zmq

        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                if not poller.poll(100):
                    continue
                parts = self.socket.recv_multipart(copy=True)
                received = time.perf_counter()
                self.last_seen = time.monotonic()
                try:
                    event: Any = decode(parts)
                except MalformedMessage as exc:
                    event = exc
                while not self.stopping.is_set():
                    try:
                        self.events.put((event, received), timeout=0.1)  # blocks when full: backpressure
                        break
                    except queue.Full:
                        continue
        finally:
            self.socket.close()
            self.events.put((_STOP, time.perf_counter()))


class StreamProcessor:
    """Receive, process and write a live stream (see the module docstring).

    Args:
        address: ZeroMQ endpoint, e.g. ``tcp://detector:31001``; ``bind`` binds it instead of connecting.
        outdir: output folder (``parts/`` and ``stream_report.json`` in it).
        make_setup: ``make_setup(shape, dtype, start)`` -> pipeline.setup.RunSetup for frames of that shape
            (``start``: the series' Start message or None); called once per shape.
        params, veto: StreamParams, VetoParams.  publish: PUB endpoint for per-frame results (bound), or None.
        argv: command line for the provenance.
    """

    def __init__(self, address: str, outdir, make_setup: Callable, params: StreamParams = StreamParams(),
                 veto: VetoParams = VetoParams(), *, bind: bool = False, publish: str | None = None, argv=None):
        self.address, self.bind = address, bind
        self.folder = Path(outdir) / "parts"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.report_path = Path(outdir) / "stream_report.json"
        self.make_setup, self.params, self.veto, self.argv = make_setup, params, veto, argv
        self.done, self.next_part = processed_frames(self.folder)
        self.report = StreamReport()
        self.events: queue.Queue = queue.Queue(maxsize=params.queue_frames)
        self.publish_address = publish
        self._setups: dict[tuple, Any] = {}
        self._series: dict[str, Start] = {}
        self._pending: tuple | None = None  # an event read but not yet used (it ends a part)
        self._stop = threading.Event()
        self._last_message = time.monotonic()
        self._ended = False
        self._first_receipt: float | None = None  # perf_counter time of the first processed frame's receipt

    def stop(self) -> None:
        """Ask the processor to finish the current part and return (thread-safe; e.g. from a signal handler)."""
        self._stop.set()

    # -- events ---------------------------------------------------------------------------------------------------
    def _next_event(self):
        """The next event, or None when the processor should stop (stop asked, idle time-out, max series)."""
        if self._pending is not None:
            event, self._pending = self._pending, None
            return event
        while True:
            if self._stop.is_set() or self._ended:
                return None
            try:
                event = self.events.get(timeout=0.1)
            except queue.Empty:  # idle: nothing received (by the receiver thread) for the time-out
                timeout = self.params.idle_timeout
                if timeout and time.monotonic() - max(self._last_message, self._receiver.last_seen) > timeout:
                    log.warning("no message for %.1f s: stopping", timeout)
                    return None
                continue
            if event[0] is _STOP:
                return None
            self._last_message = time.monotonic()
            self.report.messages += 1
            return event

    def _accept(self, event, received: float, series: str | None, shape) -> Frame | None | str:
        """Classify one event: a Frame to process (of ``series``/``shape`` when given), None when consumed
        here (start, end, rejected), or "boundary" when it belongs to another part (kept pending)."""
        if isinstance(event, MalformedMessage):
            log.warning("malformed message skipped: %s", event)
            self.report.reject("malformed")
            return None
        if isinstance(event, Start):
            self._series[event.series] = event
            self.report.series_started += 1
            return None
        if isinstance(event, End):
            if series is not None and event.series == series:
                self._pending = (event, received)
                return "boundary"
            self.report.series_ended += 1
            if self.params.max_series and self.report.series_ended >= self.params.max_series:
                self._ended = True
            return None
        if event.frame in self.done.get(event.series, ()):
            self.report.reject("already processed")
            return None
        start = self._series.get(event.series)
        if start is not None and start.shape is not None and tuple(event.data.shape) != start.shape:
            log.warning("frame %s of series %s has shape %s, the series %s: skipped", event.frame, event.series,
                        event.data.shape, start.shape)
            self.report.reject("wrong shape")
            return None
        if series is not None and (event.series != series or event.data.shape != shape
                                   or event.data.dtype != self._dtype):
            self._pending = (event, received)
            return "boundary"
        return event

    # -- parts ----------------------------------------------------------------------------------------------------
    def _batches(self, first: Frame, first_received: float, results_out: list):
        """Batches of one part: frames of ``first``'s series, shape and dtype, until the part is full, the series
        ends or the processor stops."""
        series, shape = first.series, first.data.shape
        frames, received, count = [first], [first_received], 1
        while True:
            stop = False
            while len(frames) < self.params.batch_size and count < self.params.chunk_frames:
                event = self._next_event()
                if event is None:
                    stop = True
                    break
                accepted = self._accept(event[0], event[1], series, shape)
                if accepted == "boundary":
                    stop = True
                    break
                if accepted is not None:
                    frames.append(accepted)
                    received.append(event[1])
                    count += 1
            if frames:
                numbers = np.array([f.frame for f in frames], np.int64)
                ids = FrameIds(source=np.zeros(len(frames), np.int32), index=numbers,
                               position=self.report.frames_processed + np.arange(len(frames), dtype=np.int64))
                results_out.append((series, numbers, np.array(received)))
                self.report.frames_received += len(frames)
                self.report.frames_processed += len(frames)
                yield np.stack([f.data for f in frames]), ids, None
                frames, received = [], []
            if stop or count >= self.params.chunk_frames:
                return

    def _write_part(self, first: Frame, received: float) -> None:
        shape, dtype = first.data.shape, first.data.dtype
        self._dtype = dtype
        start = self._series.get(first.series)
        key = setup_key(shape, dtype, start)
        if key not in self._setups:
            self._setups[key] = self.make_setup(shape, dtype, start)
        setup = self._setups[key]
        pending: list = []

        def publish(ids, results):
            series, numbers, times = pending.pop(0)
            hit = is_hit(results.peaks.npeaks, self.veto)
            kept = np.diff(results.sparse.frame_ptr)
            now = time.perf_counter()
            if self._first_receipt is None:
                self._first_receipt = float(times[0])
            self.report.streaming_seconds = now - self._first_receipt
            self.report.hits += int(hit.sum())
            for k, number in enumerate(numbers):
                latency = 1e3 * (now - times[k])
                self.report.latency_ms.append(latency)
                self.done.setdefault(series, set()).add(int(number))
                if self._pub is not None:
                    self._pub.send_string(json.dumps(
                        {"series": series, "frame": int(number), "npeaks": int(results.peaks.npeaks[k]),
                         "hit": bool(hit[k]), "kept": int(kept[k]), "latency_ms": round(latency, 3)}))

        from ..io.provenance import Provenance
        from ..params import as_dict

        provenance = Provenance.start({cls.__name__: as_dict(value) for cls, value in setup.params.items()},
                                      geometry=setup.geometry_dict(), inputs=(), argv=self.argv)
        paths = PartPaths(self.folder, self.next_part)
        written_before = self.report.frames_processed
        try:
            write_part(paths, self._batches(first, received, pending), setup, shape=shape, dtype=dtype,
                       sources=[f"stream:{first.series}"], images="none", provenance=provenance,
                       extra={"address": self.address}, on_batch=publish)
        except BaseException:  # its frames were received but are not processed
            lost = self.report.frames_processed - written_before
            self.report.frames_processed -= lost
            self.report.frames_received -= lost
            self.report.reject("part not written", lost)
            raise
        self.next_part += 1
        self.report.parts_written += 1

    # -- main loop ------------------------------------------------------------------------------------------------
    def run(self) -> StreamReport:
        """Receive and process until stopped; returns (and writes to stream_report.json) the report."""
        import zmq

        from ..io.atomic import atomic_output

        started = time.perf_counter()
        self._pub = None
        if self.publish_address:
            self._pub = zmq.Context.instance().socket(zmq.PUB)
            self._pub.setsockopt(zmq.LINGER, 1000)
            self._pub.bind(self.publish_address)
        receiver = self._receiver = _Receiver(self.address, self.bind, self.events, max(1, self.params.queue_frames))
        receiver.start()
        log.info("receiving on %s (%s)", self.address, "bound" if self.bind else "connected")
        try:
            while True:
                event = self._next_event()
                if event is None:
                    break
                accepted = self._accept(event[0], event[1], None, None)
                if isinstance(accepted, Frame):
                    self._write_part(accepted, event[1])
        finally:
            receiver.stopping.set()
            receiver.join(timeout=5)
            while True:  # frames left in the queue were received but are not processed
                try:
                    event, _ = self.events.get_nowait()
                except queue.Empty:
                    break
                if isinstance(event, (Frame, MalformedMessage)):
                    self.report.reject("left in queue at stop")
            if self._pub is not None:
                self._pub.close()
            self.report.seconds = time.perf_counter() - started
            with atomic_output(self.report_path) as tmp:
                tmp.write_text(json.dumps(self.report.as_dict(), indent=1))
        return self.report
