"""Helpers shared by the benchmark scripts: timing, and the peers set up the same way for every comparison."""
from __future__ import annotations

import time

import numpy as np


def median_time(func, repeats: int):
    """(median seconds of ``repeats`` calls of ``func()`` after one warm-up call, the last result)."""
    result = func()  # warm-up: numba compilation, OpenCL kernels, caches
    spent = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = func()
        spent.append(time.perf_counter() - start)
    return float(np.median(spent)), result


def pyfai_peak_finder(shape, poni, mask, polarization: float = 0.99):
    """pyFAI's ``OCL_PeakFinder`` (the engine behind sparsify-Bragg and peakfinder) on the first CPU OpenCL
    device (PoCL here), for frames of ``shape`` with braggsieve's ``poni`` and bool ``mask``: 1000 bins in q_nm^-1
    without pixel splitting, as braggsieve's benchmarks use.  Returns (engine, keyword arguments giving the
    solid-angle and polarisation arrays to pass to its sparsify/peakfinder calls)."""
    import pyFAI.detectors
    import pyopencl as cl
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator
    from pyFAI.opencl.peak_finder import OCL_PeakFinder

    det = pyFAI.detectors.Detector(*poni.detector.pixel_size, max_shape=shape)
    ai = AzimuthalIntegrator(dist=poni.dist, poni1=poni.poni1, poni2=poni.poni2, rot1=poni.rot1, rot2=poni.rot2,
                             rot3=poni.rot3, wavelength=poni.wavelength, detector=det)
    mask = np.asarray(mask).astype(np.int8)
    res = ai.setup_sparse_integrator(shape, 1000, mask=mask, unit="q_nm^-1", split="no", algo="CSR", scale=False)
    radius = ai.array_from_unit(shape, "center", "q_nm^-1", scale=False)
    devices = next(p.get_devices(device_type=cl.device_type.CPU) for p in cl.get_platforms()
                   if p.get_devices(device_type=cl.device_type.CPU))
    engine = OCL_PeakFinder(res.lut, image_size=shape[0] * shape[1], bin_centers=res.bin_centers, radius=radius,
                            mask=mask, ctx=cl.Context(devices[:1]), unit="q_nm^-1")
    corrections = {"solidangle": ai.solidAngleArray(shape).astype(np.float32),
                   "polarization": ai.polarization(shape, polarization).astype(np.float32)}
    return engine, corrections
