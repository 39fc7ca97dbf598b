"""CSR radial binning against pyFAI's own CSR matrices (no splitting and bounding-box splitting)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse

from braggsieve.engine.csr import SLOT_BIN, SLOT_CLAMPED, SLOT_PICK_OUT, bin_slots, build_binning, tile_bin_ranges
from braggsieve.engine.params import IntegrationParams
from braggsieve.engine.peaks import _interp
from braggsieve.errors import ParameterError

pytest.importorskip("pyFAI")
from pyFAI.detectors import Detector  # noqa: E402
from pyFAI.integrator.azimuthal import AzimuthalIntegrator  # noqa: E402

logging.getLogger("pyFAI").setLevel(logging.ERROR)
SHAPE = (180, 220)
SCALE = {"q_nm^-1": 1.0, "2th_deg": 180 / np.pi, "r_mm": 1000.0}  # pyFAI's internal unit -> ours


@pytest.fixture(scope="module")
def ai():
    det = Detector(100e-6, 100e-6, max_shape=SHAPE)
    return AzimuthalIntegrator(dist=0.05, poni1=0.004, poni2=0.011, rot1=0.2, rot2=0.1, rot3=0.0, detector=det,
                               wavelength=1e-10)


@pytest.fixture(scope="module")
def mask():
    mask = np.zeros(SHAPE, bool)
    mask[30:33] = True
    mask[:, 100] = True
    return mask


def _pyfai_matrix(ai, mask, unit, split, bins, radial_range=None):
    """pyFAI's CSR matrix as scipy.sparse, and its integrator (for pos0_min / pos0_max / bin centres)."""
    integrator = ai.setup_sparse_integrator(SHAPE, bins, mask=mask, unit=unit, split=split, algo="CSR",
                                            pos0_range=radial_range, scale=True)
    data, indices, indptr = integrator.lut
    return scipy.sparse.csr_matrix((data, indices, indptr), shape=(bins, SHAPE[0] * SHAPE[1])), integrator


def _ours_matrix(binning):
    coef = np.ones(binning.nnz, np.float32) if binning.coef is None else binning.coef
    return scipy.sparse.csr_matrix((coef, binning.indices, binning.indptr),
                                   shape=(binning.nbins, SHAPE[0] * SHAPE[1]))


@pytest.mark.parametrize("unit", ["q_nm^-1", "2th_deg", "r_mm"])
def test_no_split_bins_are_pyfai_bins(ai, mask, unit):
    bins = 150
    binning = build_binning(ai.array_from_unit(SHAPE, "center", unit, scale=True),
                            IntegrationParams(bins=bins, unit=unit), mask=mask)
    theirs, integrator = _pyfai_matrix(ai, mask, unit, "no", bins)
    lo, hi = binning.radial_range
    assert lo == pytest.approx(integrator.pos0_min * SCALE[unit], rel=1e-12)
    assert hi == pytest.approx(integrator.pos0_max * SCALE[unit], rel=1e-12)
    np.testing.assert_allclose(binning.radial, integrator.bin_centers * SCALE[unit], rtol=1e-12)
    assert binning.coef is None
    assert abs(_ours_matrix(binning) - theirs).max() == 0
    # every unmasked pixel sits in exactly one bin, masked ones in none
    assert binning.nnz == (~mask).sum()
    assert np.array_equal(np.sort(binning.indices), np.flatnonzero(~mask.ravel()))
    assert np.isnan(binning.pixel_radius[mask]).all() and np.isfinite(binning.pixel_radius[~mask]).all()


def test_bbox_split_coefficients_are_pyfai_coefficients(ai, mask):
    unit, bins = "q_nm^-1", 120
    binning = build_binning(ai.array_from_unit(SHAPE, "center", unit, scale=True),
                            IntegrationParams(bins=bins, unit=unit, split="bbox"), mask=mask,
                            radial_delta=ai.array_from_unit(SHAPE, "delta", unit, scale=True))
    theirs, integrator = _pyfai_matrix(ai, mask, unit, "bbox", bins)
    assert binning.radial_range[1] == pytest.approx(integrator.pos0_max, rel=1e-12)
    assert abs(_ours_matrix(binning) - theirs).max() < 1e-6
    # each pixel is shared out completely
    np.testing.assert_allclose(_ours_matrix(binning).sum(axis=0).A1[~mask.ravel()], 1.0, rtol=1e-6)


def test_user_radial_range(ai, mask):
    q = ai.array_from_unit(SHAPE, "center", "q_nm^-1", scale=True)
    binning = build_binning(q, IntegrationParams(bins=50, radial_range=(10.0, 20.0)), mask=mask)
    assert binning.radial_range[0] == 10.0 and binning.radial_range[1] == pytest.approx(20.0, rel=1e-6)
    inside = (q >= binning.radial_range[0]) & (q < binning.radial_range[1]) & ~mask
    assert np.array_equal(np.sort(binning.indices), np.flatnonzero(inside.ravel()))
    theirs, _ = _pyfai_matrix(ai, mask, "q_nm^-1", "no", 50, radial_range=(10.0, 20.0))
    # pyFAI also puts pixels up to one bin below the range into bin 0 (documented difference)
    assert abs(_ours_matrix(binning)[1:] - theirs[1:]).max() == 0
    np.testing.assert_allclose(binning.counts(), np.diff(binning.indptr))


