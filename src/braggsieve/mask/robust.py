"""Robust Gaussian fit and robust local plane fit, vectorised over many independent vectors.

The model (after Sadri et al. 2022, Appendix A, re-derived here): most samples of a vector come from one
Gaussian, the rest are outliers of any kind.  For each vector of ``N`` finite samples:

1. **Location by least k-th order statistics.**  With ``h = ceil(likely * N)`` (``likely`` = 0.5 gives the
   paper's ``k = N/2``), the location whose ``h``-th smallest absolute residual is smallest is the middle of
   the shortest window holding ``h`` sorted samples (global LkOS minimum, found in O(N) on the sorted
   vector).  Concentration steps then replace the location by the mean of the ``h`` samples nearest to it
   until that set stops changing (the FLkOS iteration; at most ``iterations`` steps, each O(log N)-ish on the
   sorted vector).  This finds the mode of skewed (Poisson-like) densities, not their mean.
2. **Scale by MSSE.**  Residuals are taken in increasing order (merged outwards from the location, O(N),
   no second sort); starting from the ``h`` smallest, the inlier set grows while the next squared residual
   stays within ``lam**2`` times the running variance of the inliers (floored at ``min_sigma**2``).
3. **Result**: mean and standard deviation (ddof=1) of the inliers.  When the growth stopped on a residual
   (and ``lam >= 2``), the variance is divided by that of a unit normal truncated where MSSE stops on
   Gaussian data (c = lam * sqrt(var(c)); c = 2.95 for lam = 3), which removes the -2 % bias of plain MSSE;
   then the standard deviation is floored at ``min_sigma``.

Discrete data (integer counts, means of a few integer frames) are handled by spreading each group of tied
values evenly over the data's quantisation step before step 1: a sample ``v`` tied ``m`` times becomes
``v + step * ((q + 0.5) / m - 0.5)``, ``q = 0..m-1``.  The step is the smallest positive gap between
consecutive sorted samples of the *central* part of the vector (the middle ``(1 + likely) / 2`` fraction,
75 % for ``likely`` = 0.5), so that outliers cannot set it: in a block of zero-count pixels with one hot
pixel at 200 counts the only gap is 0 -> 200, and spreading the zeros over 200 counts would give the bulk a
scale of 200 / sqrt(12) and the hot pixel an SNR of sqrt(12) = 3.5 whatever its rate.  When the central part
holds a single value the data have no scale at their resolution (sigma 0, then ``min_sigma``).  Ties
therefore neither make the scale of real discrete noise collapse to 0 (Poisson(0.5) gives sigma ~ 0.7, not
0) nor slow anything down: the cost is one O(N log N) sort per vector whatever the data.

Non-finite samples (NaN, inf) are ignored.  A vector with fewer than 2 finite samples gets NaN.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..errors import ParameterError

MAX_CONCENTRATION_STEPS = 12


def _check(lam: float, likely: float, min_sigma: float) -> None:
    if not lam > 0:
        raise ParameterError(f"the robust-fit lambda must be positive, got {lam}")
    if not 0.0 < likely <= 1.0:
        raise ParameterError(f"the robust-fit inlier fraction must be in (0, 1], got {likely}")
    if not min_sigma >= 0:
        raise ParameterError(f"the minimum sigma must be >= 0, got {min_sigma}")


@njit(cache=True)
def _truncation_factor(lam):
    """Variance of a unit normal truncated at the point c where MSSE stops (c = lam * sqrt(var(c)))."""
    c = lam
    var = 1.0
    for _ in range(50):
        phi = math.exp(-0.5 * c * c) / math.sqrt(2.0 * math.pi)
        var = 1.0 - 2.0 * c * phi / math.erf(c / math.sqrt(2.0))
        c = lam * math.sqrt(var)
    return var


@njit(cache=True)
def _spread_ties(x, n, h):
    """Spread groups of equal values of the sorted ``x[:n]`` over the quantisation step (in place).

    The step is the smallest positive gap between consecutive samples among the central ``(n + h) / 2``
    (``h`` = the LkOS sample count), so that a few outliers far from a tied bulk cannot set it.
    """
    skip = (n - (n + h + 1) // 2) // 2
    step = np.inf
    for i in range(skip + 1, n - skip):
        gap = x[i] - x[i - 1]
        if gap > 0.0 and gap < step:
            step = gap
    if step == np.inf:
        return
    i = 0
    while i < n:
        j = i + 1
        while j < n and x[j] == x[i]:
            j += 1
        m = j - i
        if m > 1:
            value = x[i]
            for q in range(m):
                x[i + q] = value + step * ((q + 0.5) / m - 0.5)
        i = j


@njit(cache=True)
def _window_mean(x, start, h):
    total = 0.0
    for i in range(start, start + h):
        total += x[i]
    return total / h


@njit(cache=True)
def _nearest_window(x, n, h, theta, start):
    """Start of the window of ``h`` sorted samples nearest to ``theta``, searched from ``start``."""
    while start > 0 and theta - x[start - 1] < x[start + h - 1] - theta:
        start -= 1
    while start + h < n and x[start + h] - theta < theta - x[start]:
        start += 1
    return start


@njit(cache=True)
def _fit_sorted(x, n, h, lam, min_sigma, resid):
    """Robust (mean, sigma, n_inliers) of the sorted finite samples ``x[:n]``; ``resid`` is scratch (n).

    ``x`` is modified (ties spread).  Needs n >= 2.
    """
    _spread_ties(x, n, h)
    # 1. least k-th order statistic: the shortest window of h sorted samples ...
    start = 0
    width = x[h - 1] - x[0]
    for i in range(1, n - h + 1):
        w = x[i + h - 1] - x[i]
        if w < width:
            width = w
            start = i
    theta = _window_mean(x, start, h)
    # ... refined by concentration steps (mean of the h samples nearest to the location)
    for _ in range(MAX_CONCENTRATION_STEPS):
        new_start = _nearest_window(x, n, h, theta, start)
        if new_start == start:
            break
        start = new_start
        theta = _window_mean(x, start, h)
    # 2. residuals in increasing order, merged outwards from theta; remember which side each came from
    left = start
    while left > 0 and x[left - 1] >= theta:
        left -= 1
    while left < n and x[left] < theta:
        left += 1
    lo = left - 1
    hi = left
    for q in range(n):
        if hi >= n or (lo >= 0 and theta - x[lo] <= x[hi] - theta):
            resid[q] = x[lo] - theta
            lo -= 1
        else:
            resid[q] = x[hi] - theta
            hi += 1
    # MSSE: grow the inlier set from the h nearest while the next residual is within lam * running sigma
    ssum = 0.0
    for q in range(h):
        ssum += resid[q] * resid[q]
    m = h
    floor2 = min_sigma * min_sigma
    truncated = False
    while m < n:
        running = ssum / (m - 1) if m > 1 else 0.0
        if running < floor2:
            running = floor2
        r2 = resid[m] * resid[m]
        if r2 > lam * lam * running:
            truncated = True
            break
        ssum += r2
        m += 1
    # 3. mean and std of the inliers (residuals are relative to theta: shift back)
    mean_r = 0.0
    for q in range(m):
        mean_r += resid[q]
    mean_r /= m
    var = 0.0
    for q in range(m):
        d = resid[q] - mean_r
        var += d * d
    var = var / (m - 1) if m > 1 else 0.0
    if truncated and lam >= 2.0:
        var /= _truncation_factor(lam)
    sigma = math.sqrt(var)
    if sigma < min_sigma:
        sigma = min_sigma
    return theta + mean_r, sigma, m


@njit(cache=True, parallel=True)
def _fit_rows(values, lam, likely, min_sigma, mu, sigma, inliers):
    nvec, nsamp = values.shape
    for v in prange(nvec):
        x = np.empty(nsamp)
        n = 0
        for j in range(nsamp):
            value = values[v, j]
            if np.isfinite(value):
                x[n] = value
                n += 1
        if n < 2:
            mu[v] = np.nan
            sigma[v] = np.nan
            inliers[v] = n
            continue
        xs = np.sort(x[:n])
        h = int(math.ceil(likely * n))
        if h < 2:
            h = 2
        resid = np.empty(n)
        mu[v], sigma[v], inliers[v] = _fit_sorted(xs, n, h, lam, min_sigma, resid)


def robust_gaussian_fit(values: np.ndarray, axis: int = -1, *, lam: float = 3.0, likely: float = 0.5,
                        min_sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust mean and standard deviation of every vector along ``axis`` of ``values``.

    ``values``: any real array; NaN/inf samples are ignored.  ``lam``: MSSE threshold in units of sigma
    (3 in the paper's Fig. 11; the mask maker uses its own lambda, 8 by default).  ``likely``: the fraction
    of samples assumed good at the start (k/N, > 0.5 tolerates up to 1 - likely outliers).  ``min_sigma``:
    lower bound of the scale, in the units of ``values`` (1/6 for photon-counting detectors).

    Returns ``(mu, sigma, n_inliers)``, each of the shape of ``values`` without ``axis``: float64, float64,
    int64.  Vectors with fewer than 2 finite samples give NaN.  Runs the vectors in parallel (numba).
    """
    _check(lam, likely, min_sigma)
    moved = np.moveaxis(np.asarray(values), axis, -1)
    batch_shape = moved.shape[:-1]
    flat = np.ascontiguousarray(moved.reshape(-1, moved.shape[-1]), dtype=np.float64)
    mu = np.empty(flat.shape[0])
    sigma = np.empty(flat.shape[0])
    inliers = np.empty(flat.shape[0], dtype=np.int64)
    if flat.shape[1] > 0:
        _fit_rows(flat, float(lam), float(likely), float(min_sigma), mu, sigma, inliers)
    else:
        mu[:] = np.nan
        sigma[:] = np.nan
        inliers[:] = 0
    return mu.reshape(batch_shape), sigma.reshape(batch_shape), inliers.reshape(batch_shape)


