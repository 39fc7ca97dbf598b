"""Figures of a run (matplotlib, drawn off-screen with the Agg canvas; no pyplot, no global state).

Every ``draw_*`` function draws on a given ``matplotlib.axes.Axes`` so figures can be composed; every
``*_figure`` function returns a complete ``matplotlib.figure.Figure``; :func:`save_png` and :func:`png_bytes`
render one.  Conventions: images are (row, col) with pixel centres at integer indices, drawn with row 0 at the
top (as the detector file stores it); peak positions are (row, col) in the same pixels; masks are True (or
any set bit) = bad.

Figures:

* :func:`frame_figure` -- one frame (log colour scale), its masked pixels and its peaks;
* :func:`background_figure` -- the sigma-clipped background curve, its +-1 sigma band and the picking
  threshold bg + max(noise, K sqrt(sigma^2 + noise^2)) (engine.pick), optionally over the frame's pixels;
* :func:`run_figure` -- peaks per frame along the run, with the running hit rate;
* :func:`veto_figure` -- peak-count histogram and the fraction of frames kept versus the veto threshold
  (and, given CrystFEL indexing results, the fraction of *indexable* frames kept: the article's Fig. 7);
* :func:`mask_figure` -- the pixels flagged by each bit (feature) of a braggsieve bit mask.
"""
from __future__ import annotations

import io
import os
from typing import Mapping

import numpy as np

from .veto import fraction_kept

