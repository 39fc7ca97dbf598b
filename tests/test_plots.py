"""pipeline.plots and io.crystfel_stream: what the figures draw is checked against independent references --
the engine's own picking (the threshold drawn must be the rule that picked the pixels), brute-force counts
(veto curves), block maxima (display pooling), the written mask file (features), and hand-written CrystFEL
stream chunks."""
from __future__ import annotations

import numpy as np
import pytest

from braggsieve.engine.corrections import prepare_corrections, preprocess
from braggsieve.engine.csr import build_binning
from braggsieve.engine.integrate import sigma_clip
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.engine.pick import PickParams, pick_pixels
from braggsieve.errors import InputError
from braggsieve.io.crystfel_stream import indexed_frames, read_stream
from braggsieve.io.mask_file import read_mask_file, write_mask_file
from braggsieve.mask.bits import Bit, flag
from braggsieve.pipeline import plots


def test_max_pool_keeps_single_pixels_and_equals_block_maxima():
    rng = np.random.default_rng(0)
    image = rng.random((2167, 2070)).astype(np.float32)
    image[1234, 567] = 50.0
    image[:40, :40] = np.nan
    pooled, factor = plots.max_pool(image, side=1024)
    assert factor == 3 and pooled.shape == (723, 690)
    assert pooled[1234 // 3, 567 // 3] == 50.0
    assert np.isnan(pooled[:13, :13]).all() and np.isfinite(pooled[13:, 13:]).all()
    reference = np.nanmax(image[300:303, 600:603])
    assert pooled[100, 200] == reference
    same, one = plots.max_pool(image[:100, :100])
    assert one == 1 and same is not None and same.shape == (100, 100)


def test_drawn_picking_threshold_is_the_rule_that_picked_the_pixels():
    """At each pixel, with bg and std interpolated from the bin centres as engine.pick does, the value is
    above plots.picking_threshold exactly for the pixels pick_pixels kept."""
    rng = np.random.default_rng(1)
    shape = (80, 90)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    radius = np.hypot(yy - 40.3, xx - 44.8)
    frames = rng.poisson(5 + 50 * np.exp(-radius / 25), (2, *shape)).astype(np.int32)
    frames[:, rng.integers(0, 80, 30), rng.integers(0, 90, 30)] += 300
    binning = build_binning(radius, IntegrationParams(bins=40, unit="r_mm"))
    corrections = prepare_corrections(shape, CorrectionParams(solid_angle=False))
    pre = preprocess(frames, corrections, "poisson")
    profile = sigma_clip(pre, binning, "poisson", ClipParams())
    params = PickParams(cutoff_pick=2.5, noise=1.0)
    sparse = pick_pixels(frames, pre, binning, profile, params, corrections)
    r = binning.pixel_radius.ravel().astype(np.float64)
    inside = np.isfinite(r) & (r >= binning.radial_range[0]) & (r <= binning.radial_range[1])
    for k in range(2):
        valid = np.isfinite(profile.mean[k])
        bg = np.interp(r, profile.radial[valid], profile.mean[k][valid])
        std = np.interp(r, profile.radial[valid], profile.std[k][valid])
        value = pre.signal[k].ravel() / np.asarray(pre.norm).ravel()
        above = inside & (value > plots.picking_threshold(bg, std, params.cutoff_pick, params.noise))
        picked = sparse.index[sparse.frame_ptr[k]:sparse.frame_ptr[k + 1]]
        assert 30 <= len(picked) < 1000
        # float32 (engine) vs float64 (here) rounding may flip a pixel sitting on the threshold
        assert len(np.setxor1d(np.flatnonzero(above), picked)) <= 2
    fig = plots.background_figure(profile, 1, cutoff_pick=params.cutoff_pick, noise=params.noise,
                                  pixels=(binning.pixel_radius, pre.signal[1]))
    threshold_line = [line for line in fig.axes[0].get_lines() if "picking threshold" in line.get_label()][0]
    np.testing.assert_allclose(threshold_line.get_ydata(),
                               plots.picking_threshold(profile.mean[1], profile.std[1], 2.5, 1.0))
    assert plots.png_bytes(fig)[:4] == b"\x89PNG"


def test_veto_curves_equal_brute_force_counts():
    rng = np.random.default_rng(2)
    npeaks = rng.poisson(rng.choice([1, 25], 500), 500)
    indexed = (npeaks > 15) & (rng.random(500) < 0.6)
    fig = plots.veto_figure(npeaks, 10, indexed)
    right = fig.axes[1]
    curves = {line.get_label(): line for line in right.get_lines()}
    for label, subset in (("all frames", npeaks), (f"indexable frames ({indexed.sum()})", npeaks[indexed])):
        line = curves[label]
        for t, f in zip(line.get_xdata(), line.get_ydata()):
            assert f == pytest.approx((subset >= t).mean())
    assert (f"threshold 10: {(npeaks >= 10).mean():.1%} of frames kept, "
            f"{(npeaks[indexed] >= 10).mean():.1%} of indexable") in curves
    t, f = plots.fraction_indexed_kept(npeaks, np.zeros(500, bool))
    assert np.isnan(f).all()
    bars = fig.axes[0].patches
    assert sum(bar.get_height() for bar in bars) == 500


def test_frame_figure_draws_peaks_and_greys_masked_pixels():
    rng = np.random.default_rng(3)
    frame = rng.poisson(20, (300, 260)).astype(np.uint32)
    mask = np.zeros(frame.shape, bool)
    mask[:, 100] = True
    rows, cols = np.array([10.5, 150.25]), np.array([30.0, 200.75])
    fig = plots.frame_figure(frame, mask=mask, peaks_row=rows, peaks_col=cols)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.c_[cols, rows])
    shown = np.ma.filled(ax.images[0].get_array().astype(np.float32), np.nan)
    assert np.isnan(shown[:, 100]).all() and np.isfinite(np.delete(shown, 100, axis=1)).all()


