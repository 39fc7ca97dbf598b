"""Live-stream throughput on loopback: frames/s and latency of ``braggsieve stream`` (receive, decode, one
sigma-clip per frame, peaks, picking, write parts, publish) against two references measured in the same run:

* transport: a bare PULL socket receiving and decoding the same Stream V2 messages (the ceiling set by
  ZeroMQ + CBOR + bitshuffle-LZ4 decompression in one thread), and
* offline: ``Engine.process`` on the same frames already in memory (the ceiling set by the engine).

Frames: Poisson background falling with radius plus 30 spots on half the frames, uint32, on a generic
detector of 1024 x 1024 (1 Mpixel) and 2167 x 2070 (Eiger 4M, 4.5 Mpixel) pixels.  Each figure is the median
of --repeats runs after a warm-up run.  The frames are sent by 'braggsieve replay' in another process
(Stream V2, bitshuffle-LZ4), as a detector would; latency (receipt to publication) is given at full speed (the queue
fills: latency ~ queue length / rate) and with the sender paced at half the streaming rate.  Two stream rates:
over the whole session (it includes waiting ~0.6 s for the sender process to start) and while frames flow
(first frame's receipt to last publication: StreamReport.streaming_seconds).  Usage:

    python benchmarks/stream_throughput.py [--frames 24] [--repeats 3] [--sizes 1M 4M] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import zmq

from braggsieve.engine.device import select_engine
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.peaks import PeakParams
from braggsieve.engine.pick import PickParams
from braggsieve.geometry import Detector, Poni, write_poni
from braggsieve.io.frames import open_frames
from braggsieve.pipeline.messages import decode
from braggsieve.pipeline.setup import build_setup
from braggsieve.pipeline.stream import StreamParams, StreamProcessor, stream_source
from braggsieve.pipeline.veto import VetoParams

_MAIN = "import sys; from braggsieve.cli import main; sys.exit(main(sys.argv[1:]))"
SIZES = {"1M": (1024, 1024), "4M": (2167, 2070)}


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_run(folder: Path, shape, nframes: int) -> Path:
    rng = np.random.default_rng(0)
    centre = (shape[1] / 2 + 3.3, shape[0] / 2 - 7.1)
    poni = Poni.from_beam_center(Detector.generic(shape, (75e-6, 75e-6)), 0.15, centre, 1.0e-10)
    write_poni(poni, folder / "run.poni")
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    background = 2 + 20 * np.exp(-np.hypot(yy - shape[0] / 2, xx - shape[1] / 2) / (shape[0] / 5))
    with h5py.File(folder / "run.h5", "w") as handle:
        data = handle.create_dataset("entry/data/data", shape=(nframes, *shape), dtype=np.uint32, chunks=(1, *shape))
        for k in range(nframes):
            frame = rng.poisson(background).astype(np.uint32)
            if k % 2:
                r, c = rng.integers(5, shape[0] - 5, 30), rng.integers(5, shape[1] - 5, 30)
                frame[r, c] += 500
            data[k] = frame
    return folder


def params():
    return {IntegrationParams: IntegrationParams(unit="2th_deg", bins=500), CorrectionParams: CorrectionParams(),
            ClipParams: ClipParams(), PickParams: PickParams(), PeakParams: PeakParams(),
            VetoParams: VetoParams()}


def sender(folder: Path, address: str, *, bind: bool, series: str = "bench", rate: float = 0.0):
    """``braggsieve replay`` in its own process (a detector is another machine: its encoding must not compete
    with the receiver for this interpreter)."""
    return subprocess.Popen([sys.executable, "-c", _MAIN, "replay", str(folder / "run.h5"),
                             "--to" if bind else "--connect-to", address, "--series", series, "--rate", str(rate)],
                            stdout=subprocess.DEVNULL)


def transport(folder: Path) -> float:
    """frames/s of a bare PULL + decode loop."""
    address = f"tcp://127.0.0.1:{_port()}"
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.bind(address)
    process = sender(folder, address, bind=False)
    count, first = 0, None
    while True:
        message = decode(pull.recv_multipart())
        first = first or time.perf_counter()
        if type(message).__name__ == "Frame":
            count += 1
        if type(message).__name__ == "End":
            break
    elapsed = time.perf_counter() - first
    process.wait()
    pull.close()
    return count / elapsed


def offline(folder: Path, device: str) -> float:
    source = open_frames(str(folder / "run.h5"))
    setup = build_setup(stream_source(source.shape, None), params(), poni=str(folder / "run.poni"), device=device)
    engine = select_engine(device, setup.binning, setup.corrections, setup.integration, setup.clip, PickParams(),
                           PeakParams())
    batches = [frames for frames, _ in source.iter_batches(4)]
    started = time.perf_counter()
    for frames in batches:
        engine.process(frames)
    return source.nframes / (time.perf_counter() - started)


def stream(folder: Path, device: str, run_number: int, rate: float = 0.0) -> dict:
    address = f"tcp://127.0.0.1:{_port()}"
    out = folder / f"out-{run_number}"
    processor = StreamProcessor(address, out, lambda shape, dtype, start: build_setup(
        stream_source(shape, start), params(), poni=str(folder / "run.poni"), device=device),
        StreamParams(chunk_frames=200, batch_size=4, queue_frames=16, max_series=1, idle_timeout=120))
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", processor.run()))
    thread.start()
    process = sender(folder, address, bind=True, series=f"bench-{run_number}", rate=rate)
    thread.join()
    process.wait()
    return result["report"].as_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores, device {args.device}, {args.frames} frames, "
          f"median of {args.repeats} after a warm-up")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = make_run(Path(tmp), SIZES[size], args.frames)
            stream(folder, args.device, 0)  # warm-up (numba compilation, page cache)
            runs = [stream(folder, args.device, k + 1) for k in range(args.repeats)]
            ours = float(np.median([r["frames_per_second"] for r in runs]))
            flowing = float(np.median([r["streaming_frames_per_second"] for r in runs]))
            lat = {p: float(np.median([r["latency_ms"][p] for r in runs])) for p in ("p50", "p90", "p99")}
            paced = stream(folder, args.device, 99, rate=0.5 * flowing)["latency_ms"]  # below capacity: no queueing
            wire = float(np.median([transport(folder) for _ in range(args.repeats)]))
            alone = float(np.median([offline(folder, args.device) for _ in range(args.repeats)]))
            assert all(r["balanced"] and r["frames_processed"] == args.frames for r in runs)
            print(f"{size} {SIZES[size]}: stream {ours:.2f} frames/s over the session, {flowing:.2f} from the first "
                  f"frame's receipt | engine alone {alone:.2f} frames/s (stream/engine {ours / alone:.2f} session, "
                  f"{flowing / alone:.2f} streaming) | transport+decode alone {wire:.1f} frames/s | "
                  f"latency ms at full speed p50 {lat['p50']:.0f} p90 {lat['p90']:.0f} p99 {lat['p99']:.0f}, "
                  f"at half speed p50 {paced['p50']:.0f} p90 {paced['p90']:.0f} p99 {paced['p99']:.0f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