def test_bad_parameters_raise(ai, mask):
    q = ai.array_from_unit(SHAPE, "center", "q_nm^-1", scale=True)
    with pytest.raises(ParameterError, match="radial_delta"):
        build_binning(q, IntegrationParams(split="bbox"))
    with pytest.raises(ParameterError, match="no pixel left"):
        build_binning(q, IntegrationParams(), mask=np.ones(SHAPE, bool))
    with pytest.raises(ParameterError, match="mask shape"):
        build_binning(q, IntegrationParams(), mask=np.zeros((3, 3), bool))
    with pytest.raises(ParameterError, match="2-D"):
        build_binning(q.ravel(), IntegrationParams())


def test_bin_slots_give_the_cpu_interpolation():
    """The GPU's static place of each pixel between bin centres reads every table as the CPU does per frame:
    peaks._interp (and _excess's inlined form) for r_lo <= r <= r_hi, pick._classify's clamped interpolation for
    r_lo <= r < r_hi -- bit for bit, at the range ends, on bin centres and outside the range."""
    radial = np.linspace(0.05, 9.95, 100)  # step 0.1, as a binning of [0, 10]
    lo, hi = 0.0, 10.0
    rng = np.random.default_rng(3)
    special = [lo, hi, np.nextafter(np.float32(hi), 0), 0.05, 9.95, 5.05, -0.1, 10.1, np.nan, 9.97, 0.01]
    r = np.concatenate([rng.uniform(-0.5, 10.5, 4000), radial, special]).astype(np.float32)
    slot, w = bin_slots(r, radial, (lo, hi))
    table = rng.uniform(1.0, 50.0, (1, radial.size))
    last = radial.size - 1
    inv_step = 1.0 / (radial[1] - radial[0])
    seen_clamped = seen_pick_out = 0
    for k, rk in enumerate(r):
        rr = float(rk)
        in_peak = lo <= rr <= hi
        in_pick = lo <= rr < hi
        assert (slot[k] >= 0) == in_peak, rr
        if not in_peak:
            continue
        assert bool(slot[k] & SLOT_PICK_OUT) == (not in_pick), rr
        seen_pick_out += not in_pick
        seen_clamped += bool(slot[k] & SLOT_CLAMPED)
        i0 = int(slot[k] & SLOT_BIN)
        i1 = i0 if slot[k] & SLOT_CLAMPED else i0 + 1
        got = table[0, i0] * (1.0 - w[k]) + table[0, i1] * w[k]
        fpos = (rr - radial[0]) * inv_step
        assert got == _interp(table, 0, fpos, radial.size), rr
        if in_pick:  # pick._classify's lines
            x = min(max(fpos, 0.0), float(last))
            pos = min(int(x), max(last - 1, 0))
            frac = x - pos
            assert got == (1.0 - frac) * table[0, pos] + frac * table[0, min(pos + 1, last)], rr
    assert seen_clamped > 0 and seen_pick_out == 1


@pytest.mark.parametrize("tile_h", [16, 64])
def test_tile_bin_ranges_cover_exactly_the_bins_a_tile_reads(tile_h):
    """The GPU tile pass copies to shared memory the bins read by a tile and its halo of 3: the range must be
    the smallest holding i0 and (unless clamped) i0 + 1 of every pixel of the window, checked by brute force on
    a ring geometry with a masked block, clamped pixels at both ends and partial tiles at the edges."""
    ny, nx = 150, 205
    rows, cols = np.mgrid[:ny, :nx]
    r = np.hypot(rows - 40.3, cols - 121.6).astype(np.float32)
    r[60:95, 10:80] = np.nan  # a masked block: some tiles and halos read no bin
    radial = np.linspace(2.5, 117.5, 24)  # clamped below 2.5 and above 117.5, outside (0, 120]
    slot, _ = bin_slots(r.ravel(), radial, (0.0, 120.0))
    got = tile_bin_ranges(slot, (ny, nx), tile_h)
    assert got.shape == (-(-ny // tile_h), -(-nx // 32), 2) and got.dtype == np.int32
    grid = slot.reshape(ny, nx)
    empty = 0
    for ty in range(got.shape[0]):
        for tx in range(got.shape[1]):
            window = grid[max(ty * tile_h - 3, 0):ty * tile_h + tile_h + 3, max(tx * 32 - 3, 0):tx * 32 + 35]
            window = window[window >= 0]
            if window.size == 0:
                assert tuple(got[ty, tx]) == (0, 0)
                empty += 1
                continue
            first = window & SLOT_BIN
            last = first + ((window & SLOT_CLAMPED) == 0)
            assert tuple(got[ty, tx]) == (first.min(), last.max() - first.min() + 1), (ty, tx)
    assert empty > 0 and (got[..., 1] > 1).any()