def test_mask_figure_counts_each_feature_of_a_mask_file(tmp_path):
    bitmask = np.zeros((2, 1100, 1030), np.uint32)  # two memory cells
    bitmask[0, 700, 33] = flag(Bit.NOISY)
    bitmask[1, 700, 33] |= flag(Bit.OFFSET)
    bitmask[:, :, 512:514] = flag(Bit.GAP)
    bitmask[1, 5, 5] = flag(Bit.DEAD)
    write_mask_file(tmp_path / "mask.h5", bitmask)
    read, legend, _ = read_mask_file(tmp_path / "mask.h5")
    features = {name: (count, image) for name, count, image in plots.mask_features(read, legend)}
    assert {name: c for name, (c, _) in features.items()} == {"GAP": 2200, "DEAD": 1, "NOISY": 1, "OFFSET": 1}
    fig = plots.mask_figure(read, legend)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert titles[0].startswith("GAP: 2200") and titles[-1].startswith("all bad pixels: 2202")
    noisy = [ax for ax in fig.axes if ax.get_title().startswith("NOISY")][0].images[0].get_array()
    assert noisy.sum() == 1  # the single pixel survives the display pooling


def _chunk(filename, event, indexed_by):
    lines = ["----- Begin chunk -----", f"Image filename: {filename}"]
    lines += [f"Event: {event}"] if event is not None else []
    lines += ["Image serial number: 3", "hit = 1", f"indexed_by = {indexed_by}", "Peaks from peak search",
              "  fs/px   ss/px (1/d)/nm^-1   Intensity  Panel", "  12.0 33.0 1.2 100.0 p0", "End of peak list",
              "----- End chunk -----"]
    return "\n".join(lines) + "\n"


def test_crystfel_stream_chunks_are_matched_to_run_frames(tmp_path):
    path = tmp_path / "run.stream"
    path.write_text("CrystFEL stream format 2.3\n----- Begin geometry file -----\nclen = 0.1\n"
                    "----- End geometry file -----\n"
                    + _chunk("/data/out/run.cxi", "//3", "xgandalf-nolatt-cell")
                    + _chunk("out/run.cxi", "//4", "none")
                    + _chunk("out/parts/part_00001.cxi", "//2", "mosflm-latt-cell")
                    + _chunk("other.cxi", "//0", "dirax")
                    + _chunk("out/run.cxi", "//99", "dirax"))
    chunks = list(read_stream(path))
    assert [(c.event, c.indexed) for c in chunks] == [("//3", True), ("//4", False), ("//2", True),
                                                      ("//0", True), ("//99", True)]
    indexed, unmatched = indexed_frames(path, {"run.cxi": 0, "part_00001.cxi": 10}, 20)
    assert np.flatnonzero(indexed).tolist() == [3, 12] and unmatched == 2
    (tmp_path / "bad.stream").write_text("hello\n")
    with pytest.raises(InputError, match="not a CrystFEL stream"):
        list(read_stream(tmp_path / "bad.stream"))
