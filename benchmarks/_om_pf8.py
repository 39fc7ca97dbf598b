"""OM's peakfinder8 on a simulated run, for peaks_quality.py and peaks_speed.py (runs in OM's own environment:
``python3 -m venv /tmp/om_pf8 && /tmp/om_pf8/bin/pip install ondamonitor "numpy<2" h5py hdf5plugin``).

    python _om_pf8.py SPEC.json

SPEC: {"run": frames file (HDF5 /entry/data/data) or "frames" .npy, "frames": [indices], "settings": [{"adc",
"snr", "min_pix"}], "out": .npz}; next to SPEC: radius.npy (float32 pixels from the beam) and good.npy (int8,
1 = good, OM's convention).  Writes s{k}_f{frame} = (n, 2) (row, col) arrays and ``times`` = median seconds per
frame of find_peaks for each setting (single thread, non-fast mode, after one warm-up frame).
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (bitshuffle-LZ4 frames)
import numpy as np
from om.algorithms.crystallography import Peakfinder8PeakDetection


def main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    folder = Path(spec_path).parent
    radius = np.load(folder / "radius.npy").astype(np.float32)
    good = np.load(folder / "good.npy").astype(np.int8)
    ny, nx = radius.shape
    mask_file = folder / "good.h5"
    with h5py.File(mask_file, "w") as f:
        f["data"] = good
    if spec["run"].endswith(".npy"):
        stack = np.load(spec["run"], mmap_mode="r")
        read = lambda i: np.asarray(stack[i], dtype=np.float32)  # noqa: E731
    else:
        handle = h5py.File(spec["run"], "r")
        dataset = handle["/entry/data/data"]
        read = lambda i: dataset[i].astype(np.float32)  # noqa: E731
    results, times = {}, []
    for k, s in enumerate(spec["settings"]):
        finder = Peakfinder8PeakDetection(
            radius_pixel_map=radius,
            layout_info={"asic_nx": nx, "asic_ny": ny, "nasics_x": 1, "nasics_y": 1},
            crystallography_parameters={
                "max_num_peaks": 100000, "adc_threshold": s["adc"], "minimum_snr": s["snr"],
                "min_pixel_count": s["min_pix"], "max_pixel_count": 400, "local_bg_radius": 3, "min_res": 0,
                "max_res": 100000, "bad_pixel_map_filename": str(mask_file), "bad_pixel_map_hdf5_path": "/data",
                "fast_mode": False})
        spent = []
        for f in spec["frames"]:
            data = read(f)
            data[good == 0] = 0
            t0 = time.perf_counter()
            peaks = finder.find_peaks(data=data)
            spent.append(time.perf_counter() - t0)
            results[f"s{k}_f{f}"] = np.c_[peaks["ss"], peaks["fs"]].astype(np.float64).reshape(-1, 2)
        times.append(float(np.median(spent[1:] if len(spent) > 1 else spent)))
    np.savez(spec["out"], times=np.array(times), **results)


if __name__ == "__main__":
    main(sys.argv[1])
