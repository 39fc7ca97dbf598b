"""The CUDA backend of the engine: the CPU engine's outputs, computed on an NVIDIA GPU with CuPy.

Data path of one batch (``(n, ny, nx)`` frames in their raw dtype), all on one CUDA stream:

1. host -> device copy of the raw frames (from the caller's page-locked array, or from an engine-owned
   pinned buffer into which several threads copy an ordinary numpy array);
2. ``sigma_clip``: one block per (frame, bin); preprocessing (markers, mask, dark, gain, saturation) is fused
   into the gather, every clipping cycle of a bin runs inside the block (float64 sums, decisions on float32
   copies with float64 checks near the limit);
3. ``background_tables``: mean/std/sem and the gap-filled background of each frame;
4. ``tile_pass``: one block per tile of 64 x 64 pixels, one thread per pixel: picking -> bit mask
   (``grow_picks`` adds the neighbours of spot pixels with ``cutoff_spot``), and the excess over the background
   with its peak mark for the tile and a halo of 3 in shared memory, zinger flags, the cheap peak tests list
   the candidates of the tile and its threads confirm them, one each -> bit mask of peaks;
5. the set bits of both masks counted per chunk of words and turned into offsets (``chunk_counts``,
   ``chunk_offsets``, also the per-frame pointers), then ``emit_picks``/``emit_peak_index`` compact the results
   (each thread adds the bits before its word within the chunk) and ``measure_peaks`` (PEAK_LANES lanes per peak)
   measures the peaks;
6. device -> host copies of the sums, backgrounds and frame pointers into pinned memory.

``process_many`` keeps ``streams`` batches in flight on as many CUDA streams, so that the copy of one batch
overlaps the kernels of another; Python waits only when it collects a batch's results (one event per batch),
then copies the variable-size results (exact sizes) back.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Iterable, Iterator

import cupy as cp
import cupyx
import numpy as np

from ...errors import ParameterError
from ..backend import BoundEngine, FrameResults
from ..corrections import Corrections, detector_markers
from ..csr import SLOT_MASKED, SLOT_PICK_OUT, RadialBinning, bin_slots, tile_bin_ranges
from ..integrate import BinSums, chauvenet_factors, profile_from_sums
from ..params import ClipParams, IntegrationParams
from ..peaks import PeakParams
from ..pick import PickParams
from ..records import PEAK_FIELDS, PeakList, RadialProfile, SparseFrames
from . import kernels

CLIP_BLOCK = 256         # threads per (frame, bin) block of the clipping kernel
CLIP_SMALL_BLOCK = 128   # ... for the classes of bins of at most CLIP_SMALL_CAP pixels
CLIP_SMALL_CAP = 4096    # pixels of a class's largest bin
CLIP_MIN_BLOCKS = 5      # blocks per multiprocessor that its register budget must allow (48 registers)
CLIP_BATCH = 4           # pixels per thread whose loads the clipping gather issues together
CLASS_STEP = 4096        # bins are launched in classes of sizes rounded up to a multiple of this (pixels)
MAX_HIST = 64            # most clipping cycles
TILE_W = 64              # columns of a tile of tile_pass (a multiple of 32: one bit-mask word per 32 columns)
TILE_H = 64              # rows of a tile of tile_pass
TILE_WARPS = 8           # warps per tile block (each takes every TILE_WARPS-th 32-pixel unit of the tile)
TILE_MIN_BLOCKS = 5      # tile blocks per multiprocessor that its register budget must allow (48 registers)
TILE_BINS = 128          # most bins of a tile's background tables held in shared memory
ZINGER_LIST = 512        # most zinger candidates of a tile listed (beyond: its whole window is scanned)
EMIT_BLOCK = 256         # words a block of the compaction kernels (a chunk)
COUNT_WARPS = 8          # chunks counted per block of chunk_counts (one warp each)
MEASURE_WARPS = 4        # warps per block of measure_peaks
PEAK_LANES = 16          # lanes per peak in measure_peaks (32 / PEAK_LANES peaks a warp)
LINEINFO_ENV = "BRAGGSIEVE_CUDA_LINEINFO"  # set (to 1): kernels compiled with -lineinfo, for Nsight Compute's
                                          # source view (benchmarks/ncu_summary.py --lines)
_H2D, _D2H = 1, 2     # cudaMemcpyKind
_CTYPE = {np.dtype(np.uint8): "unsigned char", np.dtype(np.uint16): "unsigned short",
          np.dtype(np.uint32): "unsigned int", np.dtype(np.int16): "short", np.dtype(np.int32): "int",
          np.dtype(np.float32): "float"}
_NULL = np.uint64(0)


@lru_cache(maxsize=None)
def _module(ctype: str, coef: bool, dvar: bool, half: int, plain: bool) -> dict:
    """The compiled kernels for one raw dtype, pixel splitting, dark variance, peak half-patch, and whether the
    frames need no dark, gain or dummy (``plain``: the shorter preprocessing of the tile pass and the clipping)."""
    flag = {True: "true", False: "false"}
    clip = f"sigma_clip<{ctype}, {flag[coef]}, {flag[dvar]}, {flag[plain]}"
    names = {"clip": f"{clip}, {CLIP_BLOCK}>", "clip_small": f"{clip}, {CLIP_SMALL_BLOCK}>",
             "tile": f"tile_pass<{ctype}, {flag[plain]}, {half}>", "picks": f"emit_picks<{ctype}>",
             "peak_index": "emit_peak_index", "measure": f"measure_peaks<{ctype}, {half}>",
             "tables": "background_tables", "chunk_counts": "chunk_counts", "chunk_offsets": "chunk_offsets",
             "grow": "grow_picks"}
    defines = {"CLIP_BLOCK": CLIP_BLOCK, "MAX_HIST": MAX_HIST, "CLIP_MIN_BLOCKS": CLIP_MIN_BLOCKS,
               "CLIP_BATCH": CLIP_BATCH, "TILE_W": TILE_W, "TILE_H": TILE_H, "TILE_WARPS": TILE_WARPS,
               "TILE_MIN_BLOCKS": TILE_MIN_BLOCKS, "TILE_BINS": TILE_BINS, "ZINGER_LIST": ZINGER_LIST,
               "MEASURE_WARPS": MEASURE_WARPS, "PEAK_LANES": PEAK_LANES, "EMIT_BLOCK": EMIT_BLOCK,
               "COUNT_WARPS": COUNT_WARPS}
    profiling = ("-lineinfo",) if os.environ.get(LINEINFO_ENV) else ()
    module = cp.RawModule(code=kernels.SOURCE, options=("-std=c++17", "--fmad=false", "-default-device", *profiling,
                                                        *(f"-D{name}={value}" for name, value in defines.items())),
                          name_expressions=sorted(set(names.values())))
    functions = {key: module.get_function(name) for key, name in names.items()}
    for key in ("clip", "clip_small"):
        functions[key].max_dynamic_shared_size_bytes = max_dynamic_shared()
    return functions


def max_dynamic_shared() -> int:
    """Dynamic shared memory (bytes) a clipping block may use on the current device: the device's opt-in limit
    per block (227 kB on H100/H200, 163 kB on A100, 99 kB on Ada) less 4 kB for the kernel's static arrays."""
    return int(cp.cuda.Device().attributes["MaxSharedMemoryPerBlockOptin"]) - 4096


