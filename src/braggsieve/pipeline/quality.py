"""Quality report of a sparsify / densify round trip.

* compression: size of the sparse file against the input frames stored with bitshuffle-LZ4 (one frame per
  chunk, as a Dectris detector writes them), and pixels kept per frame;
* background: for every radial bin of the sparse file, the sigma-clipped pixel standard deviation (azimuthal
  model: the scatter of the pixels, normalised units) of the densified frames divided by the original's;
* spots (simulated data with a truth file): each truth spot's background-subtracted intensity measured the
  same way on the original and the densified frames -- a disc of ``SPOT_RADIUS`` pixels minus the median of
  the annulus around it -- then the Pearson correlation and the mean ratio densified/original over the spots
  with I/sigma > 3 in the original.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import h5py
import hdf5plugin
import numpy as np

from ..engine.corrections import preprocess, prepare_corrections
from ..engine.csr import build_binning
from ..engine.integrate import sigma_clip
from ..engine.params import ClipParams, CorrectionParams, IntegrationParams
from ..errors import InputError

SPOT_RADIUS = 3.0                # pixels: the disc integrated around a truth spot
ANNULUS = (5.0, 8.0)             # pixels: the ring whose median is the spot's local background


def bslz4_bytes(frames: np.ndarray) -> int:
    """Bytes that ``frames`` ``(n, ny, nx)`` take stored with bitshuffle-LZ4, one frame per chunk."""
    with h5py.File(io.BytesIO(), "w") as h5:
        ds = h5.create_dataset("data", data=frames, chunks=(1,) + frames.shape[1:],
                               **hdf5plugin.Bitshuffle(cname="lz4"))
        return int(ds.id.get_storage_size())


@dataclass(frozen=True)
class CompressionReport:
    """Sizes in bytes and pixels kept (int64 ``(nframes,)``) of a sparse file against its input."""

    input_bytes: int
    raw_bytes: int
    sparse_bytes: int
    kept: np.ndarray
    npixels: int

    @property
    def ratio(self) -> float:
        return self.input_bytes / self.sparse_bytes

    def text(self) -> str:
        n = len(self.kept)
        frac = self.kept / max(self.npixels, 1)
        return (f"frames: {n}\n"
                f"input, bitshuffle-LZ4: {self.input_bytes / 1e6:.2f} MB (uncompressed {self.raw_bytes / 1e6:.2f} MB)\n"
                f"sparse file: {self.sparse_bytes / 1e6:.2f} MB\n"
                f"compression ratio vs bitshuffle-LZ4 input: {self.ratio:.2f}x\n"
                f"pixels kept per frame: mean {self.kept.mean():.0f}, min {self.kept.min()}, max {self.kept.max()} "
                f"({100 * frac.mean():.3f}% of {self.npixels} valid pixels)")


def compression_report(source, sparse_path, batch_size: int = 8) -> CompressionReport:
    """Compare the sparse file ``sparse_path`` with the frames of ``source`` (io.frames.FrameSource)."""
    from ..io.sparse import SparseFile

    with SparseFile(sparse_path) as sparse:
        kept = np.diff(sparse.frame_ptr)
        npixels = int(np.isfinite(sparse.radius_map).sum())
        nbytes = sparse.stored_bytes()
    total = raw = 0
    for frames, _ in source.iter_batches(batch_size):
        total += bslz4_bytes(frames)
        raw += frames.nbytes
    return CompressionReport(input_bytes=total, raw_bytes=raw, sparse_bytes=nbytes, kept=kept, npixels=npixels)


def _file_binning(sparse):
    """The sparse file's own radial binning (its radius map and bin centres) and the matching corrections."""
    radial = sparse.radial
    width = (radial[-1] - radial[0]) / (len(radial) - 1) if len(radial) > 1 else 1.0
    params = IntegrationParams(bins=len(radial), unit=sparse.unit or "r_mm", error_model="azimuthal",
                               radial_range=(float(radial[0] - width / 2), float(radial[-1] + width / 2)))
    mask = ~np.isfinite(sparse.radius_map)
    binning = build_binning(np.where(mask, 0, sparse.radius_map), params, mask=mask)
    corrections = prepare_corrections(sparse.shape, CorrectionParams(solid_angle=False), mask=mask,
                                      flat=sparse.normalization)
    return binning, corrections


def clipped_std(frames: np.ndarray, binning, corrections, clip: ClipParams) -> np.ndarray:
    """Sigma-clipped pixel std per bin, float64 ``(n, nbins)``, normalised units (azimuthal model)."""
    pre = preprocess(frames, corrections, "azimuthal")
    return np.asarray(sigma_clip(pre, binning, "azimuthal", clip).std, dtype=np.float64)


