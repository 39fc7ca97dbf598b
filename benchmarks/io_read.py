"""Frame reading: braggsieve's FrameSource against the plain loops a user (or pyFAI's tools) would write.

Cases, each timed as the median over REPEATS passes after one warm-up pass, per frame:

* eiger-h5: an Eiger 4M-like run (2167 x 2070 uint32, Poisson background ~2 counts, bitshuffle-LZ4 chunks of
  one frame) as a master file with two data files; braggsieve ``iter_batches`` (prefetch on) against an h5py
  loop ``dataset[i]`` over the data files and against ``fabio.open(master)`` + ``getframe`` (FabIO's Eiger
  reader);
* pilatus-cbf.bz2: the real Pilatus 6M stills of ../shared/data/real (if present); braggsieve (threads decode
  files in parallel) against a ``fabio.open(path).data`` loop.

Reading alone is measured (the consumer does nothing with the frames), so prefetching gains nothing here; it
pays when the engine computes on one batch while the next is read.

    .venv/bin/python benchmarks/io_read.py [--frames 16] [--repeats 3]
"""
from __future__ import annotations

import argparse
import glob
import os
import tempfile

import fabio
import h5py
import hdf5plugin
import numpy as np

from braggsieve.io.frames import open_frames
from _peers import median_time

REAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real", "grid_stills_pilatus3_6m")


def write_eiger_run(folder, nframes, shape=(2167, 2070)):
    rng = np.random.default_rng(0)
    half = nframes // 2
    counts = (half, nframes - half)
    for number, count in enumerate(counts, start=1):
        with h5py.File(os.path.join(folder, f"run_data_{number:06d}.h5"), "w") as handle:
            data = handle.create_dataset("/entry/data/data", (count, *shape), np.uint32, chunks=(1, *shape),
                                         **hdf5plugin.Bitshuffle(cname="lz4"))
            for i in range(count):
                data[i] = rng.poisson(2.0, shape).astype(np.uint32)
    master = os.path.join(folder, "run_master.h5")
    with h5py.File(master, "w") as handle:
        for number in (1, 2):
            handle[f"/entry/data/data_{number:06d}"] = h5py.ExternalLink(f"run_data_{number:06d}.h5",
                                                                          "/entry/data/data")
    return master


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        master = write_eiger_run(folder, args.frames)
        data_files = sorted(glob.glob(os.path.join(folder, "run_data_*.h5")))

        def ours():
            for _ in open_frames(master).iter_batches(args.batch):
                pass

        def h5py_loop():
            for path in data_files:
                with h5py.File(path) as handle:
                    dataset = handle["/entry/data/data"]
                    for i in range(dataset.shape[0]):
                        dataset[i]

        def fabio_loop():
            image = fabio.open(master)
            for i in range(image.nframes):
                image.getframe(i).data

        t_ours = median_time(ours, args.repeats)[0] / args.frames
        rows.append(("eiger-h5", "h5py loop", t_ours, median_time(h5py_loop, args.repeats)[0] / args.frames))
        rows.append(("eiger-h5", "fabio Eiger", t_ours, median_time(fabio_loop, args.repeats)[0] / args.frames))
    cbfs = sorted(glob.glob(os.path.join(REAL, "*.cbf.bz2")))
    if cbfs:
        def ours_cbf():
            for _ in open_frames(cbfs).iter_batches(args.batch):
                pass

        def fabio_cbf():
            for path in cbfs:
                fabio.open(path).data

        rows.append(("pilatus-cbf.bz2", "fabio loop", median_time(ours_cbf, args.repeats)[0] / len(cbfs),
                     median_time(fabio_cbf, args.repeats)[0] / len(cbfs)))
    print(f"{'case':18s} {'peer':12s} {'braggsieve ms/frame':>20s} {'peer ms/frame':>14s} {'speed-up':>9s}")
    for case, peer, ours_s, peer_s in rows:
        print(f"{case:18s} {peer:12s} {ours_s * 1e3:20.1f} {peer_s * 1e3:14.1f} {peer_s / ours_s:8.2f}x")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
