"""Densification: rebuild dense frames from sparse frames (the inverse of picking, up to the background noise).

Every pixel with a finite radius inside the binned range gets the background of its frame, interpolated
linearly in radius between bin centres exactly as FabIO's Cython ``densify`` does (bins are uniform; a pixel
whose fractional bin position is below 0 or at/after ``nbins`` -- or whose radius is NaN -- gets ``dummy``),
optionally with noise, multiplied by the per-pixel normalisation; then the stored pixels overwrite it with their
exact values.  Noise models:

* ``none``: the background mean (FabIO's default in the library);
* ``gaussian``: ``max(0, N(mean, factor * std))``, then normalised (FabIO's ``densify-Bragg`` CLI);
* ``poisson``: ``Poisson(mean * normalization)`` counts -- the right model for counting detectors, whose
  background is photon shot noise; ``factor`` is not used.

With ``truncate`` (the picking's cutoff and noise floor) a noisy value above the picking threshold is drawn
again: such a pixel would have been stored, so the unstored ones were all below it.

Integer outputs are rounded half up (``floor(x + 0.5)``, which equals FabIO's ``(int)(x + 0.5)`` for x >= -0.5)
and clamped to the dtype's range.  Random numbers come from a counter-based generator keyed by
``(seed, frame number in the file, row)``, so a seeded run gives the same frames whatever the number of threads or the
batch size.
"""
from __future__ import annotations

import numba
import numpy as np

from ..errors import ParameterError
from .rng import STREAM_DENSIFY, next_poisson, next_uniform, pixel_state, stream_key

NOISE_MODELS = ("none", "gaussian", "poisson")
_MODEL_CODE = {name: code for code, name in enumerate(NOISE_MODELS)}


@numba.njit(cache=True, parallel=True)
def _bin_positions(radius_map, r0, idelta, nbins):
    """Per pixel: lower bin (-1 = dummy) and interpolation weight of the next bin, as FabIO computes them."""
    ny, nx = radius_map.shape
    pos = np.empty((ny, nx), np.int32)
    frac = np.empty((ny, nx), np.float64)
    for i in numba.prange(ny):
        for j in range(nx):
            fpos = (np.float64(radius_map[i, j]) - r0) * idelta
            if not (fpos >= 0.0 and fpos < nbins):
                pos[i, j] = -1
                frac[i, j] = 0.0
            else:
                p = int(fpos)
                pos[i, j] = p
                frac[i, j] = 0.0 if p + 1 == nbins else fpos - p
    return pos, frac


@numba.njit(cache=True, inline="always")
def _draw(state, spare, has_spare, model, mean, std, norm, factor):
    """One noisy background value (normalised units): model 1 = max(0, N(mean, factor * std)) with
    Marsaglia's polar method (two deviates per accepted pair, the spare kept for the next pixel), model 2 =
    Poisson(mean * norm) / norm.  Returns (state, spare, has_spare, value)."""
    if model == 1:
        if has_spare:
            return state, 0.0, False, max(0.0, mean + factor * std * spare)
        s, u1, u2 = 2.0, 0.0, 0.0
        while s >= 1.0 or s == 0.0:
            u1, state = next_uniform(state)
            u2, state = next_uniform(state)
            u1 = 2.0 * u1 - 1.0
            u2 = 2.0 * u2 - 1.0
            s = u1 * u1 + u2 * u2
        s = np.sqrt(-2.0 * np.log(s) / s)
        return state, u2 * s, True, max(0.0, mean + factor * std * u1 * s)
    counts, state = next_poisson(max(mean * norm, 0.0), state)
    return state, spare, has_spare, counts / norm


