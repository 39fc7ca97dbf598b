"""Send the frames of files over ZeroMQ as a detector would (``braggsieve replay``), to test live processing.

The frames of an io.frames.FrameSource go out as one series: a start message, one message per frame (frame
numbers 0, 1, ... in the source's order) and an end message, in the DECTRIS Stream V2 format (CBOR, one
part, frames bitshuffle-LZ4 compressed by default) or the simple format (pipeline.messages).  Like a
detector, the PUSH socket binds by default and the receivers connect; sending blocks while no receiver is
connected or while they are busy (ZeroMQ's high-water mark: backpressure), up to ``timeout`` seconds.
"""
from __future__ import annotations

import logging
import time

from ..errors import InputError
from .messages import SIMPLE, STREAM2, End, Frame, Start, encode_simple, encode_stream2

log = logging.getLogger(__name__)


def replay(source, address: str, *, fmt: str = STREAM2, compression: str = "bslz4", series: str | None = None,
           bind: bool = True, rate: float = 0.0, timeout: float = 60.0, batch_size: int = 8, hwm: int = 16,
           progress: bool | None = None) -> int:
    """Send every frame of ``source`` to ``address``; returns the number of frames sent.

    ``series``: the series name (default: the first input's file name); ``rate``: frames per second at most
    (0 = as fast as the receiver takes them); ``timeout``: seconds a message may wait for a receiver."""
    import os

    import zmq
    from tqdm import tqdm

    if fmt not in (STREAM2, SIMPLE):
        raise ValueError(f"unknown format {fmt!r}")
    series = series or os.path.basename(source.sources[0])

    def encode(message):
        return encode_stream2(message, compression) if fmt == STREAM2 else encode_simple(message)

    socket = zmq.Context.instance().socket(zmq.PUSH)
    socket.setsockopt(zmq.SNDHWM, hwm)
    socket.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    socket.setsockopt(zmq.LINGER, int(timeout * 1000))
    (socket.bind if bind else socket.connect)(address)
    sent = 0
    bar = tqdm(total=source.nframes, unit="frame", desc="replay", disable=None if progress is None else not progress)
    started = time.perf_counter()
    try:
        def send(message):
            try:
                socket.send_multipart(encode(message))
            except zmq.Again:
                raise InputError(f"no receiver took a message within {timeout:g} s", address) from None

        send(Start(series, shape=source.shape, dtype=source.dtype, saturation=source.metadata.saturation,
                   info={"nframes": source.nframes}))
        for frames, _ in source.iter_batches(batch_size):
            for frame in frames:
                if rate:
                    delay = started + sent / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                send(Frame(series, sent, frame))
                sent += 1
                bar.update(1)
        send(End(series))
    finally:
        bar.close()
        socket.close()
    log.info("sent %d frame(s) of series %s to %s", sent, series, address)
    return sent