# ---------------------------------------------------------------------------------------------------------
# Robust plane z = a*dy + b*dx + c in square tiles of an image (feature F6)

@njit(cache=True)
def _solve_plane(dy, dx, z, use, n):
    """Least-squares plane through the samples with ``use[i]``; returns (a, b, c) or c=NaN when singular."""
    s_yy = s_xx = s_xy = s_y = s_x = s_1 = s_zy = s_zx = s_z = 0.0
    for i in range(n):
        if use[i]:
            y = dy[i]
            x = dx[i]
            s_yy += y * y
            s_xx += x * x
            s_xy += x * y
            s_y += y
            s_x += x
            s_1 += 1.0
            s_zy += z[i] * y
            s_zx += z[i] * x
            s_z += z[i]
    # normal equations [[yy xy y] [xy xx x] [y x 1]] (a b c) = (zy zx z), by Cramer's rule
    det = (s_yy * (s_xx * s_1 - s_x * s_x) - s_xy * (s_xy * s_1 - s_x * s_y) + s_y * (s_xy * s_x - s_xx * s_y))
    if abs(det) < 1e-9 * max(1.0, s_1) ** 3:
        return 0.0, 0.0, s_z / s_1 if s_1 > 0 else np.nan
    da = (s_zy * (s_xx * s_1 - s_x * s_x) - s_xy * (s_zx * s_1 - s_x * s_z) + s_y * (s_zx * s_x - s_xx * s_z))
    db = (s_yy * (s_zx * s_1 - s_z * s_x) - s_zy * (s_xy * s_1 - s_x * s_y) + s_y * (s_xy * s_z - s_zx * s_y))
    dc = (s_yy * (s_xx * s_z - s_x * s_zx) - s_xy * (s_xy * s_z - s_x * s_zy) + s_zy * (s_xy * s_x - s_xx * s_y))
    return da / det, db / det, dc / det