def _ptr(array) -> object:
    """A kernel pointer argument: the device array, or NULL for None."""
    return _NULL if array is None else array


def _squares(*values: float) -> list[np.float64]:
    """Kernel arguments x * x in float64, the products the CPU code forms (noise^2, cutoff^2)."""
    return [np.float64(v) * np.float64(v) for v in values]


def _device_f32(array) -> cp.ndarray | None:
    return None if array is None else cp.asarray(np.ascontiguousarray(array, dtype=np.float32).ravel())


def is_pinned(array: np.ndarray) -> bool:
    """True when ``array``'s memory is page-locked (allocated or registered through CUDA)."""
    try:
        attributes = cp.cuda.runtime.pointerGetAttributes(array.ctypes.data)
    except cp.cuda.runtime.CUDARuntimeError:
        return False
    return attributes.type == 1  # cudaMemoryTypeHost


class _Static:
    """Everything fixed for a run, on the device: per-pixel arrays (flat) and the CSR arrays (CSR order,
    statically masked entries and zero coefficients removed: they never contribute)."""

    def __init__(self, binning: RadialBinning, corrections: Corrections, d_spacing: np.ndarray | None):
        ny, nx = binning.shape
        if ny * nx >= 1 << 31:
            raise ParameterError(f"the cuda engine indexes pixels with 32-bit integers: {ny} x {nx} is too large")
        mask = np.asarray(corrections.mask, bool)
        gain = corrections.gain
        gain_map = np.asarray(gain, np.float32) if isinstance(gain, np.ndarray) else None
        self.dark = _device_f32(corrections.dark)
        self.dvar = _device_f32(corrections.dark_variance)
        self.gmap = _device_f32(gain_map)
        self.dspacing = None if d_spacing is None else cp.asarray(np.asarray(d_spacing, np.float64).ravel())
        self.scalar_gain = 1.0 if gain_map is not None else float(gain)

        indptr = np.asarray(binning.indptr, np.int64)
        indices = np.asarray(binning.indices, np.int64)
        keep = ~mask.ravel()[indices]
        if binning.coef is not None:
            keep &= np.asarray(binning.coef) != 0
        rows = np.repeat(np.arange(binning.nbins), np.diff(indptr))
        self.counts = np.bincount(rows[keep], minlength=binning.nbins)
        self.indptr = cp.asarray(np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64))
        kept = indices[keep]
        self.coef = None if binning.coef is None else _device_f32(np.asarray(binning.coef)[keep])

        def in_csr(array):
            return None if array is None else _device_f32(np.asarray(array, np.float32).ravel()[kept])

        # kernels.CsrEntry of every kept entry, 8 bytes: flat pixel index, norm
        entries = np.empty(len(kept), dtype=[("index", "<i4"), ("norm", "<f4")])
        entries["index"] = kept
        entries["norm"] = np.asarray(corrections.norm, np.float32).ravel()[kept]
        self.entries = cp.asarray(entries.view(np.uint8))
        # Chauvenet's factor of each possible pixel count of a bin (read when there is no pixel splitting)
        self.chauvenet = cp.asarray(chauvenet_factors(int(self.counts.max(initial=0))))
        self.cdark = in_csr(corrections.dark)
        self.cdvar = in_csr(corrections.dark_variance)
        self.cgain = in_csr(gain_map)
        radial = np.asarray(binning.radial, np.float64)
        r32 = np.asarray(binning.pixel_radius, np.float32).ravel()
        slot, wpos = bin_slots(r32, radial, binning.radial_range)  # as the CPU's peak finder and picking
        # kernels.PixelStatic of every pixel, 16 bytes: norm, slot (| SLOT_MASKED where the corrections mask a
        # pixel inside the radial range), upper bin's weight
        pix = np.zeros(ny * nx, dtype=[("norm", "<f4"), ("slot", "<i4"), ("w", "<f8")])
        pix["norm"] = np.asarray(corrections.norm, np.float32).ravel()
        pix["slot"] = np.where((slot >= 0) & mask.ravel(), slot | SLOT_MASKED, slot)
        pix["w"] = wpos
        self.pix = cp.asarray(pix.view(np.uint8))
        pick_range = (slot >= 0) & ((slot & SLOT_PICK_OUT) == 0)  # r_lo <= r < r_hi
        self.radial = cp.asarray(radial)
        self.shape = (ny, nx)
        self.nwords = (nx + 31) // 32
        self.chunks_per_frame = -(-ny * self.nwords // EMIT_BLOCK)  # of the compaction (kernels.chunk_counts)
        # bit mask (ny, nwords) of the pixels inside the picking range (the neighbours that cutoff_spot may add)
        padded = np.zeros((ny, self.nwords * 32), bool)
        padded[:, :nx] = pick_range.reshape(ny, nx)
        self.range_words = cp.asarray(np.packbits(padded, axis=1, bitorder="little").view("<u4").astype(np.uint32))
        self._slot = slot
        self._tile_bins: dict[tuple[int, int], cp.ndarray] = {}

    def tile_bins(self, tile_h: int, tile_w: int) -> cp.ndarray:
        """int32 (ceil(ny / tile_h), ceil(nx / tile_w), 2): for each tile of tile_w x tile_h pixels of tile_pass,
        the first bin and the number of bins whose tables its pixels and the halo of 3 around it read
        (engine/csr.py tile_bin_ranges)."""
        if (tile_h, tile_w) not in self._tile_bins:
            self._tile_bins[tile_h, tile_w] = cp.asarray(tile_bin_ranges(self._slot, self.shape, tile_h, tile_w))
        return self._tile_bins[tile_h, tile_w]

    def par(self, dtype: np.dtype, corrections: Corrections) -> cp.ndarray:
        """The float64 scalar parameters of kernels.PAR_* for frames of ``dtype``."""
        markers = detector_markers(dtype)
        values = np.zeros(kernels.NPAR)
        values[kernels.PAR_GAIN] = self.scalar_gain
        values[kernels.PAR_DUMMY] = 0.0 if corrections.dummy is None else float(corrections.dummy)
        values[kernels.PAR_DELTA_DUMMY] = float(corrections.delta_dummy or 0.0)
        values[kernels.PAR_CHECK_DUMMY] = corrections.dummy is not None
        values[kernels.PAR_SATURATION] = np.inf if corrections.saturation is None else float(corrections.saturation)
        values[kernels.PAR_NMARKERS] = len(markers)
        values[kernels.PAR_MARKER0:kernels.PAR_MARKER0 + len(markers)] = markers
        return cp.asarray(values)


class _Slot:
    """The buffers and the stream of one batch in flight."""

    def __init__(self, engine: "CudaEngine"):
        self.engine = engine
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.event = cp.cuda.Event(disable_timing=True)
        self.timing = None  # (stage name, CUDA event) pairs of the batch in flight, when profiling
        self.frames_cap = 0
        self.dtype = None
        self.pick_cap = 0
        self.peak_cap = 0
        self.staging = None
        # picked pixels and peaks copied back with the batch (their count predicted from the slot's last batch),
        # so that collect() usually need not copy and wait again
        self.expected = (0, 0)
        self.ahead = (0, 0)

    # -- buffers ------------------------------------------------------------------------------------------
    def _ensure(self, nframes: int, dtype: np.dtype) -> None:
        e = self.engine
        ny, nx = e.static.shape
        if nframes > self.frames_cap or dtype != self.dtype:
            nwords = nframes * ny * e.static.nwords
            nbins = e.binning.nbins
            self.d_frames = cp.empty((nframes, ny, nx), dtype)
            self.sums = cp.empty((kernels.NSUMS, nframes, nbins))
            # per (frame, bin): kernels.NTAB background tables (TAB_*)
            self.prof = cp.empty((nframes, nbins, kernels.NTAB))
            self.filled = cp.empty((2, nframes, nbins), np.float32)
            # picked pixels, peaks, spot pixels (cutoff_spot)
            self.words = cp.zeros((3, nwords), np.uint32)
            # per mask: the set bits before each chunk of EMIT_BLOCK words, then their total (kernels.chunk_offsets)
            self.chunks = cp.zeros(2 * (nframes * e.static.chunks_per_frame + 1), np.int64)
            self.fptr = cp.zeros((2, nframes + 1), np.int64)
            self.h_sums = cupyx.empty_pinned(self.sums.shape, np.float64)
            self.h_filled = cupyx.empty_pinned(self.filled.shape, np.float32)
            self.h_fptr = cupyx.empty_pinned(self.fptr.shape, np.int64)
            self.staging = None
            self.frames_cap, self.dtype = nframes, dtype
            self._grow(max(1 << 20, nframes * ny * nx // 50), max(1 << 14, nframes * 2048))
        if self.pick_cap == 0:
            self._grow(1 << 20, 1 << 14)

    def _grow(self, pick_cap: int, peak_cap: int) -> None:
        if pick_cap > self.pick_cap:
            self.pick_cap = pick_cap
            self.pick_index = cp.empty(pick_cap, np.uint32)
            self.pick_value = cp.empty(pick_cap, self.dtype)
            self.h_pick_index = cupyx.empty_pinned(pick_cap, np.uint32)
            self.h_pick_value = cupyx.empty_pinned(pick_cap, self.dtype)
        if peak_cap > self.peak_cap:
            self.peak_cap = peak_cap
            self.peak_f = cp.empty((peak_cap, kernels.NPEAKF))
            self.peak_npix = cp.empty(peak_cap, np.int32)
            self.peak_index = cp.empty(peak_cap, np.int64)
            self.peak_at = cp.empty(peak_cap, np.int64)
            self.h_peak_f = cupyx.empty_pinned((peak_cap, kernels.NPEAKF), np.float64)
            self.h_peak_npix = cupyx.empty_pinned(peak_cap, np.int32)
            self.h_peak_index = cupyx.empty_pinned(peak_cap, np.int64)

    def _mark(self, name: str) -> None:
        """Record a timing event (only when the engine's ``stage_ms`` is a dict)."""
        if self.timing is not None:
            event = cp.cuda.Event()
            event.record(self.stream)
            self.timing.append((name, event))

    def _copy(self, dst, src, nbytes: int, kind: int) -> None:
        dptr = dst.data.ptr if isinstance(dst, cp.ndarray) else dst.ctypes.data
        sptr = src.data.ptr if isinstance(src, cp.ndarray) else src.ctypes.data
        if nbytes:
            cp.cuda.runtime.memcpyAsync(dptr, sptr, nbytes, kind, self.stream.ptr)

    # -- one batch ------------------------------------------------------------------------------------------
    def submit(self, frames, sparse: bool, peaks: bool, cycles: int) -> None:
        """Queue the whole computation of one batch on this slot's stream (no host synchronisation)."""
        e = self.engine
        n = frames.shape[0]
        dtype = np.dtype(frames.dtype)
        self._ensure(n, dtype)
        self.timing = [] if e.stage_ms is not None else None
        self._mark("start")
        self.n, self.sparse, self.peaks = n, sparse, peaks
        if isinstance(frames, cp.ndarray):
            self.stream.wait_event(cp.cuda.get_current_stream().record())
            d_frames = cp.ascontiguousarray(frames)
        else:
            d_frames = self.d_frames[:n]
            if is_pinned(frames) and frames.flags.c_contiguous:
                source = frames
            else:
                if self.staging is None:
                    self.staging = cupyx.empty_pinned(self.d_frames.shape, dtype)
                source = self.staging[:n]
                e._stage(source, frames)
            self._copy(d_frames, source, source.nbytes, _H2D)
        self.d_in = d_frames
        fns = e._kernels(dtype)
        s = e.static
        ny, nx = s.shape
        nbins = e.binning.nbins
        par = e._par(dtype)
        with self.stream:
            # kernels lay out (field, frame, bin) tables of this batch's n frames at the start of each buffer
            self._mark("h2d")
            for bins, cap in e._bin_classes:
                small = cap <= CLIP_SMALL_CAP
                kernel, block = (fns["clip_small"], CLIP_SMALL_BLOCK) if small else (fns["clip"], CLIP_BLOCK)
                kernel((len(bins) * n,), (block,),
                       (d_frames, np.int32(n), np.int64(ny * nx), np.int32(nbins), bins, s.indptr, s.entries,
                        _ptr(s.coef), _ptr(s.cdark), _ptr(s.cdvar), _ptr(s.cgain), par, s.chauvenet,
                        np.int32(cycles), np.float64(e.clip.cutoff_clip), np.int32(e._scatter(cycles)),
                        np.int32(cap), self.sums),
                       shared_mem=cap * e._item_bytes)
            self._mark("clip")
            if sparse or peaks:
                self._pick_and_peaks(fns, d_frames, par, n)
            else:
                self.fptr.fill(0)
            self.ahead = (min(self.expected[0], self.pick_cap) if sparse else 0,
                          min(self.expected[1], self.peak_cap) if peaks else 0)
            self._copy_results((0, 0), self.ahead)
            size = n * nbins
            self._copy(self.h_sums, self.sums, kernels.NSUMS * size * 8, _D2H)
            self._copy(self.h_filled, self.filled, 2 * size * 4, _D2H)
            self._copy(self.h_fptr, self.fptr, self.fptr.nbytes, _D2H)
            self._mark("d2h")
            self.event.record(self.stream)

    def _pick_and_peaks(self, fns, d_frames, par, n) -> None:
        e, s = self.engine, self.engine.static
        ny, nx = s.shape
        nbins = e.binning.nbins
        nwords = n * ny * s.nwords
        fns["tables"]((n,), (256,), (self.sums, np.int32(n), np.int32(nbins), np.int32(e._spread_row), s.radial,
                                     self.prof, self.filled))
        self._mark("tables")
        pk, pp = e.peak_params, e.pick_params
        grow = self.sparse and pp.cutoff_spot > 0
        fns["tile"]((n, -(-nx // TILE_W), -(-ny // TILE_H)), (32 * TILE_WARPS,),
                    (d_frames, np.int32(ny), np.int32(nx), np.int32(s.nwords), s.pix, s.tile_bins(TILE_H, TILE_W),
                     _ptr(s.dark), _ptr(s.dvar), _ptr(s.gmap), par, self.prof, np.int32(nbins),
                     np.float64(pp.noise), *_squares(pp.noise, pp.cutoff_pick, pp.cutoff_spot),
                     *_squares(pk.noise), np.float64(pk.cutoff_peak), *_squares(pk.cutoff_peak),
                     np.float64(pk.spread_snr), np.float64(pk.min_spread), np.int32(pk.near_mask == "reject"),
                     np.int32(self.sparse),
                     np.int32(self.peaks), self.words[0], self.words[2] if grow else _NULL, self.words[1]))
        self._mark("tiles")
        if grow:
            fns["grow"]((-(-nwords // EMIT_BLOCK),), (EMIT_BLOCK,),
                        (np.int64(nwords), np.int32(ny), np.int32(s.nwords), self.words[2], s.range_words,
                         self.words[0]))
        nchunks, per_frame = n * s.chunks_per_frame, np.int32(s.chunks_per_frame)
        fns["chunk_counts"]((-(-nchunks // COUNT_WARPS), 2), (32 * COUNT_WARPS,),
                            (self.words, np.int64(self.words.shape[1]), np.int64(ny * s.nwords), per_frame,
                             self.chunks, np.int32(nchunks)))
        fns["chunk_offsets"]((2,), (1024,), (self.chunks, np.int32(nchunks), per_frame, np.int32(n), self.fptr,
                                             np.int64(self.fptr.shape[1])))
        for k, wanted in enumerate((self.sparse, self.peaks)):
            if not wanted:  # its words are those of an earlier batch
                self.fptr[k].fill(0)
        self._mark("scan")
        self._emit(fns, d_frames, par, n)
        self._mark("emit")

    def _emit(self, fns, d_frames, par, n) -> None:
        e, s = self.engine, self.engine.static
        ny, nx = s.shape
        grid = (n * s.chunks_per_frame,)
        per_frame = np.int32(s.chunks_per_frame)
        if self.sparse:
            dtype = d_frames.dtype
            integer = dtype.kind in "iu"
            lo, hi = (float(np.iinfo(dtype).min), float(np.iinfo(dtype).max)) if integer else (0.0, 0.0)
            fns["picks"](grid, (EMIT_BLOCK,),
                         (d_frames, np.int32(ny), np.int32(nx), np.int32(s.nwords), self.words[0],
                          self._offsets(0, n), per_frame, _ptr(s.dark), np.int32(integer), np.float64(lo),
                          np.float64(hi), np.int64(self.pick_cap), self.pick_index, self.pick_value))
        if self.peaks:
            pk = e.peak_params
            fns["peak_index"](grid, (EMIT_BLOCK,),
                              (np.int32(ny), np.int32(nx), np.int32(s.nwords), self.words[1], self._offsets(1, n),
                               per_frame, np.int64(self.peak_cap), self.peak_index, self.peak_at))
            per_block = 32 * MEASURE_WARPS // PEAK_LANES
            fns["measure"]((-(-self.peak_cap // per_block),), (32 * MEASURE_WARPS,),
                           (d_frames, self.fptr[1, n:], np.int32(ny), np.int32(nx), self.peak_at,
                            s.pix, _ptr(s.dark), _ptr(s.dvar), _ptr(s.gmap),
                            _ptr(s.dspacing), par, self.prof, np.int32(e.binning.nbins),
                            *_squares(pk.noise, pk.cutoff_peak), np.float64(pk.min_spread), np.int64(self.peak_cap),
                            self.peak_f, self.peak_npix))

    def _copy_results(self, start: tuple[int, int], stop: tuple[int, int]) -> bool:
        """Queue the copies of picked pixels start[0]:stop[0] and peaks start[1]:stop[1] into the pinned host
        buffers; returns whether there was anything to copy."""
        (p0, k0), (p1, k1) = start, stop
        p1, k1 = max(p0, p1), max(k0, k1)
        for host, device, first, last in ((self.h_pick_index, self.pick_index, p0, p1),
                                          (self.h_pick_value, self.pick_value, p0, p1),
                                          (self.h_peak_f, self.peak_f, k0, k1),
                                          (self.h_peak_npix, self.peak_npix, k0, k1),
                                          (self.h_peak_index, self.peak_index, k0, k1)):
            self._copy(host[first:], device[first:], (last - first) * host[:1].nbytes, _D2H)
        return p1 > p0 or k1 > k0

    def _offsets(self, k: int, n: int) -> cp.ndarray:
        """Mask k's set bits before each chunk of a batch of n frames (kernels.chunk_offsets' layout)."""
        nchunks = n * self.engine.static.chunks_per_frame
        return self.chunks[k * (nchunks + 1):(k + 1) * (nchunks + 1)]

    def collect(self) -> FrameResults:
        """Wait for this slot's batch and return its results (host arrays owned by the caller)."""
        e = self.engine
        n = self.n
        nbins = e.binning.nbins
        self.event.synchronize()
        if self.timing:
            for (_, before), (name, after) in zip(self.timing, self.timing[1:]):
                e.stage_ms[name] = e.stage_ms.get(name, 0.0) + cp.cuda.get_elapsed_time(before, after)
        npick, npeak = int(self.h_fptr[0, n]), int(self.h_fptr[1, n])
        copied = self.ahead
        if npick > self.pick_cap or npeak > self.peak_cap:  # rare: grow and compact again
            self._grow(int(npick * 1.25) + 1, int(npeak * 1.25) + 1)
            with self.stream:
                self._emit(e._kernels(self.d_in.dtype), self.d_in, e._par(self.d_in.dtype), n)
            copied = (0, 0)  # into the former host buffers
        # what the batch's own copies did not bring back (the first batch of a slot, or more than predicted)
        if self._copy_results(copied, (npick if self.sparse else 0, npeak if self.peaks else 0)):
            self.stream.synchronize()
        self.expected = (npick + npick // 2 + 1024, npeak + npeak // 2 + 64)
        size = n * nbins
        sums = self.h_sums.reshape(-1)[:kernels.NSUMS * size].reshape(kernels.NSUMS, n, nbins).copy()
        profile = profile_from_sums(BinSums.from_stack(sums), e.binning, e.integration.error_model)
        sparse = peaks = None
        if self.sparse:
            filled = self.h_filled.reshape(-1)[:2 * size].reshape(2, n, nbins).copy()
            sparse = SparseFrames(frame_ptr=self.h_fptr[0, :n + 1].copy(), index=self.h_pick_index[:npick].copy(),
                                  intensity=self.h_pick_value[:npick].copy(), background_avg=filled[0],
                                  background_std=filled[1], radial=np.asarray(e.binning.radial, np.float64),
                                  unit=e.binning.unit)
        if self.peaks:
            out = self.h_peak_f[:npeak]
            intensity, sigma = out[:, 2], out[:, 3]
            with np.errstate(divide="ignore", invalid="ignore"):
                snr = np.where(sigma > 0, intensity / sigma, 0.0)
            fields = {"row": out[:, 0], "col": out[:, 1], "intensity": intensity, "sigma": sigma, "snr": snr,
                      "npix": self.h_peak_npix[:npeak], "maximum": out[:, 4], "background": out[:, 5],
                      "resolution": out[:, 6], "index": self.h_peak_index[:npeak]}
            peaks = PeakList(frame_ptr=self.h_fptr[1, :n + 1].copy(),
                             **{k: np.array(fields[k], dtype=dt) for k, dt in PEAK_FIELDS.items()})
        self.d_in = None
        return FrameResults(profile=profile, sparse=sparse, peaks=peaks)


class CudaEngine(BoundEngine):
    """Engine on one NVIDIA GPU (see :class:`braggsieve.engine.backend.Engine`), bound to one binning, one set
    of corrections and parameters.  Gives the CPU engine's results (the kernels mirror its arithmetic).

    Args:
        binning: the radial binning (CSR).  corrections: the static corrections.
        integration, clip, pick, peaks: the parameter dataclasses (defaults when omitted).
        d_spacing: optional float ``(ny, nx)`` map in Angstrom for the peaks' ``resolution``.
        streams: batches in flight in :meth:`process_many` (each on its own CUDA stream; >= 2 overlaps
            copies with compute).
        staging_threads: threads copying ordinary (pageable) host arrays into pinned buffers.
        clip_shared: most pixels of a bin held in shared memory by the clipping kernel, 4 bytes each (default:
            what the device allows a block, 57088 pixels on an H100; rounded down to a multiple of 4); the others
            are gathered again at every clipping pass.

    ``stage_ms``: set it to ``{}`` to accumulate the GPU time of each stage (ms, CUDA events) over batches.
    """

    device = "cuda"

    def __init__(self, binning: RadialBinning, corrections: Corrections, integration: IntegrationParams | None = None,
                 clip: ClipParams | None = None, pick: PickParams | None = None, peaks: PeakParams | None = None,
                 d_spacing: np.ndarray | None = None, *, streams: int = 3, staging_threads: int | None = None,
                 clip_shared: int | None = None):
        super().__init__(binning, corrections, integration, clip, pick, peaks, d_spacing)
        if self.integration.error_model == "variance":
            raise ParameterError("the cuda engine has no explicit-variance error model; use --device cpu")
        self.static = _Static(binning, corrections, d_spacing)
        if self.clip.cycles > MAX_HIST:
            raise ParameterError(f"the cuda engine runs at most {MAX_HIST} clipping cycles, got {self.clip.cycles}")
        # Bins are launched by classes of size (multiples of CLASS_STEP pixels); each class gets the shared
        # memory of its largest member (a multiple of 4 pixels: the kernel reads the copies four at a time), so
        # that small bins leave room for several blocks per multiprocessor.
        self._item_bytes = 4  # the clipping kernel holds a float32 copy of each value of a bin
        most = max_dynamic_shared() // self._item_bytes if clip_shared is None else clip_shared
        most = max(4, most - most % 4)
        counts = self.static.counts
        sizes = np.minimum(np.maximum(1, -(-counts // CLASS_STEP)) * CLASS_STEP, most)
        self._bin_classes = []
        for size in np.unique(sizes):
            members = np.flatnonzero(sizes == size)
            cap = min(int(size), max(4, -(-int(counts[members].max()) // 4) * 4))
            self._bin_classes.append((cp.asarray(members.astype(np.int32)), cap))
        self.stage_ms: dict[str, float] | None = None
        self._spread_row = 6 if self.integration.error_model == "azimuthal" else 2
        self._slots = [_Slot(self) for _ in range(max(1, streams))]
        self._threads = staging_threads or min(16, os.cpu_count() or 1)
        self._pool = None
        self._pars: dict[np.dtype, cp.ndarray] = {}

    # -- helpers ------------------------------------------------------------------------------------------
    def _kernels(self, dtype: np.dtype):
        if dtype not in _CTYPE:
            raise ParameterError(f"the cuda engine reads frames of dtype {', '.join(map(str, _CTYPE))}, "
                                 f"not {dtype}")
        half = self.peak_params.patch_size // 2
        s = self.static
        plain = (s.dark is None and s.dvar is None and s.gmap is None and s.scalar_gain == 1.0
                 and self.corrections.dummy is None)
        return _module(_CTYPE[dtype], self.binning.coef is not None, s.cdvar is not None, half, plain)

    def _par(self, dtype: np.dtype) -> cp.ndarray:
        if dtype not in self._pars:
            self._pars[dtype] = self.static.par(dtype, self.corrections)
        return self._pars[dtype]

    def _scatter(self, cycles: int) -> bool:
        """Whether the clipping kernel accumulates the scatter VV: always for a plain integration (as the
        CPU's bin_sums), for clipping with the azimuthal or hybrid model."""
        return cycles == 0 or self.integration.error_model in ("azimuthal", "hybrid")

    def _stage(self, pinned: np.ndarray, frames: np.ndarray) -> None:
        """Copy ``frames`` into the pinned buffer with several threads (numpy releases the GIL)."""
        src = np.ascontiguousarray(frames).reshape(-1)
        dst = pinned.reshape(-1)
        parts = max(1, min(self._threads, src.nbytes // (4 << 20)))
        if parts == 1:
            np.copyto(dst, src)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="braggsieve-staging")
        edges = np.linspace(0, src.size, parts + 1).astype(np.int64)
        list(self._pool.map(lambda k: np.copyto(dst[edges[k]:edges[k + 1]], src[edges[k]:edges[k + 1]]),
                            range(parts)))

    def _batch(self, frames):
        frames = frames if isinstance(frames, cp.ndarray) else np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        if frames.ndim != 3 or tuple(frames.shape[1:]) != tuple(self.binning.shape):
            raise ParameterError(f"frames of shape {frames.shape} do not match the detector {self.binning.shape}")
        if not frames.dtype.isnative or frames.dtype == np.float16:  # as preprocess: native integers and floats
            frames = frames.astype(np.float32 if frames.dtype == np.float16 else frames.dtype.newbyteorder("="))
        return frames

    def _run(self, frames, sparse: bool, peaks: bool, cycles: int) -> FrameResults:
        slot = self._slots[0]
        slot.submit(self._batch(frames), sparse, peaks, cycles)
        return slot.collect()

    # -- the Engine protocol ------------------------------------------------------------------------------
    def integrate(self, frames) -> RadialProfile:
        """Azimuthal integration without clipping, ``(nframes, nbins)``."""
        return self._run(frames, False, False, 0).profile

    def sigma_clip(self, frames) -> RadialProfile:
        """Sigma-clipped background of a batch, ``(nframes, nbins)``."""
        return self._run(frames, False, False, self.clip.cycles).profile

    def process(self, frames, *, sparse: bool = True, peaks: bool = True) -> FrameResults:
        """Clip, then pick pixels and/or find peaks, for one batch (numpy, pinned numpy or CuPy array)."""
        return self._run(frames, sparse, peaks, self.clip.cycles)

    def process_many(self, batches: Iterable, *, sparse: bool = True, peaks: bool = True) -> Iterator[FrameResults]:
        """Process a stream of batches with up to ``streams`` of them in flight; yields results in order.

        A batch that is a page-locked numpy array (:meth:`pinned_frames`, e.g. filled by
        ``FrameSource.read_into``) is copied to the GPU straight from it, so it must stay unchanged until its
        results are yielded; any other numpy array is first copied into an engine-owned pinned buffer and
        may be reused at once.
        """
        pending: deque[_Slot] = deque()
        for index, frames in enumerate(batches):
            slot = self._slots[index % len(self._slots)]
            if len(pending) == len(self._slots):
                yield pending.popleft().collect()
            slot.submit(self._batch(frames), sparse, peaks, self.clip.cycles)
            pending.append(slot)
        while pending:
            yield pending.popleft().collect()

    def batch_buffers(self, batch_size: int, dtype) -> list[np.ndarray]:
        """Page-locked ``(batch_size, ny, nx)`` buffers, one per stream plus two, for a reader to decode batches
        into (``FrameSource.iter_batches(buffers=...)``): :meth:`process_many` then copies them to the GPU without
        staging, and none is read into again before its results are yielded (``streams`` batches in flight, the
        one being submitted, the one the reader prefetches)."""
        return [self.pinned_frames(batch_size, dtype) for _ in range(len(self._slots) + 2)]

    def pinned_frames(self, nframes: int, dtype) -> np.ndarray:
        """A page-locked ``(nframes, ny, nx)`` numpy array: batches read into it cross PCIe without staging."""
        return cupyx.empty_pinned((nframes,) + tuple(self.binning.shape), np.dtype(dtype))
