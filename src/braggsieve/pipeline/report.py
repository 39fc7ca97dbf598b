"""The per-run report: one self-contained HTML page (figures embedded as base64 PNG, no external file or
script) of a ``braggsieve process`` output folder.

Read from OUTDIR (layout: pipeline.process): ``summary.json`` (counts, per-frame peaks and hits),
``run.json`` (parameters), ``run.cxi`` (peaks of the frame shown, and its image through the virtual dataset),
``run_sparse.h5`` (the clipped background of each frame, the picked pixels, the pixel mask as NaN radii and
the picking parameters).  Optional: a CrystFEL stream of the run (indexing outcome per frame) and a
braggsieve mask file (its bits per feature).  What cannot be shown (e.g. input files moved, so the frame
image is unreadable) is listed on the page instead of failing the report.
"""
from __future__ import annotations

import base64
import datetime
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import plots


@dataclass
class Report:
    """What the page shows: ``summary`` rows (label, value), ``figures`` (title, caption, PNG bytes),
    ``parameters`` (name -> dict) and ``notes`` (what was skipped, and why)."""

    title: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)
    parameters: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("not a 'braggsieve process' output folder (no summary.json)", path.parent) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"unreadable JSON ({exc})", path) from None


def choose_frame(npeaks: np.ndarray, hit: np.ndarray) -> int:
    """A typical hit: the first hit whose peak count is closest to the median count of the hits (frame 0
    when there is no hit)."""
    hits = np.flatnonzero(hit)
    if not hits.size:
        return 0
    counts = npeaks[hits]
    return int(hits[np.argmin(np.abs(counts - np.median(counts)))])