def spot_intensities(frame: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtracted intensity and its Poisson sigma of each spot at (rows, cols) of ``frame`` (counts):
    sum over the disc of radius SPOT_RADIUS minus npix x the annulus median; ``valid`` bool (ny, nx).
    NaN for spots whose disc touches an invalid pixel or the border."""
    ny, nx = frame.shape
    half = int(np.ceil(ANNULUS[1]))
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    out_i = np.full(len(rows), np.nan)
    out_s = np.full(len(rows), np.nan)
    for k, (r, c) in enumerate(zip(rows, cols)):  # per spot, a few hundred per frame
        r0, c0 = int(round(r)), int(round(c))
        if r0 - half < 0 or c0 - half < 0 or r0 + half >= ny or c0 + half >= nx:
            continue
        patch = frame[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1].astype(np.float64)
        ok = valid[r0 - half:r0 + half + 1, c0 - half:c0 + half + 1]
        dist = np.hypot(dy + r0 - r, dx + c0 - c)
        disc = dist <= SPOT_RADIUS
        ring = (dist >= ANNULUS[0]) & (dist <= ANNULUS[1]) & ok
        if not ok[disc].all() or ring.sum() < 10:
            continue
        bg = np.mean(patch[ring])
        out_i[k] = patch[disc].sum() - disc.sum() * bg
        out_s[k] = np.sqrt(max(patch[disc].sum(), 1.0) + disc.sum() ** 2 * patch[ring].var() / ring.sum())
    return out_i, out_s


@dataclass(frozen=True)
class RoundTripReport:
    """Background and spot fidelity of densified frames against the originals."""

    sigma_ratio: np.ndarray            # float64 (nframes, nbins): densified / original clipped pixel std
    radial: np.ndarray
    unit: str
    spot_original: np.ndarray = field(default_factory=lambda: np.zeros(0))  # intensities of the selected spots
    spot_densified: np.ndarray = field(default_factory=lambda: np.zeros(0))
    spots_total: int = 0

    @property
    def sigma_ratio_median(self) -> float:
        return float(np.nanmedian(self.sigma_ratio))

    @property
    def spot_cc(self) -> float:
        if len(self.spot_original) < 2:
            return float("nan")
        return float(np.corrcoef(self.spot_original, self.spot_densified)[0, 1])

    @property
    def spot_mean_ratio(self) -> float:
        return float(np.mean(self.spot_densified / self.spot_original)) if len(self.spot_original) else float("nan")

    def text(self) -> str:
        with warnings.catch_warnings():  # bins without pixels are NaN in every frame
            warnings.simplefilter("ignore", RuntimeWarning)
            per_bin = np.nanmedian(self.sigma_ratio, axis=0)
        lines = [f"background sigma densified/original (sigma-clipped, per bin): median {self.sigma_ratio_median:.4f}, "
                 f"5-95% of bins {np.nanpercentile(per_bin, 5):.4f}-{np.nanpercentile(per_bin, 95):.4f}"]
        if self.spots_total:
            lines.append(f"truth spots: {self.spots_total}, with I/sigma > 3: {len(self.spot_original)}; Pearson CC "
                         f"{self.spot_cc:.6f}, mean ratio densified/original {self.spot_mean_ratio:.4f}")
        return "\n".join(lines)


def round_trip_report(original, densified, sparse_path, truth_path=None, batch_size: int = 4,
                      clip: ClipParams = ClipParams(cutoff_clip=0.0, cycles=5)) -> RoundTripReport:
    """Compare frame sources ``original`` and ``densified`` (same frames, in order) through the bins of the
    sparse file; with ``truth_path`` (a simulated run's ``_truth.h5``) also the truth spots' intensities."""
    from ..io.sparse import SparseFile

    if original.nframes != densified.nframes or original.shape != densified.shape:
        raise InputError(f"{densified.nframes} densified frames of shape {densified.shape} do not match the "
                         f"{original.nframes} original frames of shape {original.shape}", densified.sources[0])
    with SparseFile(sparse_path) as sparse:
        binning, corrections = _file_binning(sparse)
        radial, unit = sparse.radial, sparse.unit
    truth = _read_truth(truth_path) if truth_path else None
    valid = ~corrections.mask
    ratios, spots_o, spots_d, total = [], [], [], 0
    for (orig, ids), (dens, _) in zip(original.iter_batches(batch_size), densified.iter_batches(batch_size)):
        reference = clipped_std(orig, binning, corrections, clip)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios.append(np.where(reference > 0, clipped_std(dens, binning, corrections, clip) / reference, np.nan))
        if truth is None:
            continue
        for k, frame_number in enumerate(ids.index):  # the truth numbers the frames of the simulated file
            rows, cols = truth.get(int(frame_number), (np.zeros(0), np.zeros(0)))
            total += len(rows)
            i_o, s_o = spot_intensities(orig[k], rows, cols, valid & (orig[k] >= 0))
            i_d, _ = spot_intensities(dens[k], rows, cols, valid & (orig[k] >= 0))
            keep = np.isfinite(i_o) & np.isfinite(i_d) & (i_o > 3 * s_o)
            spots_o.append(i_o[keep])
            spots_d.append(i_d[keep])
    cat = (lambda parts: np.concatenate(parts) if parts else np.zeros(0))
    return RoundTripReport(sigma_ratio=np.concatenate(ratios), radial=radial, unit=unit,
                           spot_original=cat(spots_o), spot_densified=cat(spots_d), spots_total=total)


def _read_truth(path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{frame: (rows, cols)} of the reflections in a simulated run's truth file."""
    try:
        with h5py.File(path, "r") as h5:
            refl = h5["truth/reflections"]
            frame, row, col = refl["frame"][()], refl["row"][()], refl["col"][()]
    except (OSError, KeyError) as exc:
        raise InputError(f"not a braggsieve truth file ({exc})", path) from None
    order = np.argsort(frame, kind="stable")
    frame, row, col = frame[order], row[order], col[order]
    bounds = np.flatnonzero(np.diff(frame)) + 1
    return {int(f[0]): (r, c) for f, r, c in zip(np.split(frame, bounds), np.split(row, bounds),
                                                   np.split(col, bounds)) if len(f)}
