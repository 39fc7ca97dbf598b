"""Live stream on loopback: replay -> ZeroMQ -> StreamProcessor, both formats, bounded in count and time.

References: the frames of the file (CRC-32 of every decoded frame in the part records), the CPU engine run
directly on those frames (peaks per frame published and written), the counts of messages sent (received =
processed + rejected, garbage included), and a second session on the same folder (nothing processed twice).
"""
from __future__ import annotations

import json
import socket
import threading
import time
import zlib

import h5py
import numpy as np
import pytest
import zmq

from braggsieve.engine.cpu import CpuEngine
from braggsieve.engine.peaks import PeakParams
from braggsieve.engine.pick import PickParams
from braggsieve.errors import InputError
from braggsieve.io.frames import open_frames
from braggsieve.pipeline.messages import Frame, MalformedMessage, decode, encode_simple, encode_stream2
from braggsieve.pipeline.parts import read_record
from braggsieve.pipeline.replay import replay
from braggsieve.pipeline.setup import build_setup
from braggsieve.pipeline.stream import StreamParams, StreamProcessor, stream_source
from braggsieve.pipeline.veto import VetoParams
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from synthetic_runs import spotted_frames

SHAPE = (90, 100)
NFRAMES = 9
HITS = (1, 5, 6)


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    frames = spotted_frames(folder, shape=SHAPE, nframes=NFRAMES, hits=HITS, seed=3, centre=(48.5, 44.2),
                            distance=0.05, dtype=np.uint16, spacing=8, margin=6, background=(5.0, 30.0, 25.0),
                            shoulder=150, peak=600)
    with h5py.File(folder / "run.h5", "w") as handle:
        handle["entry/data/data"] = frames
    params = {IntegrationParams: IntegrationParams(unit="r_mm", bins=60), CorrectionParams: CorrectionParams(),
              ClipParams: ClipParams(), PickParams: PickParams(), PeakParams: PeakParams(),
              VetoParams: VetoParams(min_peaks=5)}
    setup = build_setup(stream_source(SHAPE, None), params, poni=str(folder / "run.poni"))
    engine = CpuEngine(setup.binning, setup.corrections, setup.integration, setup.clip, PickParams(), PeakParams())
    expected = engine.process(frames).peaks.npeaks
    return folder, frames, params, expected


def _session(folder, params, address, *, bind, send, chunk=4, queue_frames=3):
    """Run a StreamProcessor in a thread while ``send()`` runs here; the processor's report and the published
    per-frame results."""
    publish = f"tcp://127.0.0.1:{_port()}"
    processor = StreamProcessor(address, folder / "out", lambda shape, dtype, start: build_setup(
        stream_source(shape, start), params, poni=str(folder / "run.poni")),
        StreamParams(chunk_frames=chunk, batch_size=2, queue_frames=queue_frames, max_series=1, idle_timeout=20),
        params[VetoParams], bind=bind, publish=publish)
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 100)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", processor.run()))
    thread.start()
    time.sleep(0.3)
    sub.connect(publish)
    time.sleep(0.3)
    send()
    thread.join(timeout=60)
    assert not thread.is_alive()
    published = []
    while True:
        try:
            published.append(json.loads(sub.recv_string()))
        except zmq.Again:
            break
    sub.close()
    return result["report"], published


def test_stream2_replay_with_garbage_then_restart_processes_nothing_twice(run):
    folder, frames, params, expected = run
    address = f"tcp://127.0.0.1:{_port()}"

    def send():  # the detector side binds; two garbage messages among the frames
        source = open_frames(str(folder / "run.h5"))
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(address)
        push.send(b"not cbor at all")
        push.send_multipart([b'{"htype": "braggsieve-frame-1", "series": "x"}', b"12"])
        push.close(linger=5000)
        assert replay(source, address.replace("127.0.0.1", "127.0.0.1"), series="run-1", bind=False,
                      timeout=20) == NFRAMES

    report, published = _session(folder, params, address, bind=True, send=send)
    assert report.frames_received == NFRAMES + 2 and report.frames_processed == NFRAMES
    assert report.frames_rejected == 2 and report.rejected == {"malformed": 2} and report.balanced
    assert report.parts_written == 3  # chunks of 4, 4, 1 frames
    records = [read_record(p) for p in sorted((folder / "out" / "parts").glob("part_*.json"))]
    crc = sum((r["frames"]["input_crc32"] for r in records), [])
    assert crc == [zlib.crc32(np.ascontiguousarray(f)) for f in frames]  # every frame decoded bit-exact, in order
    assert sum((r["frames"]["npeaks"] for r in records), []) == expected.tolist()
    assert [m["frame"] for m in published] == list(range(NFRAMES))
    assert [m["npeaks"] for m in published] == expected.tolist()
    assert [i for i, m in enumerate(published) if m["hit"]] == list(HITS)
    # the session waited >= 0.6 s (_session's sleeps) before the first frame; the streaming rate leaves it out
    assert 0 < report.streaming_seconds <= report.seconds - 0.6
    assert report.as_dict()["streaming_frames_per_second"] == round(NFRAMES / report.streaming_seconds, 3)

    def send_again():
        replay(open_frames(str(folder / "run.h5")), address, series="run-1", bind=False, timeout=20)

    again, published = _session(folder, params, address, bind=True, send=send_again)
    assert again.frames_received == NFRAMES and again.frames_processed == 0
    assert again.rejected == {"already processed": NFRAMES} and again.balanced and published == []
    assert again.streaming_seconds == 0 and again.as_dict()["streaming_frames_per_second"] == 0.0


