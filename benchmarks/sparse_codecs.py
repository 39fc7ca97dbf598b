"""Codecs of a sparse-frames file: bytes, write and read time of each dataset under each of braggsieve's codecs.

    python benchmarks/sparse_codecs.py SPARSE.h5 [--repeats 3]

SPARSE.h5: any file written by ``braggsieve sparsify`` (its datasets are rewritten, in memory, with each codec of
``braggsieve.io.sparse.CODECS``, with the same chunks as the writer uses).  ``bslz4`` is what pyFAI's
``sparsify-Bragg`` writes (the peer); ``zstd`` is braggsieve's previous default; ``bytedelta`` the current
one.  Rounded intensities (``--quantise``, read from the file's configuration) use the codec's "rounded"
options.  Prints, per dataset and in total, MB and the median write and read times after a warm-up, with the
size ratio against bitshuffle-LZ4.
"""
from __future__ import annotations

import argparse
import io
import json
import time

import h5py
import hdf5plugin  # noqa: F401  (filters for h5py)
import numpy as np

from braggsieve.io.sparse import _CHUNK_PIXELS, CODECS

ROLES = {"index": "frames", "intensity": "frames", "background_avg": "frames", "background_std": "frames",
         "mask": "maps", "normalization": "maps"}


def chunks_of(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The chunk shape the writer gives dataset ``name`` of ``shape``."""
    if len(shape) == 1:
        return (_CHUNK_PIXELS,)
    if name in ("mask", "normalization"):
        return (min(256, shape[0]), shape[1])
    return (max(1, min(64, (1 << 16) // shape[1])), shape[1])


def measure(values: np.ndarray, chunks: tuple[int, ...], options: dict, repeats: int) -> tuple[int, float, float]:
    """(stored bytes, median write s, median read s) of ``values`` written with ``options`` (h5py kwargs)."""
    writes, reads, nbytes = [], [], 0
    for attempt in range(repeats + 1):  # the first is a warm-up
        buffer = io.BytesIO()
        start = time.perf_counter()
        with h5py.File(buffer, "w") as h5:
            dataset = h5.create_dataset("x", data=values, chunks=chunks, maxshape=(None,) + values.shape[1:],
                                        **options)
            nbytes = dataset.id.get_storage_size()
        middle = time.perf_counter()
        with h5py.File(buffer, "r") as h5:
            back = h5["x"][()]
        end = time.perf_counter()
        if not np.array_equal(back, values, equal_nan=values.dtype.kind == "f"):
            raise SystemExit(f"lossy round trip through {options}")
        if attempt:
            writes.append(middle - start)
            reads.append(end - middle)
    return nbytes, float(np.median(writes)), float(np.median(reads))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sparse")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with h5py.File(args.sparse, "r") as h5:
        data = h5["entry_0000/sparse_frames"]
        arrays = {name: data[name][()] for name in ROLES if name in data}
        nframes = len(data["frame_ptr"]) - 1
        try:
            quantise = json.loads(h5["entry_0000/sparsify/configuration/data"][()])["sparsify"].get("quantise") or 0
        except (KeyError, ValueError):
            quantise = 0
    print(f"{args.sparse}: {nframes} frames, {len(arrays['index'])} stored pixels, quantise {quantise}; "
          f"MB / write ms / read ms, median of {args.repeats} after a warm-up")
    totals = {codec: [0, 0.0, 0.0] for codec in CODECS}
    print(f"{'dataset':16s}" + "".join(f"{codec:>26s}" for codec in CODECS))
    for name, values in arrays.items():
        role = "rounded" if name == "intensity" and quantise else ROLES[name]
        cells = []
        for codec, options in CODECS.items():
            nbytes, write, read = measure(values, chunks_of(name, values.shape), options[role], args.repeats)
            total = totals[codec]
            total[0] += nbytes
            total[1] += write
            total[2] += read
            cells.append(f"{nbytes / 1e6:8.3f} {write * 1e3:7.1f} {read * 1e3:7.1f}")
        print(f"{name:16s}" + "".join(f"{cell:>26s}" for cell in cells))
    print(f"{'total':16s}" + "".join(f"{t[0] / 1e6:8.3f} {t[1] * 1e3:7.1f} {t[2] * 1e3:7.1f}".rjust(26)
                                     for t in totals.values()))
    peer = totals["bslz4"][0]
    print("size ratio bitshuffle-LZ4 / codec: " + ", ".join(f"{codec} {peer / t[0]:.2f}x"
                                                            for codec, t in totals.items()))


if __name__ == "__main__":
    main()