@njit(cache=True)
def _plane_tile(image, out, y0, y1, x0, x1, lam, likely, min_sigma, min_samples):
    """Robust plane in image[y0:y1, x0:x1]; writes (value - plane) / sigma into ``out`` (NaN if no fit)."""
    size = (y1 - y0) * (x1 - x0)
    dy = np.empty(size)
    dx = np.empty(size)
    z = np.empty(size)
    cy = 0.5 * (y0 + y1 - 1)
    cx = 0.5 * (x0 + x1 - 1)
    n = 0
    for y in range(y0, y1):
        for x in range(x0, x1):
            value = image[y, x]
            if np.isfinite(value):
                dy[n] = y - cy
                dx[n] = x - cx
                z[n] = value
                n += 1
    if n < min_samples:
        for y in range(y0, y1):
            for x in range(x0, x1):
                out[y, x] = np.nan
        return
    h = int(math.ceil(likely * n))
    if h < 4:
        h = 4
    use = np.zeros(n, dtype=np.bool_)
    resid = np.empty(n)
    absr = np.empty(n)
    # start: constant plane at the LkOS location of the values
    xs = np.sort(z[:n])
    c = _fit_sorted(xs, n, h, lam, min_sigma, resid)[0]
    a = 0.0
    b = 0.0
    best = (a, b, c)
    best_cut = np.inf
    for _ in range(MAX_CONCENTRATION_STEPS):
        for i in range(n):
            absr[i] = abs(z[i] - (a * dy[i] + b * dx[i] + c))
        cut = np.sort(absr[:n])[h - 1]
        if not cut < best_cut:  # the h-th residual stopped shrinking: keep the best plane
            break
        best_cut = cut
        best = (a, b, c)
        for i in range(n):
            use[i] = absr[i] <= cut
        a, b, c = _solve_plane(dy, dx, z, use, n)
    a, b, c = best
    for i in range(n):
        resid[i] = z[i] - (a * dy[i] + b * dx[i] + c)
    rs = np.sort(resid[:n])
    shift, sigma, _ = _fit_sorted(rs, n, h, lam, min_sigma, absr)
    if not sigma > 0:
        sigma = np.nan
    for y in range(y0, y1):
        for x in range(x0, x1):
            value = image[y, x]
            if np.isfinite(value):
                plane = a * (y - cy) + b * (x - cx) + c + shift
                out[y, x] = (value - plane) / sigma
            else:
                out[y, x] = np.nan


