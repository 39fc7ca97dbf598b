"""The veto: a frame is a hit when it has at least ``min_peaks`` Bragg peaks.

Outputs, all next to the CXI file with the same stem (``run.cxi`` -> ``run.lst``, ``run_frames.csv``,
``run_veto.png``):

* the hit list, a CrystFEL ``.lst``: one line ``<cxi file> //<row>`` per hit, the row of the frame in that
  CXI file (CrystFEL's event syntax for a ``dim0 = %`` geometry), so ``indexamajig -i run.lst`` indexes hits only;
* a per-frame table (CSV): ``frame,file,index,npeaks,hit`` with ``frame`` the row in the CXI file and
  ``file``/``index`` where the frame came from (0-based index inside that file);
* a figure: the histogram of peaks per frame, and the fraction of frames kept against the threshold (the
  curve a beamline scientist tunes the veto on), with the chosen threshold marked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ParameterError
from ..params import option


@dataclass(frozen=True)
class VetoParams:
    """Hit veto."""

    min_peaks: int = option(10, "a frame is a hit when it has at least N peaks; the hit list (.lst) and the "
                            "hits-only output keep hits only", metavar="N")

    def __post_init__(self):
        if self.min_peaks < 0:
            raise ParameterError(f"--min-peaks must be >= 0, got {self.min_peaks}")


def is_hit(npeaks: np.ndarray, params: VetoParams) -> np.ndarray:
    """bool (nframes,): True where a frame has at least ``params.min_peaks`` peaks."""
    return np.asarray(npeaks) >= params.min_peaks


def fraction_kept(npeaks: np.ndarray, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of frames with at least that many peaks), thresholds 0 .. max(npeaks) + 1."""
    npeaks = np.asarray(npeaks, dtype=np.int64)
    if thresholds is None:
        thresholds = np.arange(int(npeaks.max(initial=0)) + 2)
    counts = np.bincount(npeaks, minlength=int(thresholds.max()) + 1)
    at_least = counts[::-1].cumsum()[::-1]  # frames with >= k peaks, for k = 0 .. len(counts) - 1
    kept = np.where(thresholds < len(at_least), at_least[np.minimum(thresholds, len(at_least) - 1)], 0)
    return thresholds, kept / max(len(npeaks), 1)


def write_hit_list(path: str | os.PathLike, cxi_name: str, hit: np.ndarray) -> int:
    """Write the CrystFEL list of hits (``cxi_name //row``); returns the number of hits."""
    rows = np.flatnonzero(hit)
    with open(path, "w") as handle:
        handle.writelines(f"{cxi_name} //{row}\n" for row in rows)
    return len(rows)


def write_frame_table(path: str | os.PathLike, files: Sequence[str], source: np.ndarray, index: np.ndarray,
                      npeaks: np.ndarray, hit: np.ndarray) -> None:
    """Write the per-frame CSV table; ``source`` indexes ``files``."""
    with open(path, "w") as handle:
        handle.write("frame,file,index,npeaks,hit\n")
        for row, (s, i, n, h) in enumerate(zip(source, index, npeaks, hit)):
            handle.write(f"{row},{files[s]},{i},{n},{int(h)}\n")


def plot_veto(path: str | os.PathLike, npeaks: np.ndarray, params: VetoParams, title: str = "",
              indexed: np.ndarray | None = None) -> None:
    """PNG with the peaks-per-frame histogram and the fraction of frames kept versus the threshold
    (pipeline.plots.veto_figure; ``indexed``: bool (nframes,) frames CrystFEL indexed, optional)."""
    from .plots import save_png, veto_figure

    save_png(veto_figure(npeaks, params.min_peaks, indexed, title=title), path)
