"""``braggsieve monitor`` end to end: a bounded ZeroMQ publisher -> the monitor process -> headless Chromium.

The publisher (an XPUB socket, so it starts sending only once the monitor has subscribed, and no message is
lost to ZeroMQ's slow-joiner effect) sends a known sequence of per-frame results and stops by itself; the
reference numbers are computed here from that sequence.  Chromium loads the page, runs its JavaScript
(polling /state, computing the veto fraction from the histogram) and dumps the DOM, which must show them.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import zmq

from braggsieve.pipeline.monitor import MonitorState, decode_message

NFRAMES = 157
MIN_PEAKS = 10
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _sequence(seed=3):
    rng = np.random.default_rng(seed)
    hit = rng.random(NFRAMES) < 0.3
    npeaks = np.where(hit, rng.integers(MIN_PEAKS, 60, NFRAMES), rng.integers(0, MIN_PEAKS, NFRAMES))
    return npeaks, hit


def _messages(npeaks, hit):
    rng = np.random.default_rng(5)
    for frame, (n, h) in enumerate(zip(npeaks, hit)):
        message = {"frame": frame, "npeaks": int(n), "hit": bool(h), "file": "run_000001.h5", "index": frame}
        if h:
            message.update(shape=[512, 480], peaks_row=rng.uniform(0, 511, n).round(1).tolist(),
                           peaks_col=rng.uniform(0, 479, n).round(1).tolist())
        yield [b"frames", json.dumps(message).encode()]


def test_state_counts_histogram_and_skips_malformed():
    npeaks, hit = _sequence()
    state = MonitorState(min_peaks=MIN_PEAKS, history=50)
    for parts in _messages(npeaks, hit):
        assert state.add(decode_message(parts))
    assert not state.add({"frame": 1, "npeaks": "many"})
    assert decode_message([b"topic", b"\xff\x00 not json"]) is None
    snap = state.snapshot()
    assert snap["frames"] == NFRAMES and snap["hits"] == hit.sum() and snap["malformed"] == 1
    assert np.array_equal(snap["histogram"], np.bincount(npeaks))
    assert snap["recent_npeaks"] == npeaks[-50:].tolist()
    last = int(np.flatnonzero(hit)[-1])
    assert snap["last_hit"]["frame"] == last and len(snap["last_hit"]["peaks_row"]) == npeaks[last]
    # CBOR maps (the encoding of the DECTRIS stream) are read too; a start message resets the series
    import cbor2
    assert state.add(decode_message([cbor2.dumps({"type": "start", "series": 7})]))
    assert state.snapshot()["frames"] == 0 and state.series == "7"
    assert state.add(decode_message([cbor2.dumps({"frame": 0, "npeaks": 12})]))
    assert state.hits == 1  # no hit flag: npeaks >= min_peaks
    assert state.add({"htype": "braggsieve-end-1", "series": "7"}) and state.ended
    # braggsieve stream's results: a frame of another series starts a new one; median latency reported
    for frame, latency in enumerate((3.0, 9.0, 4.0)):
        assert state.add({"series": "8", "frame": frame, "npeaks": 2, "hit": False, "kept": 40,
                          "latency_ms": latency})
    assert state.series == "8" and state.frames == 3 and state.snapshot()["latency_ms"] == 4.0


def _publisher():
    """(XPUB socket bound to a free loopback port, its address): XPUB receives the subscriptions, so the test
    sends only once the monitor listens."""
    socket = zmq.Context.instance().socket(zmq.XPUB)
    socket.setsockopt(zmq.LINGER, 2000)
    return socket, f"tcp://127.0.0.1:{socket.bind_to_random_port('tcp://127.0.0.1')}"


def _dump_dom(url, tmp_path, screenshot=None):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=4000",
             "--window-size=1400,1000"]
    if screenshot is not None:
        flags.append(f"--screenshot={screenshot}")
    else:
        flags.append("--dump-dom")
    result = subprocess.run([CHROMIUM, *flags, url], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _text(dom, element_id):
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert found, f"no #{element_id} in the page"
    return found.group(1)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)")
def test_page_in_headless_chromium_shows_the_published_run(tmp_path):
    npeaks, hit = _sequence()
    publisher, address = _publisher()
    command = "import sys; from braggsieve.cli import main; sys.exit(main())"
    monitor = subprocess.Popen([sys.executable, "-c", command, "monitor", "--connect", address,
                                "--port", "0", "--min-peaks", str(MIN_PEAKS)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = monitor.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        assert publisher.poll(15000), "the monitor never subscribed"
        assert publisher.recv() == b"\x01"  # subscription to every topic
        for parts in _messages(npeaks, hit):
            publisher.send_multipart(parts)
        publisher.send_multipart([b"frames", b"{not json"])
        deadline = time.monotonic() + 15
        while True:
            state = json.loads(urllib.request.urlopen(url + "state", timeout=5).read())
            if state["frames"] == NFRAMES and state["malformed"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert state["frames"] == NFRAMES

        threshold = 23
        dom = _dump_dom(f"{url}?threshold={threshold}", tmp_path)
        assert _text(dom, "frames") == str(NFRAMES)
        assert _text(dom, "hits") == str(int(hit.sum()))
        assert _text(dom, "hit-rate") == f"{100 * hit.mean():.1f}%"
        assert _text(dom, "malformed") == "1"
        kept = int((npeaks >= threshold).sum())
        assert _text(dom, "kept") == f"{100 * kept / NFRAMES:.1f}%"
        assert _text(dom, "kept-detail") == f"{kept} of {NFRAMES} frames have &gt;= {threshold} peaks"
        last = int(np.flatnonzero(hit)[-1])
        assert _text(dom, "hit-id") == f"frame {last}"

        png = tmp_path / "monitor.png"
        _dump_dom(url, tmp_path, screenshot=png)
        assert png.stat().st_size > 20_000  # a drawn page, not a blank one
    finally:
        monitor.terminate()
        monitor.wait(10)
        publisher.close()


def test_monitor_rejects_bad_options(capsys):
    from braggsieve.cli import main

    assert main(["monitor"]) == 2
    assert main(["monitor", "--watch", "/nonexistent/folder", "--port", "0"]) == 2
    assert main(["monitor", "--connect", "not-an-address", "--port", "0"]) == 2
    assert "not-an-address" in capsys.readouterr().err


def test_watching_a_process_folder_counts_each_completed_part_once(tmp_path):
    """Reference: summary.json and run.cxi written by 'braggsieve process' on frames with planted spots."""
    import h5py

    from braggsieve.cli import main
    from braggsieve.geometry import Detector, Poni, write_poni
    from braggsieve.io.cxi import read_cxi
    from braggsieve.pipeline.monitor import ingest_parts

    shape, hits = (64, 72), (1, 4, 5)
    rng = np.random.default_rng(9)
    write_poni(Poni.from_beam_center(Detector.generic(shape, (100e-6, 100e-6)), 0.05, (36.2, 31.7), 1e-10),
               tmp_path / "run.poni")
    frames = rng.poisson(10, (7, *shape)).astype(np.uint16)
    for k in hits:
        for r, c in zip(rng.permutation(np.arange(5, 60, 7))[:7], rng.permutation(np.arange(5, 68, 7))[:7]):
            frames[k, r - 1:r + 2, c - 1:c + 2] += 150
            frames[k, r, c] += 600
    with h5py.File(tmp_path / "run.h5", "w") as handle:
        handle["entry/data/data"] = frames
    outdir = tmp_path / "out"
    assert main(["process", str(tmp_path / "run.h5"), "--poni", str(tmp_path / "run.poni"), "-o", str(outdir),
                 "--workers", "0", "--unit", "r_mm", "--bins", "40", "--min-peaks", "4", "--part-size", "3"]) == 0
    summary = json.loads((outdir / "summary.json").read_text())
    npeaks = np.array(summary["per_frame"]["npeaks"])
    assert np.flatnonzero(npeaks >= 4).tolist() == list(hits)

    state, seen = MonitorState(min_peaks=4), set()
    last = outdir / "parts" / "part_00002.json"
    hidden = last.rename(tmp_path / "part_00002.json")  # the last part is still being processed
    assert ingest_parts(outdir, state, seen) == 6 and state.frames == 6
    hidden.rename(last)
    assert ingest_parts(outdir, state, seen) == 1 and ingest_parts(outdir, state, seen) == 0
    snap = state.snapshot()
    assert snap["frames"] == 7 and snap["hits"] == len(hits)
    assert np.array_equal(snap["histogram"], np.bincount(npeaks))
    peaks = read_cxi(outdir / "run.cxi")
    lo, hi = peaks.frame_ptr[hits[-1]], peaks.frame_ptr[hits[-1] + 1]
    assert snap["last_hit"]["frame"] == hits[-1] and snap["last_hit"]["shape"] == list(shape)
    np.testing.assert_allclose(snap["last_hit"]["peaks_row"], peaks.row[lo:hi])
    np.testing.assert_allclose(snap["last_hit"]["peaks_col"], peaks.col[lo:hi])
