"""Counter-based random numbers for numba kernels (simulation noise, densification noise): reproducible
whatever the thread count.

A stream is keyed by ``(seed, purpose, frame)``; inside a kernel, pixel ``p`` of that stream starts from
``pixel_state(key, p)`` and draws successive numbers by advancing its own 64-bit counter (SplitMix64).  The
numbers a pixel gets therefore depend only on (seed, purpose, frame, pixel), never on how ``prange`` splits
the work, so the same seed gives bitwise the same frames on 1 or 64 cores.

Distributions: uniform on [0, 1) (53 bits), standard normal (Box-Muller), Poisson (table-guided inversion
below a mean of 10, Hoermann's transformed rejection with squeeze, PTRS, above).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0

# Purposes: distinct streams for distinct random quantities of the same frame.
STREAM_NOISE = 1
STREAM_DEFECTS = 2
STREAM_FRAME = 3
STREAM_DENSIFY = 4


@njit(cache=True)
def _mix(z):
    """SplitMix64 finaliser: a bijective 64-bit hash."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def stream_key(seed: int, purpose: int, frame: int = 0) -> np.uint64:
    """64-bit key of the stream ``(seed, purpose, frame)`` (seed, purpose, frame >= 0)."""
    with np.errstate(over="ignore"):
        key = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
        for part in (purpose, frame):
            key = np.uint64(_mix(key + _GOLDEN * np.uint64(part + 1)))
    return key


@njit(cache=True)
def pixel_state(key, pixel):
    """Initial counter of ``pixel`` (int) in the stream ``key`` (uint64)."""
    return _mix(np.uint64(key) ^ (np.uint64(pixel) * _GOLDEN))


@njit(cache=True)
def next_uniform(state):
    """Advance ``state``; returns ``(u, new_state)`` with u uniform on [0, 1)."""
    state = np.uint64(state) + _GOLDEN
    return float(_mix(state) >> _S11) * _TWO_M53, state


@njit(cache=True)
def next_normal(state):
    """Advance ``state``; returns ``(z, new_state)`` with z standard normal (Box-Muller, one of the pair)."""
    u1, state = next_uniform(state)
    u2, state = next_uniform(state)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2), state


def _poisson_tables(step: float, top: float, length: int, guide_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative Poisson distributions for means 0, step, 2 step, ... < top (rows, ``length`` values each) and
    their guide tables: ``guide[j, i]`` is the smallest k with ``cdf[j, k] > i / guide_size``."""
    means = np.arange(0.0, top, step)
    k = np.arange(length)
    log_pmf = -means[:, None] + k[None, :] * np.log(np.maximum(means, 1e-300))[:, None] \
        - np.cumsum(np.log(np.maximum(k, 1)))[None, :]
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    cdf[0] = 1.0  # mean 0: always 0
    levels = np.arange(guide_size) / guide_size
    guide = np.stack([np.searchsorted(row, levels, side="right") for row in cdf]).astype(np.int64)
    return cdf, np.minimum(guide, length - 1)


_TABLE_STEP = 1.0 / 16.0
_TABLE_TOP = 10.0
_TABLE_LENGTH = 48        # P(k >= 48) < 1e-14 for means below 10
_GUIDE_SIZE = 64
_CDF, _GUIDE = _poisson_tables(_TABLE_STEP, _TABLE_TOP, _TABLE_LENGTH, _GUIDE_SIZE)


@njit(cache=True)
def _poisson_inversion(lam, u):
    """Smallest k with u < P(X <= k), X ~ Poisson(lam): sequential search from 0."""
    p = math.exp(-lam)
    cdf = p
    k = 0.0
    while u >= cdf and k < 1000.0:
        k += 1.0
        p *= lam / k
        cdf += p
    return k


@njit(cache=True)
def next_poisson(lam, state):
    """Advance ``state``; returns ``(k, new_state)`` with k ~ Poisson(lam) as float (0 for lam <= 0).

    Below a mean of 10, X = Y + Z with Y ~ Poisson(lam0), lam0 = lam rounded down to a multiple of 1/16, drawn
    by inversion of a precomputed cumulative table through its guide table (one or two comparisons), and
    Z ~ Poisson(lam - lam0) by inversion, which is 0 without computing anything when the uniform is below
    1 - (lam - lam0) <= exp(-(lam - lam0)).  Exact: both parts are inversions of the true distributions.
    """
    if not lam > 0.0:
        return 0.0, state
    if lam < _TABLE_TOP:
        row = int(lam / _TABLE_STEP)
        rest = lam - row * _TABLE_STEP
        u, state = next_uniform(state)
        k = _GUIDE[row, int(u * _GUIDE_SIZE)]
        while k < _TABLE_LENGTH - 1 and u >= _CDF[row, k]:
            k += 1
        count = float(k) if u < _CDF[row, k] else _poisson_inversion(row * _TABLE_STEP, u)  # far tail
        u, state = next_uniform(state)
        if u >= 1.0 - rest:
            count += _poisson_inversion(rest, u)
        return count, state
    # Transformed rejection with squeeze (W. Hoermann, Insurance Math. Econom. 12, 39-45, 1993).
    slam = math.sqrt(lam)
    loglam = math.log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        u, state = next_uniform(state)
        v, state = next_uniform(state)
        u -= 0.5
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + lam + 0.43)
        if us >= 0.07 and v <= v_r:
            return k, state
        if k < 0.0 or (us < 0.013 and v > us):
            continue
        if (math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                <= -lam + k * loglam - math.lgamma(k + 1.0)):
            return k, state