def test_simple_format_receiver_connects_to_a_binding_sender(run, tmp_path):
    folder, frames, params, expected = run
    work = tmp_path / "simple"
    work.mkdir()
    for name in ("run.h5", "run.poni"):
        (work / name).write_bytes((folder / name).read_bytes())
    address = f"tcp://127.0.0.1:{_port()}"
    sender = threading.Thread(target=lambda: replay(open_frames(str(work / "run.h5")), address, fmt="braggsieve",
                                                    bind=True, timeout=20))

    report, published = _session(work, params, address, bind=False, send=sender.start, queue_frames=1)
    sender.join(timeout=30)
    assert report.frames_processed == NFRAMES and report.frames_rejected == 0
    assert [m["npeaks"] for m in published] == expected.tolist()


def test_messages_round_trip_and_malformed_ones_are_named():
    data = np.arange(12 * 10, dtype=np.uint32).reshape(12, 10) * 7
    for compression in ("none", "bslz4", "lz4"):
        message = decode(encode_stream2(Frame("s", 3, data), compression))
        assert message.frame == 3 and message.data.dtype == data.dtype
        np.testing.assert_array_equal(message.data, data)
    np.testing.assert_array_equal(decode(encode_simple(Frame("s", 3, data.astype(">i4")))).data, data)
    for parts, reason in (([b"\xff\x00"], "not CBOR"), ([b'{"htype": "other", "series": 1}'], "unknown htype"),
                          ([b'{"series": 1, "htype": "braggsieve-frame-1", "frame": 0, "shape": [2, 2], '
                            b'"dtype": "<u2"}', b"123"], "data part")):
        with pytest.raises(MalformedMessage, match=reason):
            decode(parts)


def test_replay_without_receiver_gives_up_with_one_line_error(run):
    folder = run[0]
    with pytest.raises(InputError, match="no receiver"):
        replay(open_frames(str(folder / "run.h5")), f"tcp://127.0.0.1:{_port()}", bind=True, timeout=0.3, hwm=1)


def test_a_series_with_another_pixel_mask_gets_its_own_setup():
    """The set-up cache of the receiver is keyed by what the set-up depends on: a later series of the same shape
    whose start message carries another pixel mask (or saturation) must not reuse the first series' set-up."""
    from braggsieve.pipeline.messages import Start
    from braggsieve.pipeline.stream import setup_key

    mask = np.zeros(SHAPE, np.uint32)
    other = mask.copy()
    other[3, 4] = 1
    first = Start(series="a", shape=SHAPE, dtype=np.dtype(np.uint16), pixel_mask=mask, saturation=65000.0)
    same = Start(series="b", shape=SHAPE, dtype=np.dtype(np.uint16), pixel_mask=mask.copy(), saturation=65000.0)
    assert setup_key(SHAPE, np.uint16, first) == setup_key(SHAPE, np.uint16, same)
    assert setup_key(SHAPE, np.uint16, first) != setup_key(
        SHAPE, np.uint16, Start(series="c", shape=SHAPE, pixel_mask=other, saturation=65000.0))
    assert setup_key(SHAPE, np.uint16, first) != setup_key(
        SHAPE, np.uint16, Start(series="d", shape=SHAPE, pixel_mask=mask, saturation=4095.0))
    assert setup_key(SHAPE, np.uint16, first) != setup_key(SHAPE, np.uint32, first)
    assert setup_key(SHAPE, np.uint16, None) != setup_key(SHAPE, np.uint16, first)