@numba.njit(cache=True, parallel=True)
def _densify_kernel(pos, frac, bg, bg_std, normalization, has_norm, frame_ptr, index, intensity, dummy, model,
                    factor, keys, truncate, cutoff, noise_floor, is_integer, lo, hi, out):
    """``keys`` (nframes,) uint64: the random stream of each frame (engine.rng.stream_key)."""
    nframes, ny, nx = out.shape
    nbins = bg.shape[1]
    for row in numba.prange(nframes * ny):
        f, i = row // ny, row % ny
        # one random stream per (seed, frame of the file, row): reproducible whatever the threads or batches
        state = pixel_state(keys[f], i)
        spare, has_spare = 0.0, False
        for j in range(nx):
            p = pos[i, j]
            if p < 0:
                out[f, i, j] = dummy
                continue
            w = frac[i, j]
            nxt = min(p + 1, nbins - 1)
            mean = (1.0 - w) * bg[f, p] + w * bg[f, nxt]
            norm = np.float64(normalization[i, j]) if has_norm else 1.0
            value = mean
            if model != 0:
                std = (1.0 - w) * bg_std[f, p] + w * bg_std[f, nxt]
                state, spare, has_spare, value = _draw(state, spare, has_spare, model, mean, std, norm, factor)
                if truncate:
                    # a pixel that was not stored was at most this high (normalised units): the picking threshold
                    ceiling = mean + max(noise_floor, cutoff * np.sqrt(std * std + noise_floor * noise_floor))
                    attempts = 1
                    while value > ceiling and attempts < 32:
                        state, spare, has_spare, value = _draw(state, spare, has_spare, model, mean, std, norm,
                                                               factor)
                        attempts += 1
                    value = min(value, ceiling)  # (almost) never reached after 32 draws
            value *= norm
            if is_integer:
                value = min(max(np.floor(value + 0.5), lo), hi)
            out[f, i, j] = value
    # stored pixels last (pyFAI's files do not sort them within a frame, so no per-row split)
    for f in numba.prange(nframes):
        for k in range(frame_ptr[f], frame_ptr[f + 1]):
            q = index[k]
            out[f, q // nx, q % nx] = intensity[k]


class Densifier:
    """Densification bound to one sparse file's static arrays; the per-pixel bin positions are computed once.

    Args:
        radius_map: float ``(ny, nx)``: radius of each pixel centre in the unit of ``radial``, NaN = masked
            (the sparse file's ``mask`` dataset).
        radial: ``(nbins,)`` uniform bin centres (the file's ``radius``).
        normalization: float ``(ny, nx)`` multiplied into the background (flat x solid angle x ...), or None.
        dtype: output dtype (the file's intensity dtype).
        dummy: value of masked pixels (default 0 for integer dtypes, NaN for floats).
    """

    def __init__(self, radius_map: np.ndarray, radial: np.ndarray, *, normalization: np.ndarray | None = None,
                 dtype=np.float32, dummy=None):
        radial = np.asarray(radial, dtype=np.float64)
        self.nbins = len(radial)
        r0 = float(radial[0])
        idelta = (self.nbins - 1) / (float(radial[-1]) - r0) if self.nbins > 1 else 0.0
        self.shape = tuple(radius_map.shape)
        self.pos, self.frac = _bin_positions(np.ascontiguousarray(radius_map), r0, idelta, self.nbins)
        self.dtype = np.dtype(dtype)
        self.is_integer = self.dtype.kind in "iu"
        if dummy is None:
            dummy = 0 if self.is_integer else np.nan
        self.dummy = self.dtype.type(dummy)
        self.has_norm = normalization is not None
        self.normalization = (np.ascontiguousarray(normalization, dtype=np.float32) if self.has_norm
                              else np.ones((1, 1), np.float32))
        if self.has_norm and self.normalization.shape != self.shape:
            raise ParameterError(f"densify: normalization {self.normalization.shape} and radius map {self.shape} "
                                 "differ in shape")
        info = np.iinfo(self.dtype) if self.is_integer else None
        self.limits = (float(info.min), float(info.max)) if info else (0.0, 0.0)

    def __call__(self, background_avg: np.ndarray, background_std: np.ndarray | None, frame_ptr: np.ndarray,
                 index: np.ndarray, intensity: np.ndarray, *, noise: str = "none", factor: float = 1.0,
                 seed: int = 0, first_frame: int = 0, truncate: tuple[float, float] | None = None) -> np.ndarray:
        """Dense frames ``(nframes, ny, nx)`` of ``self.dtype``.

        Args:
            background_avg, background_std: ``(nframes, nbins)`` background mean / pixel std, normalised units
                (``background_std`` is needed only for ``noise="gaussian"``).
            frame_ptr: ``(nframes + 1,)`` offsets of each frame's stored pixels; ``index``/``intensity`` hold
                the pixels from offset ``frame_ptr[0]`` on (a slice of a file's frame_ptr goes with the
                matching slice of its index and intensity).
            index: uint32 flat pixel indices ``row * nx + col`` of the stored pixels; intensity: their values.
            noise: ``none``, ``gaussian`` or ``poisson`` (see the module docstring).
            factor: scale of the gaussian noise's std (FabIO's ``noisy`` factor).
            seed: random seed; first_frame: number in the file of the first frame, so that a frame gets the
                same noise whatever batch it is densified in.
            truncate: ``(cutoff_pick, noise)`` of the picking that made the file: noisy values above that
                picking threshold are drawn again, since a pixel that high would have been stored (without it
                the densified frames hold about twice as many high pixels as the originals); None: no limit.
        """
        if noise not in _MODEL_CODE:
            raise ParameterError(f"unknown noise model {noise!r}; choose one of {', '.join(NOISE_MODELS)}")
        bg = np.atleast_2d(np.asarray(background_avg, dtype=np.float32))
        nframes = len(frame_ptr) - 1
        if bg.shape != (nframes, self.nbins):
            raise ParameterError(f"densify: background of shape {bg.shape} for {nframes} frames of "
                                 f"{self.nbins} bins")
        if background_std is None:
            if noise == "gaussian" or truncate is not None:
                raise ParameterError("densify: gaussian noise and truncation need background_std")
            std = bg
        else:
            std = np.atleast_2d(np.asarray(background_std, dtype=np.float32))
        ptr = np.asarray(frame_ptr, dtype=np.int64)
        ptr = ptr - ptr[0]
        out = np.empty((nframes,) + self.shape, self.dtype)
        keys = np.array([stream_key(int(seed), STREAM_DENSIFY, int(first_frame) + f) for f in range(nframes)],
                        dtype=np.uint64)
        _densify_kernel(self.pos, self.frac, bg, std, self.normalization, self.has_norm, ptr,
                        np.ascontiguousarray(index, dtype=np.uint32), np.ascontiguousarray(intensity),
                        self.dummy, _MODEL_CODE[noise], float(factor), keys, truncate is not None and noise != "none",
                        *(truncate if truncate is not None else (0.0, 0.0)), self.is_integer, *self.limits, out)
        return out