def _frame_peaks(cxi: Path, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the peaks of ``frame`` in a CXI file."""
    import h5py

    from ..io.cxi import RESULT

    with h5py.File(cxi, "r") as handle:
        result = handle[RESULT]
        n = int(result["nPeaks"][frame])
        return result["peakYPosRaw"][frame, :n], result["peakXPosRaw"][frame, :n]


def _frame_image(cxi: Path, frame: int) -> np.ndarray:
    """The image of ``frame`` behind the master CXI's ``/entry_1/data_1/data``.  Raises InputError when its
    files are missing: io refuses a virtual dataset with a missing source, but the master's sources are the
    parts, whose own missing sources (the inputs) read as the fill value 0 -- an all-zero frame."""
    from ..io.cxi import DATA
    from ..io.frames import FrameRange, open_frames

    source = open_frames([str(cxi)], DATA, FrameRange(frame, frame + 1))
    try:
        frames, _ = next(iter(source.iter_batches(1)))
    finally:
        source.close()
    if not np.any(frames[0]):
        raise InputError(f"frame {frame} reads as all zeros: the input files behind the parts' images are "
                         f"missing or moved", cxi)
    return frames[0]


def _indexable(stream: Path, outdir: Path, summary: dict, nframes: int) -> tuple[np.ndarray, int]:
    """Indexed flags per frame from a CrystFEL stream of ``run.cxi`` (or of the parts' CXI files)."""
    from ..io.crystfel_stream import indexed_frames
    from .parts import read_record

    offsets = {summary.get("files", {}).get("cxi", "run.cxi"): 0}
    for record in sorted((outdir / "parts").glob("part_*.json")):
        offsets[record.with_suffix(".cxi").name] = int(read_record(record)["start"])
    return indexed_frames(stream, offsets, nframes)


def build_report(outdir: str | os.PathLike, *, stream: str | os.PathLike | None = None,
                 mask: str | os.PathLike | None = None, frame: int | None = None,
                 min_peaks: int | None = None) -> Report:
    """Collect the summary and draw the figures of the run in ``outdir``.

    ``frame``: the frame shown with its peaks and background (default: :func:`choose_frame`); ``min_peaks``:
    the veto threshold marked (default: the run's)."""
    outdir = Path(outdir)
    summary = _load_json(outdir / "summary.json")
    per_frame = summary.get("per_frame", {})
    npeaks = np.asarray(per_frame.get("npeaks", []), dtype=np.int64)
    nframes = len(npeaks)
    if not nframes:
        raise InputError("summary.json lists no frame", outdir / "summary.json")
    min_peaks = int(summary.get("min_peaks", 10) if min_peaks is None else min_peaks)
    hit = npeaks >= min_peaks
    report = Report(title=f"braggsieve run report: {outdir.resolve().name}")
    files = summary.get("files", {})
    report.summary = [
        ("output folder", str(outdir.resolve())),
        ("program", f"{summary.get('program', '?')} {summary.get('version', '')}"),
        ("input files", ", ".join(Path(s).name for s in summary.get("sources", [])) or "?"),
        ("frames", f"{nframes}"),
        ("hits (>= %d peaks)" % min_peaks, f"{int(hit.sum())} ({hit.mean():.1%})"),
        ("peaks", f"{int(npeaks.sum())} ({npeaks.mean():.1f} per frame, {npeaks[hit].mean():.1f} per hit)"
         if hit.any() else f"{int(npeaks.sum())} ({npeaks.mean():.1f} per frame)"),
        ("pixels kept per frame (sparse)",
         f"{summary.get('pixels_kept_per_frame', '?')} ({100 * float(summary.get('kept_fraction', 0)):.3g}% "
         f"of the valid pixels)"),
        ("parts", f"{summary.get('parts', '?')} ({summary.get('parts_resumed', 0)} resumed)"),
        ("processing time", f"{summary.get('seconds', '?')} s ({summary.get('frames_per_second', '?')} frames/s)"),
        ("checks", ", ".join(f"{k} {v}" for k, v in summary.get("checks", {}).items())),
    ]
    fingerprint = outdir / "run.json"
    if fingerprint.exists():
        report.parameters = _load_json(fingerprint).get("parameters", {})

    indexed = None
    if stream is not None:
        indexed, unmatched = _indexable(Path(stream), outdir, summary, nframes)
        report.summary.append(("indexed (CrystFEL stream)", f"{int(indexed.sum())} frames "
                                                             f"({indexed.mean():.1%}); kept at {min_peaks}: "
                                                             f"{int((indexed & hit).sum())}"))
        if unmatched:
            report.notes.append(f"{unmatched} chunk(s) of {stream} match no frame of this run (other file "
                                f"names or events)")
    report.figures.append(("Veto", "Left: number of peaks per frame. Right: fraction of frames a veto at each "
                           "threshold keeps (a frame is kept with at least that many peaks)"
                           + ("; green: the same for the frames CrystFEL indexed." if indexed is not None else "."),
                           plots.png_bytes(plots.veto_figure(npeaks, min_peaks, indexed))))
    report.figures.append(("Peaks along the run", "Peaks found in each frame (hits in red) and the hit rate "
                           "over a sliding window.", plots.png_bytes(plots.run_figure(npeaks, min_peaks))))

    frame = choose_frame(npeaks, hit) if frame is None else int(frame)
    if not 0 <= frame < nframes:
        raise InputError(f"--frame {frame}: the run has frames 0 to {nframes - 1}", outdir)
    _frame_figures(report, outdir, files, frame, npeaks)
    if mask is not None:
        from ..io.mask_file import read_mask_file

        bitmask, legend, _ = read_mask_file(mask)
        report.figures.append(("Bad-pixel mask", f"Pixels flagged by each feature of {Path(mask).name} (max-pooled "
                               "for display so that single pixels stay visible).",
                               plots.png_bytes(plots.mask_figure(bitmask, legend))))
    return report


def _frame_figures(report: Report, outdir: Path, files: dict, frame: int, npeaks: np.ndarray) -> None:
    """The frame with its peaks and mask, and its background with the picking threshold."""
    from ..io.sparse import SparseFile

    cxi = outdir / files.get("cxi", "run.cxi")
    sparse_path = outdir / files.get("sparse", "run_sparse.h5")
    mask = None
    try:
        with SparseFile(sparse_path) as sparse:
            mask = ~np.isfinite(sparse.radius_map)
            batch = sparse.read(frame, frame + 1)
            config = sparse.configuration.get("sparsify", {})
            norm = (np.ones(sparse.shape, np.float32) if sparse.normalization is None
                    else np.asarray(sparse.normalization, np.float32))
            picked = (sparse.radius_map.ravel()[batch.index], batch.intensity / norm.ravel()[batch.index])
            fig, ax = plots.new_figure(7.5, 3.8)
            plots.draw_background(ax, sparse.radial, batch.background_avg[0], batch.background_std[0],
                                  unit=sparse.unit, cutoff_pick=config.get("cutoff_pick"),
                                  noise=config.get("noise", 1.0), pixels=picked, pixels_label="picked pixels")
            report.figures.append((f"Background of frame {frame}", "Sigma-clipped mean per radial bin with its "
                                   "+-1 std band, the picking threshold, and the pixels sparsify kept (all must "
                                   "lie above the threshold).", plots.png_bytes(fig)))
    except InputError as exc:
        report.notes.append(f"background not shown: {exc}")
    try:
        image = _frame_image(cxi, frame)
        rows, cols = _frame_peaks(cxi, frame)
        fig = plots.frame_figure(image, mask=mask, peaks_row=rows, peaks_col=cols,
                                 title=f"frame {frame}: {int(npeaks[frame])} peaks")
        report.figures.append((f"Frame {frame}", "The frame on a log scale, masked pixels in grey, peaks circled "
                               "in red.", plots.png_bytes(fig)))
    except (InputError, OSError, KeyError) as exc:
        report.notes.append(f"frame {frame} not shown: {exc}")


def render_html(report: Report) -> str:
    """The page: a summary table, the figures (inline PNG), the parameters, and the notes."""
    esc = html.escape
    rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in report.summary)
    figures = "\n".join(
        f'<figure><h2>{esc(title)}</h2><img alt="{esc(title)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{esc(caption)}</figcaption></figure>'
        for title, caption, png in report.figures)
    parameters = "\n".join(
        f"<div><h3>{esc(name)}</h3><table>" + "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>"
                                                 for k, v in values.items()) + "</table></div>"
        for name, values in report.parameters.items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(report.title)}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f3f5f8; color: #1c2430; }}
