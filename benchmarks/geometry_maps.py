"""Per-pixel geometry maps: braggsieve against pyFAI on one tilted Eiger 4M geometry (4.49 Mpixel).

    .venv/bin/python benchmarks/geometry_maps.py [--detector eiger4m] [--repeats 5]

For each map (q centre, q half-width for bbox splitting, solid angle, polarisation) prints the median wall time
of braggsieve and of pyFAI (a fresh AzimuthalIntegrator per repeat, so that pyFAI's array cache does not
answer), their ratio, and the largest relative difference between the two maps.  One warm-up run each first
(numba compilation, pyFAI's imports).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import pyFAI
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from braggsieve.geometry import Poni, get_detector, polarization, radial_delta, radial_map, solid_angle

GEOMETRY = dict(dist=0.2, poni1=0.081, poni2=0.079, rot1=0.03, rot2=-0.02, rot3=0.1, wavelength=0.9763e-10)

MAPS = {
    "q centre": (lambda p: radial_map(p, "q_nm^-1"), lambda ai: ai.center_array(unit="q_nm^-1")),
    "q delta (bbox)": (lambda p: radial_delta(p, "q_nm^-1"),
                       lambda ai: ai.array_from_unit(typ="delta", unit="q_nm^-1")),
    "solid angle": (solid_angle, lambda ai: ai.solidAngleArray()),
    "polarisation 0.99": (lambda p: polarization(p, 0.99), lambda ai: ai.polarization(factor=0.99)),
}


def _median_time(function, repeats):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", default="eiger4m")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    detector = get_detector(args.detector)
    poni = Poni(**GEOMETRY, detector=detector)
    pyfai_detector = pyFAI.detector_factory(detector.pyfai_name)
    print(f"{detector.name} {detector.shape[0]}x{detector.shape[1]}, pyFAI {pyFAI.version}, "
          f"load average {os.getloadavg()[0]:.2f}, median of {args.repeats} after warm-up")
    print(f"{'map':20s} {'braggsieve s':>13s} {'pyFAI s':>9s} {'ratio':>7s} {'max rel diff':>13s}")
    for name, (ours, theirs) in MAPS.items():
        ours_time, ours_map = _median_time(lambda: ours(poni), args.repeats)
        theirs_time, theirs_map = _median_time(
            lambda: theirs(AzimuthalIntegrator(detector=pyfai_detector, **GEOMETRY)), args.repeats)
        difference = np.nanmax(np.abs(ours_map - theirs_map) / np.abs(theirs_map))
        print(f"{name:20s} {ours_time:13.3f} {theirs_time:9.3f} {theirs_time / ours_time:6.1f}x "
              f"{difference:13.2e}")


if __name__ == "__main__":
    main()
