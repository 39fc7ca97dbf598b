"""How many per-frame results per second ``braggsieve monitor`` takes in, next to a bare pyzmq SUB loop
(the ceiling on this machine), from one run.

A publisher (XPUB, waits for the subscription) sends N JSON results -- 30 % hits with 40 peak positions
each, as ``braggsieve stream --publish`` would -- as fast as it can with a high-water mark large enough that
nothing is dropped; the rate is N / (time until the receiver has counted all N).  Median of REPEATS runs.

    .venv/bin/python benchmarks/monitor_rate.py [N] [REPEATS]
"""
from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import zmq


def messages(n):
    rng = np.random.default_rng(0)
    out = []
    for frame in range(n):
        hit = rng.random() < 0.3
        message = {"frame": frame, "npeaks": int(rng.integers(10, 60) if hit else rng.integers(0, 10)), "hit": hit,
                   "file": "run_data_000001.h5", "index": frame}
        if hit:
            message.update(shape=[2167, 2070], peaks_row=rng.uniform(0, 2166, 40).round(1).tolist(),
                           peaks_col=rng.uniform(0, 2069, 40).round(1).tolist())
        out.append([b"result", json.dumps(message).encode()])
    return out


def publisher():
    socket = zmq.Context.instance().socket(zmq.XPUB)
    socket.setsockopt(zmq.SNDHWM, 0)
    return socket, f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"


def send_all(socket, payload):
    assert socket.poll(20000) and socket.recv() == b"\x01"
    start = time.perf_counter()
    for parts in payload:
        socket.send_multipart(parts)
    return start


def bare_sub(payload):
    socket, address = publisher()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(address)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("start", send_all(socket, payload)))
    thread.start()
    for _ in payload:
        json.loads(sub.recv_multipart()[-1])
    seconds = time.perf_counter() - result.get("start", time.perf_counter())
    thread.join()
    sub.close()
    socket.close()
    return len(payload) / seconds


def monitor(payload):
    socket, address = publisher()
    command = "import sys; from braggsieve.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", command, "monitor", "--connect", address, "--port", "0"],
                               stdout=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", process.stdout.readline()).group(0)
        start = send_all(socket, payload)
        while True:
            frames = json.loads(urllib.request.urlopen(url + "state").read())["frames"]
            if frames >= len(payload):
                return len(payload) / (time.perf_counter() - start)
            time.sleep(0.002)
    finally:
        process.terminate()
        process.wait()
        socket.close()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    payload = messages(n)
    bare_sub(payload[:1000])  # warm-up
    ours = statistics.median(monitor(payload) for _ in range(repeats))
    peer = statistics.median(bare_sub(payload) for _ in range(repeats))
    print(f"{n} results, 30 % hits with 40 peaks, median of {repeats}")
    print(f"braggsieve monitor : {ours:10.0f} results/s")
    print(f"bare pyzmq SUB loop: {peer:10.0f} results/s   (monitor / bare = {ours / peer:.2f})")


if __name__ == "__main__":
    main()
