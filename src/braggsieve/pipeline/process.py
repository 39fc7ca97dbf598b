"""Whole runs in one pass: mask, sigma-clipped background, peaks, veto and sparse frames, part by part.

The selected frames of the inputs are cut into parts of ``part_size`` consecutive frames.  Each part is one
task (in this process, or on a Dask cluster: braggsieve.pipeline.distributed) that sigma-clips every frame
once (``Engine.process``) and writes ``parts/part_NNNNN.{h5,cxi,json}`` (braggsieve.pipeline.parts).  When all
parts are there, the run's own files are written, all together and atomically::

    OUTDIR/run.json          the run's fingerprint (inputs, frame range, geometry, corrections, parameters);
                             a folder holding another run's parts is refused unless restart is asked
    OUTDIR/parts/            the parts (kept: the master files point into them)
    OUTDIR/run.cxi           master CXI: peaks (/entry_1/result_1) and images (/entry_1/data_1/data) of every
                             frame as HDF5 virtual datasets over the parts, in input order
    OUTDIR/run_sparse.h5     master sparse-frames file: index, intensity, background_avg/std as virtual
                             datasets over the parts, frame_ptr and sources joined (densify reads it)
    OUTDIR/run.geom          CrystFEL geometry (peak_list = /entry_1/result_1)
    OUTDIR/run.lst           the hits (frames with >= min_peaks peaks) as 'run.cxi //ROW'
    OUTDIR/run_frames.csv    frame,file,index,npeaks,hit
    OUTDIR/run_veto.png      peaks-per-frame histogram and veto curve
    OUTDIR/summary.json      frames, hits, peaks, timings, checks (missing / duplicated frames) and, per frame,
                             position, source, index, npeaks, hit, kept, input_crc32, result_crc32

The veto threshold is applied only when the run's files are written, so a run resumed with another
``--min-peaks`` reuses every part.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..errors import ParameterError
from ..io.frames import FrameIds, FrameRange, open_frames
from ..params import as_dict, option
from .parts import PART_FIELDS, PartPaths, engine_for, read_record, write_part
from .veto import VetoParams, is_hit, plot_veto, write_frame_table, write_hit_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessParams:
    """Whole-run processing (parts and batches)."""

    part_size: int = option(500, "frames per part: each part is one task, written as its own files "
                            "(parts/part_NNNNN.*); a resumed run redoes at most the parts that were unfinished",
                            metavar="N")
    batch_size: int = option(8, "frames processed together inside a part; memory per task grows by about 40 "
                             "bytes per pixel per frame", metavar="N")

    def __post_init__(self):
        if self.part_size < 1 or self.batch_size < 1:
            raise ParameterError(f"--part-size and --batch-size must be at least 1, got {self.part_size} and "
                                 f"{self.batch_size}")


@dataclass(frozen=True)
class SourceSpec:
    """How to open the run's frames anywhere (a Dask worker opens its own): the input paths (absolute),
    the HDF5 dataset path and the frame range over all inputs taken together."""

    paths: tuple[str, ...]
    h5path: str
    frames: FrameRange | None = None

    @classmethod
    def of(cls, source) -> "SourceSpec":
        """The spec of an open io.frames.FrameSource."""
        return cls(tuple(os.path.abspath(p) for p in source.sources), source.h5path, source.frame_range)

    def open(self, frames: FrameRange | None = None):
        """A FrameSource over ``frames`` (default: the run's frame range)."""
        return open_frames(list(self.paths), self.h5path, frames if frames is not None else self.frames)


@dataclass(frozen=True)
class Part:
    """Part ``number``: the selected frames at positions ``start .. stop - 1``, which are the frames
    ``frames`` of the inputs taken together."""

    number: int
    start: int
    stop: int
    frames: FrameRange


def plan_parts(source, part_size: int) -> list[Part]:
    """Consecutive parts of ``part_size`` frames (the last may be shorter) covering the frames of ``source``
    (io.frames.FrameSource)."""
    selection = (source.frame_range or FrameRange()).indices(sum(source.frames_per_source()))
    parts = []
    for number, start in enumerate(range(0, len(selection), part_size)):
        chunk = selection[start:start + part_size]
        last = chunk[-1] + (1 if chunk.step > 0 else -1)
        parts.append(Part(number, start, start + len(chunk),
                          FrameRange(chunk.start, last if last >= 0 else None, chunk.step)))
    return parts


@dataclass(frozen=True)
class RunOutputs:
    """The files of a run in ``folder`` (see the module docstring)."""

    folder: Path

    parts = property(lambda self: self.folder / "parts")
    fingerprint = property(lambda self: self.folder / "run.json")
    cxi = property(lambda self: self.folder / "run.cxi")
    sparse = property(lambda self: self.folder / "run_sparse.h5")
    geom = property(lambda self: self.folder / "run.geom")
    hit_list = property(lambda self: self.folder / "run.lst")
    table = property(lambda self: self.folder / "run_frames.csv")
    plot = property(lambda self: self.folder / "run_veto.png")
    summary = property(lambda self: self.folder / "summary.json")

    def part(self, number: int) -> PartPaths:
        return PartPaths(self.parts, number)


def run_fingerprint(spec: SourceSpec, setup, params: ProcessParams, nframes: int) -> dict[str, Any]:
    """What makes a part's content: inputs, frame range, geometry, corrections (mask, norm, dark), every
    parameter but the veto and the batch size, and the part size; ``digest`` hashes it."""
    corrections = setup.corrections
    crc = 0
    for array in (corrections.mask, corrections.norm, corrections.dark, corrections.dark_variance):
        if array is not None:
            crc = zlib.crc32(np.ascontiguousarray(array), crc)
    described = {"inputs": list(spec.paths), "h5path": spec.h5path, "frames": str(spec.frames or ""),
                 "nframes": nframes, "part_size": params.part_size, "geometry": setup.poni.as_dict(),
                 "corrections_crc32": crc, "device": setup.device,
                 "parameters": {cls.__name__: as_dict(value) for cls, value in setup.params.items()
                                if cls not in (VetoParams, ProcessParams)}}
    described = json.loads(json.dumps(described, default=str))
    return {"digest": hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest(), **described}


def _check_fingerprint(outputs: RunOutputs, fingerprint: dict[str, Any], restart: bool) -> None:
    """Refuse a folder holding another run's parts (unless ``restart``: they are deleted)."""
    from ..io.atomic import atomic_output

    if outputs.fingerprint.exists() and not restart:
        try:
            old = json.loads(outputs.fingerprint.read_text()).get("digest")
        except (OSError, ValueError):
            old = None
        if old != fingerprint["digest"]:
            raise ParameterError(f"{outputs.folder} holds the parts of a run with other inputs, geometry or "
                                 f"parameters (see its run.json); choose another output folder or give "
                                 f"--restart to delete them")
    elif outputs.parts.exists() and (restart or any(outputs.parts.iterdir())):
        if not restart:
            raise ParameterError(f"{outputs.parts} exists without run.json; give --restart to delete it")
        shutil.rmtree(outputs.parts)
    outputs.parts.mkdir(parents=True, exist_ok=True)
    stale = list(outputs.parts.glob("*.part-*"))  # temporaries of tasks killed before they could clean up
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("%s: removed %d unfinished temporary file(s) of an interrupted run", outputs.parts, len(stale))
    with atomic_output(outputs.fingerprint) as tmp:
        tmp.write_text(json.dumps(fingerprint, indent=1))


def process_part(spec: SourceSpec, setup, part: Part, folder: str | os.PathLike, *, batch_size: int, images: str,
                 argv=None, threads: int | None = None, on_batch=None) -> dict[str, Any]:
    """Open the part's frames, process them and write ``part_NNNNN.*`` in ``folder``/parts; the record.

    Runs anywhere (a Dask worker): ``threads`` sets numba's thread count in this process first."""
    from ..io.cxi import image_refs

    if threads:
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    source = spec.open(part.frames)

    def batches():
        buffers = engine_for(setup).batch_buffers(batch_size, source.dtype)  # pinned on a GPU: no staging copy
        for frames, ids in source.iter_batches(batch_size, buffers=buffers):
            ids = FrameIds(source=ids.source, index=ids.index, position=ids.position + part.start)
            yield frames, ids, image_refs(source, ids) if images == "link" else None

    try:
        return write_part(RunOutputs(Path(folder)).part(part.number), batches(), setup, shape=source.shape,
                          dtype=source.dtype, sources=list(source.sources), images=images,
                          provenance=setup.provenance(source, argv=argv),
                          extra={"start": part.start, "stop": part.stop}, on_batch=on_batch)
    finally:
        source.close()


def run_process(source, setup, outdir: str | os.PathLike, params: ProcessParams = ProcessParams(),
                veto: VetoParams = VetoParams(), *, scheduler: str | None = None, workers: int | str | None = None,
                restart: bool = False, plots: bool = True, progress: bool | None = None,
                argv=None) -> dict[str, Any]:
    """Process every frame of ``source`` (io.frames.FrameSource) with ``setup`` (pipeline.setup.RunSetup, its
    params holding PickParams and PeakParams) into ``outdir``; returns the run summary (also summary.json).

    ``scheduler``: address of a Dask scheduler to run the parts on; else ``workers``: a LocalCluster of that
    many worker processes (2 or more), "auto" (one per 4 cores when the machine has 8 or more, else none) or
    None/0/1 (everything in this process).
    """
    from tqdm import tqdm

    from ..io.cxi import image_refs

    started = time.perf_counter()
    spec = SourceSpec.of(source)
    outputs = RunOutputs(Path(outdir))
    nframes = source.nframes
    images = "link" if image_refs(source, source.frame_ids(0, 1)) is not None else "copy"
    parts = plan_parts(source, params.part_size)
    _check_fingerprint(outputs, run_fingerprint(spec, setup, params, nframes), restart)
    todo = [part for part in parts if not outputs.part(part.number).is_complete()]
    if len(todo) < len(parts):
        log.warning("%s: %d of %d part(s) already complete, skipped", outdir, len(parts) - len(todo), len(parts))
    bar = tqdm(total=sum(p.stop - p.start for p in todo), unit="frame", desc="process", dynamic_ncols=True,
               disable=None if progress is None else not progress)
    common = {"batch_size": params.batch_size, "images": images, "argv": argv}
    try:
        from .distributed import local_workers, run_on_dask

        nworkers = local_workers(workers) if scheduler is None else 0
        if todo and (scheduler is not None or nworkers >= 2):
            for record in run_on_dask(process_part, spec, setup, todo, str(outputs.folder), common,
                                      scheduler=scheduler, workers=nworkers):
                bar.update(len(record["frames"]["position"]))
        else:
            for part in todo:
                process_part(spec, setup, part, outputs.folder, on_batch=lambda ids, _: bar.update(len(ids)),
                             **common)
    finally:
        bar.close()
    summary = finish_run(outputs, parts, setup, veto, source, plots=plots, argv=argv)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    summary["parts_resumed"] = len(parts) - len(todo)
    summary["frames_per_second"] = round(sum(p.stop - p.start for p in todo) / max(summary["seconds"], 1e-9), 3)
    from ..io.atomic import atomic_output

    with atomic_output(outputs.summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return summary


# -- the run's own files -------------------------------------------------------------------------------------------
def _join_records(outputs: RunOutputs, parts: list[Part], nframes: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per-frame columns of all parts, in part order, checked: every frame exactly once."""
    columns: dict[str, list] = {name: [] for name in PART_FIELDS}
    sources: list[str] = []
    for part in parts:
        record = read_record(outputs.part(part.number).record)
        sources = record["sources"]
        for name in PART_FIELDS:
            columns[name].extend(record["frames"][name])
    joined = {name: np.asarray(values, dtype=np.int64) for name, values in columns.items()}
    positions = joined["position"]
    missing = nframes - len(np.unique(positions))
    duplicated = len(positions) - len(np.unique(positions))
    if missing or duplicated or not np.array_equal(positions, np.arange(nframes)):
        raise ParameterError(f"{outputs.parts}: the parts hold {len(positions)} frame(s) for {nframes} "
                             f"({missing} missing, {duplicated} duplicated); rerun with --restart")
    return joined, sources


def _shapes(path: Path, names: list[str]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    with h5py.File(path, "r") as handle:
        return {name: (handle[name].shape, handle[name].dtype) for name in names if name in handle}


def _concatenate(group: h5py.Group, name: str, pieces: list[tuple[str, str, tuple[int, ...]]], dtype,
                 fill=0) -> None:
    """A virtual dataset ``name`` joining ``pieces`` ((file relative to the master, dataset, shape)) along
    axis 0; trailing axes take the largest size, the rest is ``fill``."""
    rows = sum(shape[0] for _, _, shape in pieces)
    trailing = tuple(max(shape[k] for _, _, shape in pieces) for k in range(1, len(pieces[0][2])))
    layout = h5py.VirtualLayout(shape=(rows, *trailing), dtype=dtype)
    row = 0
    for file, dataset, shape in pieces:
        if shape[0]:
            source = h5py.VirtualSource(file, dataset, shape=shape, dtype=dtype)
            layout[(slice(row, row + shape[0]), *(slice(0, s) for s in shape[1:]))] = source
        row += shape[0]
    group.create_virtual_dataset(name, layout, fillvalue=fill)


def _write_master_cxi(path: Path, outputs: RunOutputs, parts: list[Part], provenance, mask: np.ndarray) -> None:
    """The run's CXI file: the parts' peak arrays and images joined (virtual datasets), and the bad-pixel
    ``mask`` (bool (ny, nx), True = bad) at io.cxi.MASK, where the run's .geom tells CrystFEL to read it."""
    from ..io.cxi import CXI_NAMES, DATA, MASK, RESULT
    from ..io.provenance import write_provenance

    names = [f"{RESULT}/nPeaks"] + [f"{RESULT}/{n}" for n in CXI_NAMES.values()] + [DATA]
    shapes = [_shapes(outputs.part(p.number).cxi, names) for p in parts]
    with h5py.File(path, "w") as handle:
        handle.attrs["default"] = "entry_1"
        handle["cxi_version"] = 160
        handle.create_group("entry_1").attrs["NX_class"] = "NXentry"
        for name in names:
            if name not in shapes[0]:
                continue
            group = handle.require_group(name.rsplit("/", 1)[0])
            group.attrs["NX_class"] = "NXdata"
            group.attrs["signal"] = "nPeaks" if name.startswith(RESULT) else "data"
            pieces = [(f"parts/{outputs.part(p.number).cxi.name}", name, s[name][0]) for p, s in zip(parts, shapes)]
            _concatenate(group, name.rsplit("/", 1)[1], pieces, shapes[0][name][1])
        handle[f"{RESULT}/peakResolution"].attrs["units"] = "angstrom"
        handle.create_dataset(MASK, data=np.asarray(mask, bool).astype(np.uint8), compression="gzip",
                              compression_opts=4, shuffle=True)
        write_provenance(handle.create_group("entry_1/process_1"), provenance.finish())


def _write_master_sparse(path: Path, outputs: RunOutputs, parts: list[Part], columns: dict[str, np.ndarray],
                         sources: list[str]) -> None:
    from ..io.sparse import ENTRY, NXDATA

    data_path = f"{ENTRY}/{NXDATA}"
    joined = ("index", "intensity", "background_avg", "background_std")
    files = [outputs.part(p.number).sparse for p in parts]
    shapes = [_shapes(f, [f"{data_path}/{n}" for n in joined]) for f in files]
    frame_ptr = np.zeros(len(columns["kept"]) + 1, np.int64)
    np.cumsum(columns["kept"], out=frame_ptr[1:])
    with h5py.File(files[0], "r") as first, h5py.File(path, "w") as handle:
        handle.attrs.update(dict(first.attrs))
        entry = handle.create_group(ENTRY)
        entry.attrs.update(dict(first[ENTRY].attrs))
        for name in first[ENTRY]:
            if name not in (NXDATA, "sources"):
                first.copy(first[f"{ENTRY}/{name}"], entry, name=name)
        data = entry.create_group(NXDATA)
        data.attrs.update(dict(first[data_path].attrs))
        for name in first[data_path]:
            if name not in (*joined, "frame_ptr", "errors"):
                first.copy(first[f"{data_path}/{name}"], data, name=name)
        for name in joined:
            key = f"{data_path}/{name}"
            pieces = [(f"parts/{f.name}", key, s[key][0]) for f, s in zip(files, shapes)]
            _concatenate(data, name, pieces, shapes[0][key][1])
            data[name].attrs.update(dict(first[key].attrs))
        data["errors"] = data["background_std"]
        data.create_dataset("frame_ptr", data=frame_ptr.astype(np.uint32 if frame_ptr[-1] < 2**32 else np.uint64))
        group = entry.create_group("sources")
        group.attrs["NX_class"] = "NXcollection"
        group.create_dataset("files", data=np.array(sources, dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("file_number", data=columns["source"].astype(np.int32))
        group.create_dataset("frame_index", data=columns["index"])


def finish_run(outputs: RunOutputs, parts: list[Part], setup, veto: VetoParams, source, *, plots: bool = True,
               argv=None) -> dict[str, Any]:
    """Join the complete parts into the run's files (written together, atomically); the summary dict."""
    from ..geometry.crystfel import write_geom
    from ..io.atomic import atomic_outputs
    from ..io.cxi import MASK as CXI_MASK

    nframes = sum(p.stop - p.start for p in parts)
    columns, sources = _join_records(outputs, parts, nframes)
    npeaks = columns["npeaks"]
    hit = is_hit(npeaks, veto)
    files = [outputs.cxi, outputs.sparse, outputs.geom, outputs.hit_list, outputs.table]
    files += [outputs.plot] if plots else []
    provenance = setup.provenance(source, argv=argv)
    with atomic_outputs(files) as temps:
        tmp = dict(zip(files, temps))
        _write_master_cxi(tmp[outputs.cxi], outputs, parts, provenance, setup.corrections.mask)
        _write_master_sparse(tmp[outputs.sparse], outputs, parts, columns, sources)
        write_geom(setup.poni, tmp[outputs.geom], adu_per_photon=setup.correction.gain, mask=CXI_MASK)
        nhits = write_hit_list(tmp[outputs.hit_list], outputs.cxi.name, hit)
        write_frame_table(tmp[outputs.table], sources, columns["source"], columns["index"], npeaks, hit)
        if plots:
            plot_veto(tmp[outputs.plot], npeaks, veto, title=f"{outputs.folder.name}: {nframes} frames, {nhits} hits")
    kept = columns["kept"]
    npixels = int(np.isfinite(setup.binning.pixel_radius).sum())
    log.info("%d frames, %d peaks, %d hits (>= %d peaks)", nframes, int(npeaks.sum()), nhits, veto.min_peaks)
    return {"program": "braggsieve process", "version": __version__, "output": str(outputs.folder),
            "frames": nframes, "hits": nhits, "hit_rate": round(nhits / max(nframes, 1), 6),
            "peaks": int(npeaks.sum()), "min_peaks": veto.min_peaks, "parts": len(parts),
            "pixels_kept_per_frame": round(float(kept.mean()) if nframes else 0.0, 2),
            "kept_fraction": round(float(kept.mean()) / max(npixels, 1) if nframes else 0.0, 6),
            "checks": {"frames_expected": nframes, "frames_written": int(len(columns["position"])),
                       "missing": 0, "duplicated": 0},
            "files": {"cxi": outputs.cxi.name, "sparse": outputs.sparse.name, "geom": outputs.geom.name,
                      "hit_list": outputs.hit_list.name, "table": outputs.table.name,
                      "plot": outputs.plot.name if plots else None, "parts": outputs.parts.name},
            "sources": sources,
            "per_frame": {**{name: columns[name].tolist() for name in PART_FIELDS}, "hit": hit.astype(int).tolist()}}