header {{ background: #1c2430; color: #fff; padding: 12px 24px; }} header h1 {{ margin: 0; font-size: 20px; }}
header p {{ margin: 2px 0 0; color: #aab6c6; font-size: 12px; }}
main {{ padding: 16px 24px; max-width: 1100px; }}
section, figure {{ background: #fff; border: 1px solid #d8dee7; border-radius: 8px; padding: 12px 16px;
  margin: 0 0 16px; }}
h2 {{ font-size: 15px; margin: 0 0 8px; }} h3 {{ font-size: 13px; margin: 12px 0 4px; color: #5d6b7d; }}
table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 3px 12px 3px 0; vertical-align: top; }}
th {{ color: #5d6b7d; font-weight: 500; }} td {{ font-variant-numeric: tabular-nums; }}
img {{ max-width: 100%; }} figcaption {{ color: #5d6b7d; font-size: 12px; }}
.notes li {{ color: #8c3b1f; }}
.parameters {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 0 16px; }}
</style></head>
<body><header><h1>{esc(report.title)}</h1><p>generated {esc(stamp)} by braggsieve report</p></header>
<main>
<section><h2>Run summary</h2><table id="summary">{rows}</table></section>
{f'<section class="notes"><h2>Not shown</h2><ul>{notes}</ul></section>' if notes else ''}
{figures}
{f'<section><h2>Parameters</h2><div class="parameters">{parameters}</div></section>' if parameters else ''}
</main></body></html>
"""


def write_report(outdir: str | os.PathLike, output: str | os.PathLike, **options) -> Report:
    """Build the report of ``outdir`` and write it atomically to ``output`` (HTML); returns it."""
    from ..io.atomic import atomic_output

    report = build_report(outdir, **options)
    with atomic_output(output) as tmp:
        Path(tmp).write_text(render_html(report), encoding="utf-8")
    return report