# Large images are reduced to at most this many pixels per side for display, by max-pooling so that a single
# bright or bad pixel stays visible.
DISPLAY_SIDE = 1024


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1):
    """(Figure, axes) on an off-screen Agg canvas; ``axes`` is one Axes or an array of them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def save_png(fig, path: str | os.PathLike, dpi: int = 90) -> None:
    """Write ``fig`` as PNG to ``path``."""
    fig.savefig(path, dpi=dpi, format="png")


def png_bytes(fig, dpi: int = 90) -> bytes:
    """``fig`` rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def max_pool(image: np.ndarray, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, int]:
    """(image reduced by an integer factor f so that both sides are <= ``side``, f); each output pixel is the
    maximum of its f x f block (NaN ignored; all-NaN blocks stay NaN).  f = 1 returns ``image`` itself."""
    factor = int(np.ceil(max(image.shape) / side))
    if factor <= 1:
        return image, 1
    ny, nx = (-(-n // factor) * factor for n in image.shape)
    padded = np.full((ny, nx), np.nan, dtype=np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    blocks = padded.reshape(ny // factor, factor, nx // factor, factor)
    valid = np.isfinite(blocks).any(axis=(1, 3))
    pooled = np.where(valid, np.max(np.where(np.isfinite(blocks), blocks, -np.inf), axis=(1, 3)), np.nan)
    return pooled.astype(np.float32), factor


def draw_frame(ax, frame: np.ndarray, *, mask: np.ndarray | None = None, peaks_row=None, peaks_col=None,
               title: str = "") -> None:
    """One frame (ny, nx), any numeric dtype, on a log colour scale between its 1st and 99.9th percentiles of
    the valid pixels; masked pixels (``mask`` bool (ny, nx), True = bad, and non-finite values) in grey;
    peaks as open red circles at (``peaks_row``, ``peaks_col``) pixels."""
    from matplotlib.colors import LogNorm
    import matplotlib

    image = np.asarray(frame, dtype=np.float32).copy()
    bad = ~np.isfinite(image)
    if mask is not None:
        bad |= np.asarray(mask, dtype=bool)
    image[bad] = np.nan
    valid = image[np.isfinite(image)]
    positive = valid[valid > 0]
    low, high = (np.percentile(positive, [1, 99.9]) if positive.size else (1.0, 10.0))
    high = max(high, low * 10)
    shown, factor = max_pool(image)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.55")
    extent = (-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5)
    picture = ax.imshow(np.clip(shown, low, high), norm=LogNorm(low, high), cmap=cmap, extent=extent,
                        interpolation="nearest", origin="upper")
    ax.figure.colorbar(picture, ax=ax, shrink=0.85, label="counts" + (f" (max of {factor}x{factor})"
                                                                       if factor > 1 else ""))
    if peaks_row is not None and len(peaks_row):
        ax.scatter(np.asarray(peaks_col), np.asarray(peaks_row), s=60, facecolors="none", edgecolors="red",
                   linewidths=1.0, label=f"{len(peaks_row)} peaks")
        ax.legend(loc="upper right", fontsize=8)
    ax.set(xlabel="column (fast axis, pixels)", ylabel="row (slow axis, pixels)",
           title=title or "frame")


def frame_figure(frame: np.ndarray, *, mask=None, peaks_row=None, peaks_col=None, title: str = ""):
    """Figure of :func:`draw_frame`, sized to the frame's aspect ratio."""
    ny, nx = np.shape(frame)
    width = 7.0
    fig, ax = new_figure(width, max(3.0, min(9.0, width * ny / nx * 0.85)))
    draw_frame(ax, frame, mask=mask, peaks_row=peaks_row, peaks_col=peaks_col, title=title)
    return fig


def picking_threshold(mean: np.ndarray, std: np.ndarray, cutoff_pick: float, noise: float) -> np.ndarray:
    """The picking threshold of engine.pick per bin: bg + max(noise, K sqrt(std^2 + noise^2)), normalised units."""
    return mean + np.maximum(noise, cutoff_pick * np.sqrt(std * std + noise * noise))


def draw_background(ax, radial: np.ndarray, mean: np.ndarray, std: np.ndarray, *, unit: str,
                    cutoff_pick: float | None = None, noise: float = 1.0, pixels: tuple | None = None,
                    pixels_label: str = "pixels (I / norm)", max_points: int = 200_000, seed: int = 0) -> None:
    """The background of one frame: clipped mean per bin with its +-1 std band (``radial``, ``mean``, ``std``:
    (nbins,), normalised units) and, given ``cutoff_pick``, the picking threshold.  ``pixels``: optional
    (radius, value) arrays of pixels (same unit, normalised; e.g. the frame's, or those picking kept), drawn
    as dots (a random subset of at most ``max_points``) labelled ``pixels_label``."""
    radial, mean, std = (np.asarray(a, dtype=np.float64) for a in (radial, mean, std))
    if pixels is not None:
        radius, value = (np.ravel(np.asarray(a, dtype=np.float32)) for a in pixels)
        finite = np.flatnonzero(np.isfinite(radius) & np.isfinite(value))
        if finite.size > max_points:
            finite = np.random.default_rng(seed).choice(finite, max_points, replace=False)
        ax.plot(radius[finite], value[finite], ".", ms=2, color="0.45", alpha=0.6, rasterized=True,
                label=pixels_label)
    ax.fill_between(radial, mean - std, mean + std, color="tab:blue", alpha=0.25, label="clipped mean +- std")
    ax.plot(radial, mean, color="tab:blue", lw=1.5, label="background (clipped mean)")
    if cutoff_pick is not None:
        ax.plot(radial, picking_threshold(mean, std, cutoff_pick, noise), color="tab:red", lw=1.2, ls="--",
                label=f"picking threshold (K = {cutoff_pick:g}, noise = {noise:g})")
    finite_mean = mean[np.isfinite(mean)]
    if finite_mean.size:
        top = np.nanmax(picking_threshold(mean, std, cutoff_pick or 3.0, noise))
        ax.set_ylim(min(0.0, float(np.nanmin(mean - std))), float(top) * 2.5)
    ax.set(xlabel=f"radial position ({unit})", ylabel="normalised intensity", title="background and picking")
    ax.legend(fontsize=8, loc="upper right")


def background_figure(profile, frame_index: int = 0, *, cutoff_pick: float | None = None, noise: float = 1.0,
                      pixels: tuple | None = None):
    """Figure of :func:`draw_background` for frame ``frame_index`` of a RadialProfile or SparseFrames record
    (``mean``/``std`` or ``background_avg``/``background_std``, (nbins,) or (nframes, nbins))."""
    if hasattr(profile, "mean"):
        mean, std = np.asarray(profile.mean), np.asarray(profile.std)
    else:
        mean, std = np.asarray(profile.background_avg), np.asarray(profile.background_std)
    if mean.ndim == 2:
        mean, std = mean[frame_index], std[frame_index]
    fig, ax = new_figure(7.0, 3.8)
    draw_background(ax, profile.radial, mean, std, unit=profile.unit, cutoff_pick=cutoff_pick, noise=noise,
                    pixels=pixels)
    return fig


def draw_run(ax, npeaks: np.ndarray, min_peaks: int, window: int | None = None) -> None:
    """Peaks per frame along the run (hits in red) and, on a second axis, the hit rate over a sliding window
    of ``window`` frames (default: ~1/50 of the run, at least 10)."""
    npeaks = np.asarray(npeaks)
    frames = np.arange(len(npeaks))
    hit = npeaks >= min_peaks
    size = 4 if len(npeaks) < 2000 else 1
    ax.scatter(frames[~hit], npeaks[~hit], s=size, color="tab:blue", label="frames", rasterized=True)
    ax.scatter(frames[hit], npeaks[hit], s=size, color="tab:red", label="hits", rasterized=True)
    ax.axhline(min_peaks, color="tab:red", lw=0.8, ls=":", label=f"min peaks = {min_peaks}")
    ax.set(xlabel="frame", ylabel="peaks per frame", title="peaks along the run")
    if len(npeaks):
        window = window or max(10, len(npeaks) // 50)
        window = min(window, len(npeaks))
        rate = np.convolve(hit.astype(np.float64), np.ones(window) / window, mode="valid")
        twin = ax.twinx()
        twin.plot(np.arange(len(rate)) + (window - 1) / 2, 100 * rate, color="black", lw=1.0,
                  label=f"hit rate ({window} frames)")
        twin.set(ylabel="hit rate (%)", ylim=(0, 100))
        twin.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)


def run_figure(npeaks: np.ndarray, min_peaks: int):
    """Figure of :func:`draw_run`."""
    fig, ax = new_figure(8.0, 3.4)
    draw_run(ax, npeaks, min_peaks)
    return fig


def draw_peak_histogram(ax, npeaks: np.ndarray, min_peaks: int) -> None:
    """Histogram of the number of peaks per frame, one bar per count up to 60, with the veto threshold."""
    npeaks = np.asarray(npeaks)
    top = int(npeaks.max(initial=0))
    ax.hist(npeaks, bins=np.arange(0, top + 2) - 0.5 if top < 60 else 60, color="tab:blue")
    ax.axvline(min_peaks - 0.5, color="tab:red", label=f"min peaks = {min_peaks}")
    ax.set(xlabel="peaks per frame", ylabel="frames", title="peak count")
    ax.legend(fontsize=8)


def fraction_indexed_kept(npeaks: np.ndarray, indexed: np.ndarray,
                          thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, fraction of the indexed frames that have at least that many peaks); ``indexed`` bool
    (nframes,).  NaN fractions when no frame is indexed."""
    npeaks = np.asarray(npeaks, dtype=np.int64)
    indexed = np.asarray(indexed, dtype=bool)
    thresholds, _ = fraction_kept(npeaks, thresholds)
    if not indexed.any():
        return thresholds, np.full(len(thresholds), np.nan)
    _, kept = fraction_kept(npeaks[indexed], thresholds)
    return thresholds, kept


def draw_fraction_kept(ax, npeaks: np.ndarray, min_peaks: int, indexed: np.ndarray | None = None) -> None:
    """Fraction of frames kept versus the veto threshold (a frame is kept when it has >= threshold peaks),
    the chosen threshold marked; with ``indexed`` (bool (nframes,), frames CrystFEL indexed) also the
    fraction of indexable frames kept."""
    npeaks = np.asarray(npeaks)
    thresholds, kept = fraction_kept(npeaks)
    ax.step(thresholds, kept, where="post", color="tab:blue", label="all frames")
    at = float((npeaks >= min_peaks).mean()) if len(npeaks) else 0.0
    label = f"threshold {min_peaks}: {at:.1%} of frames kept"
    if indexed is not None:
        indexed = np.asarray(indexed, dtype=bool)
        _, kept_indexed = fraction_indexed_kept(npeaks, indexed, thresholds)
        ax.step(thresholds, kept_indexed, where="post", color="tab:green",
                label=f"indexable frames ({int(indexed.sum())})")
        if indexed.any():
            label += f", {float((npeaks[indexed] >= min_peaks).mean()):.1%} of indexable"
    ax.axvline(min_peaks, color="tab:red", label=label)
    ax.set(xlabel="veto threshold (min peaks per frame)", ylabel="fraction kept", ylim=(0, 1.02),
           title="veto curve")
    ax.legend(fontsize=7, loc="best")


def veto_figure(npeaks: np.ndarray, min_peaks: int, indexed: np.ndarray | None = None, title: str = ""):
    """Peak-count histogram and veto curve side by side (:func:`draw_peak_histogram`, :func:`draw_fraction_kept`)."""
    fig, (left, right) = new_figure(9.0, 3.4, 1, 2)
    draw_peak_histogram(left, npeaks, min_peaks)
    draw_fraction_kept(right, npeaks, min_peaks, indexed)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def mask_features(bitmask: np.ndarray, legend: Mapping[str, Mapping]) -> list[tuple[str, int, np.ndarray]]:
    """(bit name, number of flagged pixels, bool (ny, nx) image) for every bit of ``legend`` set somewhere in
    ``bitmask`` (uint32 (ny, nx) or (cells, ny, nx); a pixel counts when any cell has the bit), by bit order."""
    bitmask = np.asarray(bitmask, dtype=np.uint32)
    flat = np.bitwise_or.reduce(bitmask.reshape((-1,) + bitmask.shape[-2:]), axis=0)
    found = []
    for name, entry in sorted(legend.items(), key=lambda item: int(item[1]["bit"])):
        image = (flat & np.uint32(entry["value"])) != 0
        if image.any():
            found.append((name, int(image.sum()), image))
    return found


def mask_figure(bitmask: np.ndarray, legend: Mapping[str, Mapping], title: str = ""):
    """One panel per feature (bit) set in the mask, bad pixels in black (max-pooled, so single pixels stay
    visible), then one panel of all bad pixels; ``legend`` as mask.bits.legend()."""
    features = mask_features(bitmask, legend)
    flat = np.bitwise_or.reduce(np.asarray(bitmask, np.uint32).reshape((-1,) + np.shape(bitmask)[-2:]), axis=0)
    panels = features + [("all bad pixels", int(np.count_nonzero(flat)), flat != 0)]
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    ny, nx = flat.shape
    fig, axes = new_figure(3.2 * ncols, 3.2 * nrows * min(2.0, max(0.5, ny / nx)) + 0.4, nrows, ncols)
    axes = np.atleast_1d(axes).ravel()
    for ax, (name, count, image) in zip(axes, panels):
        shown, _ = max_pool(image.astype(np.float32))
        ax.imshow(shown, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest",
                  extent=(-0.5, nx - 0.5, ny - 0.5, -0.5))
        ax.set_title(f"{name}: {count} ({100 * count / flat.size:.3g}%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(title or "bad pixels per feature (black = flagged)", fontsize=9)
    return fig
