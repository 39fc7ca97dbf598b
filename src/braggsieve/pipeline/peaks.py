"""The peak-finding run: frames -> sigma-clipped background -> peaks -> CXI + .geom + veto outputs.

One pass over the input in batches (memory bounded by the batch size whatever the run length): each batch goes
through the engine of ``setup.device`` (preprocessing, sigma-clipping, peaks: braggsieve.engine.peaks on the
CPU, the same rules on the GPU), is appended to the CXI file (and to the hits-only CXI file), and only the peak
count per frame is kept for the veto outputs written at the end.
All outputs are written under temporary names and renamed together when the run succeeds.
"""
from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.device import select_engine
from ..engine.peaks import PeakParams
from ..engine.records import PeakList
from ..geometry import pixels
from ..geometry.crystfel import write_geom
from ..io.atomic import atomic_outputs
from ..io.cxi import MASK as CXI_MASK
from ..io.cxi import CxiWriter, image_refs
from .veto import VetoParams, is_hit, plot_veto, write_frame_table, write_hit_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeakRunOutputs:
    """The files of a run, all derived from the CXI path ``cxi`` (``run.cxi``)."""

    cxi: Path

    @property
    def geom(self) -> Path:
        return self.cxi.with_suffix(".geom")

    @property
    def hit_list(self) -> Path:
        return self.cxi.with_suffix(".lst")

    @property
    def table(self) -> Path:
        return self.cxi.with_name(self.cxi.stem + "_frames.csv")

    @property
    def plot(self) -> Path:
        return self.cxi.with_name(self.cxi.stem + "_veto.png")

    @property
    def hits_cxi(self) -> Path:
        return self.cxi.with_name(self.cxi.stem + "_hits.cxi")


@dataclass(frozen=True)
class PeakRunSummary:
    """What a run found: peaks per frame (int64 (nframes,)), the hit flags and the files written."""

    npeaks: np.ndarray
    hit: np.ndarray
    files: tuple[Path, ...]


def _select(peaks: PeakList, keep: np.ndarray) -> PeakList:
    """The peaks of the frames where ``keep`` (bool (nframes,)) is True."""
    counts = peaks.npeaks[keep]
    mask = np.repeat(keep, peaks.npeaks)
    frame_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return PeakList(frame_ptr=frame_ptr, **{name: getattr(peaks, name)[mask]
                                            for name in PeakList.__dataclass_fields__ if name != "frame_ptr"})


def run_peaks(source, setup, peak_params: PeakParams, veto: VetoParams, cxi_path: str | os.PathLike, *,
              hits_only: bool = False, compression: str | None = None, batch_size: int = 4, plots: bool = True,
              progress: bool | None = None, argv=None) -> PeakRunSummary:
    """Find the peaks of every frame of ``source`` (io.frames.FrameSource) with ``setup`` (pipeline.setup.RunSetup:
    geometry, binning, corrections, parameters) and write the outputs of :class:`PeakRunOutputs`.

    ``progress``: a tqdm bar on stderr (None = only when stderr is a terminal).
    """
    from tqdm import tqdm

    outputs = PeakRunOutputs(Path(cxi_path))
    files = [outputs.cxi, outputs.geom, outputs.hit_list, outputs.table]
    files += [outputs.plot] if plots else []
    files += [outputs.hits_cxi] if hits_only else []
    provenance = setup.provenance(source, argv=argv)
    d_spacing = pixels.d_spacing(setup.poni) if setup.poni.wavelength is not None else None
    engine = select_engine(setup.device, setup.binning, setup.corrections, setup.integration, setup.clip, None,
                           peak_params, d_spacing)
    first_refs = image_refs(source, source.frame_ids(0, 1))
    images = "link" if first_refs is not None else "copy"
    npeaks_all, sources_all, index_all = [], [], []
    with atomic_outputs(files) as temps:
        tmp = dict(zip(files, temps))
        bad = setup.corrections.mask  # stored beside the images: CrystFEL's mask (the .geom points to it)
        writer = CxiWriter(tmp[outputs.cxi], source.shape, source.dtype, images=images, compression=compression,
                           link_dir=outputs.cxi.parent, mask=bad)
        hits_writer = (CxiWriter(tmp[outputs.hits_cxi], source.shape, source.dtype, images=images,
                                 compression=compression, link_dir=outputs.cxi.parent, mask=bad)
                       if hits_only else None)
        bar = tqdm(total=source.nframes, unit="frame", desc="peaks", disable=None if progress is None else not progress)
        pending = collections.deque()  # (frames, ids) of the batches handed to the engine, in order

        def batches():
            buffers = engine.batch_buffers(batch_size, source.dtype)  # pinned on a GPU: no staging copy
            for frames, ids in source.iter_batches(batch_size, buffers=buffers):
                pending.append((frames, ids))
                yield frames

        try:
            for result in engine.process_many(batches(), sparse=False, peaks=True):
                (frames, ids), peaks = pending.popleft(), result.peaks
                refs = image_refs(source, ids) if images == "link" else None
                writer.append(peaks, frames=frames if images == "copy" else None, refs=refs)
                if hits_writer is not None:
                    keep = is_hit(peaks.npeaks, veto)
                    hits_writer.append(_select(peaks, keep), frames=frames[keep] if images == "copy" else None,
                                       refs=[r for r, k in zip(refs, keep) if k] if refs is not None else None)
                npeaks_all.append(peaks.npeaks)
                sources_all.append(ids.source)
                index_all.append(ids.index)
                bar.update(len(ids))
        finally:
            bar.close()
        writer.close(provenance)
        if hits_writer is not None:
            hits_writer.close(provenance)
        npeaks = np.concatenate(npeaks_all)
        hit = is_hit(npeaks, veto)
        gain = setup.correction.gain
        write_geom(setup.poni, tmp[outputs.geom], adu_per_photon=gain, mask=CXI_MASK)
        nhits = write_hit_list(tmp[outputs.hit_list], outputs.cxi.name, hit)
        write_frame_table(tmp[outputs.table], source.sources, np.concatenate(sources_all),
                          np.concatenate(index_all), npeaks, hit)
        if plots:
            plot_veto(tmp[outputs.plot], npeaks, veto, title=f"{outputs.cxi.name}: {len(npeaks)} frames, "
                                                             f"{nhits} hits")
    log.info("%d frames, %d peaks, %d hits (>= %d peaks)", len(npeaks), int(npeaks.sum()), nhits, veto.min_peaks)
    return PeakRunSummary(npeaks=npeaks, hit=hit, files=tuple(files))
