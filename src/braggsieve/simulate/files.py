"""Write a simulated run: NXmx-like frames, a PONI file and a ground-truth file.

``run.h5`` (``output``), NeXus/NXmx-like:

* ``/entry/data/data`` (frames, ny, nx) in the detector's raw dtype, one frame per chunk, bitshuffle-LZ4
  (hdf5plugin); gap pixels hold the detector's marker;
* ``/entry/instrument/detector``: ``description`` (registry name), ``distance`` (m), ``x_pixel_size`` and
  ``y_pixel_size`` (m), ``beam_center_x``/``beam_center_y`` (pixels from the outer corner, x = fast),
  ``saturation_value`` (count cut-off), ``pixel_mask`` uint32 (NXmx bits: 0 gap, 1 dead, 2 under-responding,
  3 over-responding, 4 noisy or hot, 8 other defects: offset, bimodal, stuck -- the planted defects only with
  ``mask_bad_pixels``); ``/entry/instrument/beam/incident_wavelength`` (Angstrom);
* ``/entry/process``: provenance (program, version, parameters, geometry, times).

``run.poni``: the geometry (pyFAI PONI v2).

``run_truth.h5``, everything the simulation knows (``/truth``):

* ``frames/``: ``hit`` bool (n,), ``background_scale``, ``crystal_scale`` and ``spot_scale`` (spot widths
  relative to ``spot_width``) float64 (n,), ``orientation``
  (n, 3, 3), ``reflection_ptr`` and ``zinger_ptr`` int64 (n + 1,) (frame i owns rows ``ptr[i]:ptr[i+1]``);
* ``reflections/``: one column per field (``frame``, ``h``, ``k``, ``l``, ``row``, ``col`` -- fractional raw
  pixel of the spot centre, pixel centres at integer indices --, ``photons`` -- expected photons of the whole
  spot --, ``partiality``, ``d`` in Angstrom, ``panel``);
* ``zingers/``: ``frame``, ``row``, ``col``, ``photons`` (expected photons added to that single pixel);
* ``background`` float32 (ny, nx): noiseless expected background photons per pixel (multiply by the frame's
  ``background_scale``);
* ``bad_pixels``: uint8 (ny, nx) type codes, attribute ``legend`` (JSON name -> code);
* ``detector/``: ``gap`` bool, ``response`` (flat-field efficiency), ``gain`` (ADU/photon), ``pedestal`` (ADU),
  ``dark_variance`` (ADU^2) -- usable as --dark / --dark-variance for integrating detectors.

All three files are renamed into place only when complete (braggsieve.io.atomic).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
from tqdm import tqdm

from ..geometry.poni import write_poni
from ..io.atomic import atomic_outputs
from ..io.provenance import Provenance, write_provenance
from .params import DEFECT_TYPES
from .ssx import REFLECTION_DTYPE, ZINGER_DTYPE, SsxSimulator

NXMX_BITS = {"gap": 0, "dead": 1, "under": 2, "over": 3, "noisy": 4, "hot": 4, "offset": 8, "bimodal": 8,
             "stuck": 8}


@dataclass(frozen=True)
class RunFiles:
    """Paths of a simulated run."""

    data: Path
    poni: Path
    truth: Path


def run_files(output: str | os.PathLike) -> RunFiles:
    """``run.h5`` -> run.h5, run.poni, run_truth.h5 (next to each other)."""
    data = Path(output)
    stem = data.name[:-3] if data.name.endswith(".h5") else data.stem
    return RunFiles(data, data.with_name(stem + ".poni"), data.with_name(stem + "_truth.h5"))


def pixel_mask(simulator: SsxSimulator, mask_bad_pixels: bool) -> np.ndarray:
    """NXmx pixel_mask uint32 (ny, nx): gaps, and the planted defects if ``mask_bad_pixels``."""
    mask = simulator.gap.astype(np.uint32) << NXMX_BITS["gap"]
    if mask_bad_pixels:
        for name, code in DEFECT_TYPES.items():
            mask[simulator.bad_types == code] |= np.uint32(1 << NXMX_BITS[name])
    return mask


def _beam(simulator: SsxSimulator) -> tuple[float, float, float]:
    """(beam_center_x, beam_center_y) in pixels and the sample-to-beam-centre distance in metres."""
    plane = simulator.projection.plane_position(np.array([[0.0, 0.0, 1.0]]))[0]
    pixel = simulator.poni.detector.pixel_size
    offset = np.array([plane[0] - simulator.poni.poni1, plane[1] - simulator.poni.poni2, simulator.poni.dist])
    return float(plane[1] / pixel[1]), float(plane[0] / pixel[0]), float(np.linalg.norm(offset))


def _scalar(group: h5py.Group, name: str, value, units: str | None = None) -> None:
    dataset = group.create_dataset(name, data=value)
    if units:
        dataset.attrs["units"] = units


def _nx_group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    group = parent.create_group(name, track_order=True)
    group.attrs["NX_class"] = nx_class
    return group


def _write_metadata(handle: h5py.File, simulator: SsxSimulator, mask_bad_pixels: bool) -> None:
    detector = simulator.poni.detector
    instrument = _nx_group(handle["entry"], "instrument", "NXinstrument")
    beam = _nx_group(instrument, "beam", "NXbeam")
    _scalar(beam, "incident_wavelength", simulator.wavelength_a, "angstrom")
    group = _nx_group(instrument, "detector", "NXdetector")
    group.create_dataset("description", data=detector.name)
    centre_x, centre_y, distance = _beam(simulator)
    _scalar(group, "distance", distance, "m")
    _scalar(group, "x_pixel_size", detector.pixel_size[1], "m")
    _scalar(group, "y_pixel_size", detector.pixel_size[0], "m")
    _scalar(group, "beam_center_x", centre_x, "pixel")
    _scalar(group, "beam_center_y", centre_y, "pixel")
    dtype = simulator.dtype
    if dtype.kind in "iu":
        cutoff = np.iinfo(dtype).max - (1 if dtype.kind == "u" else 0)
        _scalar(group, "saturation_value", np.array(cutoff, dtype))
    group.create_dataset("pixel_mask", data=pixel_mask(simulator, mask_bad_pixels), compression="gzip")
    group.create_dataset("sensor_material", data="Si")
    sample = _nx_group(handle["entry"], "sample", "NXsample")
    sample.create_dataset("name", data="simulated crystals (braggsieve simulate)")


# Per-frame truth datasets: name, shape after the frame axis, dtype (the pointers have nframes + 1 rows).
_PER_FRAME = (("hit", (), bool), ("background_scale", (), np.float64), ("crystal_scale", (), np.float64),
              ("spot_scale", (), np.float64), ("orientation", (3, 3), np.float64))


def _columns(group: h5py.Group, dtype: np.dtype) -> dict[str, h5py.Dataset]:
    return {name: group.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype[name], chunks=(65536,),
                                       compression="gzip", compression_opts=1) for name in dtype.names}


def _append(columns: dict[str, h5py.Dataset], table: np.ndarray) -> None:
    for name, dataset in columns.items():
        start = dataset.shape[0]
        dataset.resize((start + table.size,))
        dataset[start:] = table[name]


def _write_static_truth(truth: h5py.Group, simulator: SsxSimulator) -> None:
    options = {"compression": "gzip", "compression_opts": 1}
    truth.create_dataset("background", data=simulator.background, **options).attrs["units"] = "photons"
    bad = truth.create_dataset("bad_pixels", data=simulator.bad_types, **options)
    bad.attrs["legend"] = json.dumps({"good": 0, **DEFECT_TYPES})
    detector = truth.create_group("detector")
    detector.create_dataset("gap", data=simulator.gap, **options)
    detector.create_dataset("response", data=simulator.response.response, **options)
    detector.create_dataset("gain", data=simulator.response.gain, **options).attrs["units"] = "ADU/photon"
    detector.create_dataset("pedestal", data=simulator.response.pedestal, **options).attrs["units"] = "ADU"
    detector.create_dataset("dark_variance", data=simulator.response.dark_variance(),
                            **options).attrs["units"] = "ADU^2"


def write_run(simulator: SsxSimulator, output: str | os.PathLike, nframes: int, provenance: Provenance, *,
              batch_size: int = 4, mask_bad_pixels: bool = True, progress: bool | None = None) -> RunFiles:
    """Simulate ``nframes`` frames and write them with their PONI and truth files (see module docstring).

    Frames are generated and written ``batch_size`` at a time, and the truth is appended per batch, so memory
    stays bounded for any run length.
    ``progress``: tqdm bar on stderr (None: only on a terminal).
    """
    files = run_files(output)
    ny, nx = simulator.shape
    with atomic_outputs([files.data, files.poni, files.truth]) as (data_tmp, poni_tmp, truth_tmp):
        write_poni(simulator.poni, poni_tmp, comment="braggsieve simulate")
        with h5py.File(data_tmp, "w", track_order=True) as data_file, \
                h5py.File(truth_tmp, "w", track_order=True) as truth_file:
            data_file.attrs["creator"] = "braggsieve simulate"
            entry = _nx_group(data_file, "entry", "NXentry")
            entry.create_dataset("definition", data="NXmx")
            nxdata = _nx_group(entry, "data", "NXdata")
            nxdata.attrs["signal"] = "data"
            frames = nxdata.create_dataset("data", shape=(nframes, ny, nx), dtype=simulator.dtype,
                                           chunks=(1, ny, nx), track_times=False, **hdf5plugin.Bitshuffle())
            _write_metadata(data_file, simulator, mask_bad_pixels)

            truth = truth_file.create_group("truth")
            _write_static_truth(truth, simulator)
            per_frame = truth.create_group("frames")
            frame_sets = {name: per_frame.create_dataset(name, shape=(nframes, *shape), dtype=dtype)
                          for name, shape, dtype in _PER_FRAME}
            for name in ("reflection_ptr", "zinger_ptr"):
                frame_sets[name] = per_frame.create_dataset(name, shape=(nframes + 1,), dtype=np.int64)
            reflections = _columns(truth.create_group("reflections"), REFLECTION_DTYPE)
            zingers = _columns(truth.create_group("zingers"), ZINGER_DTYPE)
            buffer = np.empty((min(batch_size, nframes), ny, nx), simulator.dtype)
            totals = np.zeros(2, np.int64)  # reflections and zingers written so far
            frame_sets["reflection_ptr"][0] = frame_sets["zinger_ptr"][0] = 0
            with tqdm(total=nframes, unit="frame", desc="simulate", disable=None if progress is None
                      else not progress) as bar:
                for start in range(0, nframes, batch_size):
                    stop = min(start + batch_size, nframes)
                    raw, truths = simulator.frames(start, stop, buffer)
                    frames[start:stop] = raw
                    for name in ("hit", "background_scale", "crystal_scale", "spot_scale", "orientation"):
                        frame_sets[name][start:stop] = np.array([getattr(t, name) for t in truths])
                    counts = np.array([[t.reflections.size, t.zingers.size] for t in truths], np.int64)
                    ends = totals + np.cumsum(counts, axis=0)
                    frame_sets["reflection_ptr"][start + 1:stop + 1] = ends[:, 0]
                    frame_sets["zinger_ptr"][start + 1:stop + 1] = ends[:, 1]
                    totals = ends[-1]
                    _append(reflections, np.concatenate([t.reflections for t in truths]))
                    _append(zingers, np.concatenate([t.zingers for t in truths]))
                    bar.update(stop - start)
            truth.attrs["seed"] = simulator.seed
            done = provenance.finish()
            write_provenance(_nx_group(entry, "process", "NXprocess"), done)
            write_provenance(truth.create_group("process"), done)
    return files