@njit(cache=True, parallel=True)
def _plane_snr(images, out, tile, lam, likely, min_sigma, min_samples):
    nimg, ny, nx = images.shape
    nty = max(1, ny // tile)  # tiles of tile..2*tile-1 pixels: no sliver at the edges
    ntx = max(1, nx // tile)
    for job in prange(nimg * nty * ntx):
        k = job // (nty * ntx)
        t = job % (nty * ntx)
        ty = t // ntx
        tx = t % ntx
        _plane_tile(images[k], out[k], ty * ny // nty, (ty + 1) * ny // nty, tx * nx // ntx,
                    (tx + 1) * nx // ntx, lam, likely, min_sigma, min_samples)


def local_plane_snr(images: np.ndarray, *, tile: int = 15, lam: float = 3.0, likely: float = 0.5,
                    min_sigma: float = 0.0) -> np.ndarray:
    """Each pixel's distance from a robust local plane, in units of the plane's robust residual sigma.

    ``images``: (..., ny, nx) real, NaN = masked.  The image is cut in square ``tile`` x ``tile`` tiles
    (15 x 15 = 225 pixels by default, the size the paper recommends; edge tiles absorb the remainder, so
    tiles are ``tile`` to ``2 * tile - 1`` pixels wide); in each, a plane
    ``z = a*row + b*col + c`` is fitted robustly (least k-th order start, concentration steps on the
    ``likely`` fraction of nearest pixels) and the residuals' robust scale found as in
    :func:`robust_gaussian_fit`.  Returns float32 (..., ny, nx): (value - plane) / sigma, NaN for masked
    pixels and for tiles with fewer than 12 valid pixels.
    """
    _check(lam, likely, min_sigma)
    if tile < 3:
        raise ParameterError(f"the local-plane tile must be at least 3 pixels, got {tile}")
    arr = np.asarray(images)
    stack = np.ascontiguousarray(arr.reshape((-1,) + arr.shape[-2:]), dtype=np.float64)
    out = np.empty(stack.shape, dtype=np.float32)
    _plane_snr(stack, out, int(tile), float(lam), float(likely), float(min_sigma), 12)
    return out.reshape(arr.shape)
