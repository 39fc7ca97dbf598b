"""The sparsify and densify runs.

sparsify: frames -> engine (cpu or cuda: preprocess, sigma-clipped background, picked pixels) -> one
sparse-frames file (braggsieve.io.sparse), batch by batch, so memory is bounded by the batch size whatever the
run length.

densify: sparse-frames file (braggsieve's or pyFAI's) -> dense frames with background noise -> Eiger-like
master + data files (XDS/DIALS), an HDF5 stack, or one CBF per frame.
"""
from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.densify import Densifier
from ..engine.device import select_engine
from ..engine.pick import PickParams, quantise_intensities
from ..errors import ParameterError
from ..io.eiger_writer import EigerWriter, write_cbf_frames
from ..io.sparse import SparseFile, SparseWriter

log = logging.getLogger(__name__)
FORMATS = ("eiger", "cbf")


@dataclass(frozen=True)
class SparsifySummary:
    """What a sparsify run wrote: pixels kept per frame (int64 (nframes,)), the file and its size in bytes."""

    kept: np.ndarray
    path: Path
    nbytes: int
    npixels: int  # valid (unmasked) pixels per frame

    @property
    def kept_fraction(self) -> np.ndarray:
        return self.kept / max(self.npixels, 1)


def dense_normalization(corrections) -> np.ndarray | None:
    """float32 ``(ny, nx)`` turning the normalised background back into raw detector units (norm x gain), or
    None when it is 1 everywhere (then FabIO and braggsieve densify without it)."""
    norm = np.asarray(corrections.norm, dtype=np.float32) * np.asarray(corrections.gain, dtype=np.float32)
    norm = np.where(corrections.mask, np.float32(1), norm).astype(np.float32)
    return None if np.all(norm == 1) else norm



def sparse_dtype(dtype) -> np.dtype:
    """dtype of the stored intensities for frames of ``dtype``: the input's own, 64-bit integers as 32-bit (as
    pyFAI, and within FabIO's reach)."""
    dtype = np.dtype(dtype)
    if dtype.itemsize == 8 and dtype.kind in "iu":
        return np.dtype(np.int32 if dtype.kind == "i" else np.uint32)
    return dtype


def open_sparse_writer(path: str | os.PathLike, setup, pick: PickParams, dtype, provenance, *, quantise: float = 0.0,
                       **options) -> SparseWriter:
    """A SparseWriter for frames of ``dtype`` processed with ``setup`` (pipeline.setup.RunSetup) and ``pick``:
    radius map, normalisation, instrument (beam centre where the direct beam meets the detector, also for
    tilted geometries) and pyFAI-style configuration; ``options`` go to SparseWriter."""
    integration, clip, correction, poni = setup.integration, setup.clip, setup.correction, setup.poni
    beam_x, beam_y = poni.beam_center_px()
    pixel = poni.detector.pixel_size
    instrument = {"distance": poni.beam_distance_m(), "y_pixel_size": pixel[0], "x_pixel_size": pixel[1],
                  "beam_center_x": beam_x, "beam_center_y": beam_y, "wavelength": poni.wavelength}
    config = {"geometry": setup.geometry_dict(),
              "sparsify": {"unit": integration.unit, "bins": integration.bins, "error_model": integration.error_model,
                           "radial_range": integration.radial_range, "cutoff_clip": clip.cutoff_clip,
                           "cycle": clip.cycles, "cutoff_pick": pick.cutoff_pick, "noise": pick.noise,
                           "quantise": quantise, "dummy": correction.dummy, "delta_dummy": correction.delta_dummy,
                           "polarization_factor": correction.polarization,
                           "correctSolidAngle": correction.solid_angle}}
    return SparseWriter(path, radius_map=setup.binning.pixel_radius, radial=setup.binning.radial,
                        unit=setup.binning.unit, dtype=sparse_dtype(dtype),
                        normalization=dense_normalization(setup.corrections), dummy=correction.dummy,
                        configuration=config, provenance=provenance, instrument=instrument, rounded=quantise > 0,
                        **options)

def sparsify_run(source, setup, pick: PickParams, output: str | os.PathLike, *, quantise: float = 0.0,
                 creator_compat: bool = False, compression: str = "bytedelta", batch_size: int = 8,
                 progress: bool | None = None, argv=None) -> SparsifySummary:
    """Sparsify every frame of ``source`` (io.frames.FrameSource) with ``setup`` (pipeline.setup.RunSetup) into
    ``output``.

    ``quantise``: 0 keeps the picked intensities exact; F > 0 rounds each to a power-of-two step of at most
    F times its own Poisson sigma (see engine.pick.quantise_intensities).  ``compression``: ``bytedelta``,
    ``zstd`` or ``bslz4`` (io.sparse.CODECS).
    """
    from tqdm import tqdm

    binning, corrections = setup.binning, setup.corrections
    integration, clip = setup.integration, setup.clip
    engine = select_engine(setup.device, binning, corrections, integration, clip, pick)
    provenance = setup.provenance(source, argv=argv)
    kept = []
    with open_sparse_writer(output, setup, pick, source.dtype, provenance, quantise=quantise,
                            creator_compat=creator_compat, compression=compression) as writer:
        bar = tqdm(total=source.nframes, unit="frame", desc="sparsify",
                   disable=None if progress is None else not progress)
        pending = collections.deque()  # frame ids of the batches handed to the engine, in order

        def batches():
            buffers = engine.batch_buffers(batch_size, source.dtype)  # pinned on a GPU: no staging copy
            for frames, ids in source.iter_batches(batch_size, buffers=buffers):
                pending.append(ids)
                yield frames

        try:
            for result in engine.process_many(batches(), sparse=True, peaks=False):
                ids, sparse = pending.popleft(), result.sparse
                if quantise:
                    sparse = quantise_intensities(sparse, quantise, corrections.gain)
                writer.append(sparse, source.sources, ids.source, ids.index)
                kept.append(np.diff(sparse.frame_ptr))
                bar.update(len(ids))
        finally:
            bar.close()
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    nbytes = os.path.getsize(output)
    npixels = int(np.isfinite(binning.pixel_radius).sum())
    log.info("%d frames, %.0f pixels kept per frame (%.2f%%), %s: %.1f MB", len(kept), kept.mean() if len(kept) else 0,
             100 * kept.mean() / max(npixels, 1) if len(kept) else 0, output, nbytes / 1e6)
    return SparsifySummary(kept=kept, path=Path(output), nbytes=nbytes, npixels=npixels)


def densify_run(sparse_path: str | os.PathLike, output: str | os.PathLike, *, fmt: str = "eiger",
                noise: str = "gaussian", factor: float = 1.0, seed: int | None = None, dummy=None,
                truncate: bool = True, virtual: bool = True,
                frames_per_file: int = 1000, batch_size: int = 8, progress: bool | None = None) -> list[Path]:
    """Rebuild the dense frames of a sparse-frames file and write them as ``fmt``.

    ``eiger``: ``output`` is the master file (``NAME_master.h5``, data files ``NAME_data_NNNNNN.h5`` beside
    it); ``cbf``: ``output`` is a pattern containing ``{index}`` (e.g. ``frame_{index:05d}.cbf``), else
    ``_NNNNN.cbf`` is appended to its stem.  ``seed`` None draws one from the OS (logged, to reproduce).
    Returns the files written.
    """
    from tqdm import tqdm

    if fmt not in FORMATS:
        raise ParameterError(f"unknown output format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))
        log.info("noise seed %d (give --seed %d to reproduce these frames)", seed, seed)
    with SparseFile(sparse_path) as sparse:
        if dummy is None:
            dummy = sparse.dummy
        densify = Densifier(sparse.radius_map, sparse.radial, normalization=sparse.normalization,
                            dtype=sparse.dtype, dummy=dummy)
        info = sparse.instrument()
        geometry = sparse.configuration.get("geometry", {})
        if info.get("wavelength") is None and geometry.get("wavelength"):
            info["wavelength"] = float(geometry["wavelength"])
        picking = sparse.configuration.get("sparsify", {})
        limit = None
        if truncate and picking.get("cutoff_pick") is not None:
            limit = (float(picking["cutoff_pick"]), float(picking.get("noise") or 0.0))
        bar = tqdm(total=sparse.nframes, unit="frame", desc="densify",
                   disable=None if progress is None else not progress)

        def batches():
            for start in range(0, sparse.nframes, batch_size):
                batch = sparse.read(start, start + batch_size)
                frames = densify(batch.background_avg, batch.background_std, batch.frame_ptr, batch.index,
                                 batch.intensity, noise=noise, factor=factor, seed=seed, first_frame=start,
                                 truncate=limit)
                bar.update(len(frames))
                yield frames

        mask = ~np.isfinite(sparse.radius_map)
        try:
            if fmt == "eiger":
                with EigerWriter(output, sparse.shape, sparse.dtype, nframes=sparse.nframes,
                                 frames_per_file=frames_per_file, instrument=info, pixel_mask=mask,
                                 source=os.fspath(sparse_path), virtual=virtual) as writer:
                    for frames in batches():
                        writer.append(frames)
                files = writer.files
            else:
                files = write_cbf_frames(output, batches(), sparse.nframes, info)
        finally:
            bar.close()
    return files
