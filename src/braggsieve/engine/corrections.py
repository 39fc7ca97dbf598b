"""Per-pixel corrections and the preprocessing of raw frames (DESIGN.md algorithm 1).

``prepare_corrections`` folds the static arrays of a run (mask, dark, flat, solid angle, polarisation,
absorption, normalisation factor, gain, dark variance) into one :class:`Corrections`; ``preprocess`` turns a
batch of raw frames into signal and variance in photons, with every invalid pixel set to NaN:

* signal   = (raw - dark) / gain                                   [photons]
* norm     = flat * solid angle * polarisation * absorption * normalisation factor   (per pixel, static)
* variance = max(signal, 1) + dark_variance / gain**2              [photons**2]  (Poisson estimate), or
             (variance + dark_variance) / gain**2                  (explicit variance, given in ADU**2)

The normalised intensity of a pixel is ``signal / norm``.  A pixel is invalid in a frame when it is in the
static mask, carries a detector marker (all bits set on unsigned integers: 0xFFFF, 0xFFFFFFFF; -1 and -2 on
int32, Pilatus' gap and bad-pixel values), equals ``dummy`` (within ``delta_dummy``), is NaN or infinite, or
is at or above ``saturation`` (raw value).

Difference from pyFAI: pyFAI's Poisson variance is ``max(raw, 1)`` taken before the dark subtraction;
here it is the dark-subtracted signal in photons, which is what the photon count's variance is for an
integrating detector.  Without dark and with gain 1 the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..errors import ParameterError
from .params import CorrectionParams


@dataclass(frozen=True)
class Corrections:
    """Static per-pixel corrections of a run, all ``(ny, nx)``.

    Attributes:
        mask: bool, True = bad pixel (user mask, plus pixels whose dark, flat or norm is unusable).
        norm: float32, flat x solid angle x polarisation x absorption x normalisation factor (> 0 where
            not masked).
        dark: float32 in ADU, or None.
        dark_variance: float32 in ADU**2, or None.
        gain: ADU per photon, a float or a float32 ``(ny, nx)`` map.
        dummy, delta_dummy: raw value marking invalid pixels, and the tolerance around it (None = none).
        saturation: raw values at or above this are invalid (None = no limit).
    """

    mask: np.ndarray
    norm: np.ndarray
    dark: np.ndarray | None
    dark_variance: np.ndarray | None
    gain: float | np.ndarray
    dummy: float | None
    delta_dummy: float | None
    saturation: float | None

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape


@dataclass(frozen=True)
class Preprocessed:
    """A batch of frames ready to integrate: ``signal`` and ``variance`` float32 ``(nframes, ny, nx)``,
    NaN where the pixel is invalid in that frame; ``norm`` float32 ``(ny, nx)`` = ``Corrections.norm``.

    ``variance`` is the explicit variance when one was given, else the Poisson estimate (also under the
    azimuthal model, whose integration does not use it)."""

    signal: np.ndarray
    variance: np.ndarray
    norm: np.ndarray

    @property
    def nframes(self) -> int:
        return self.signal.shape[0]


def _checked(name: str, array, shape) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    if array.shape != tuple(shape):
        raise ParameterError(f"{name} has shape {array.shape}, expected the detector's {tuple(shape)}")
    return array


def prepare_corrections(shape: tuple[int, int], params: CorrectionParams, *, mask=None, dark=None, flat=None,
                        solid_angle=None, polarization=None, absorption=None, dark_variance=None,
                        gain=None) -> Corrections:
    """Combine the static correction arrays of a run (each ``(ny, nx)`` or None).

    Args:
        shape: ``(ny, nx)`` of the frames.
        params: which corrections apply and the scalar values (normalisation factor, gain, dummy, ...).
        mask: True = bad.  dark: ADU.  flat: relative response (1 = nominal).
        solid_angle: relative solid angle (1 at normal incidence), required when ``params.solid_angle``.
        polarization: polarisation factor map, required when ``params.polarization`` is set.
        absorption: relative sensor efficiency.  dark_variance: ADU**2.
        gain: optional float32 map of ADU per photon; overrides the scalar ``params.gain``.

    Pixels whose dark, flat or norm is not finite, or whose norm is not positive, are added to the mask.
    """
    shape = (int(shape[0]), int(shape[1]))
    mask = _checked("mask", mask, shape)
    bad = np.zeros(shape, bool) if mask is None else mask.astype(bool)
    norm = np.full(shape, params.normalization_factor, np.float64)
    if params.solid_angle:
        if solid_angle is None:
            raise ParameterError("solid-angle correction requested but no solid-angle map given")
        norm *= _checked("solid angle", solid_angle, shape)
    if params.polarization is not None:
        if polarization is None:
            raise ParameterError("polarisation correction requested but no polarisation map given")
        norm *= _checked("polarisation", polarization, shape)
    for name, array in (("flat", flat), ("absorption", absorption)):
        array = _checked(name, array, shape)
        if array is not None:
            norm *= array
            if params.dummy is not None and name == "flat":  # pyFAI also masks a flat equal to dummy
                bad |= _is_dummy(array, params.dummy, params.delta_dummy)
    with np.errstate(invalid="ignore"):
        bad |= ~(np.isfinite(norm) & (norm > 0))
    dark = _checked("dark", dark, shape)
    if dark is not None:
        dark = dark.astype(np.float32)
        bad |= ~np.isfinite(dark)
    dark_variance = _checked("dark variance", dark_variance, shape)
    if dark_variance is not None:
        dark_variance = dark_variance.astype(np.float32)
        bad |= ~np.isfinite(dark_variance)
    gain_value: float | np.ndarray = float(params.gain)
    if gain is not None:
        gain_value = _checked("gain", gain, shape).astype(np.float32)
        with np.errstate(invalid="ignore"):
            bad |= ~(np.isfinite(gain_value) & (gain_value > 0))
    corrections = Corrections(mask=bad, norm=np.where(bad, 1.0, norm).astype(np.float32), dark=dark,
                              dark_variance=dark_variance, gain=gain_value, dummy=params.dummy,
                              delta_dummy=params.delta_dummy, saturation=params.saturation)
    corrections.norm.flags.writeable = False  # static for the run: the engine caches it in CSR order
    return corrections


def _is_dummy(values: np.ndarray, dummy: float, delta_dummy: float | None) -> np.ndarray:
    if delta_dummy:
        return np.abs(values - dummy) <= delta_dummy
    return values == dummy


def detector_markers(dtype: np.dtype) -> np.ndarray:
    """float64 array of the raw values that mark gaps and bad pixels for frames of ``dtype``:
    all bits set for unsigned integers (Eiger 0xFFFF / 0xFFFFFFFF), -1 and -2 for int32 (Pilatus)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        return np.array([float(np.iinfo(dtype).max)])
    if dtype == np.int32:
        return np.array([-1.0, -2.0])
    return np.empty(0)


@numba.njit(parallel=True, cache=True, nogil=True)
def _preprocess_kernel(raw, mask, dark, dark_variance, gain_map, gain, explicit, markers, dummy,
                       delta_dummy, check_dummy, saturation, signal, variance):
    """raw (n, npix) any dtype -> signal, variance float32 (n, npix); the per-pixel inputs are (npix,)
    or empty when absent; ``explicit`` is (n, npix) ADU**2 or empty (Poisson).  The inner loop has no
    branch on the pixel's value (invalid pixels are computed too, then replaced by NaN), so that it
    vectorises."""
    nframes, npix = raw.shape
    has_dark = dark.size > 0
    has_dark_var = dark_variance.size > 0
    has_gain_map = gain_map.size > 0
    has_explicit = explicit.size > 0
    nmarkers = markers.size
    chunk = 4096
    nchunks = (npix + chunk - 1) // chunk
    for k in numba.prange(nframes * nchunks):
        f = k // nchunks
        start = (k - f * nchunks) * chunk
        for i in range(start, min(start + chunk, npix)):
            value = np.float64(raw[f, i])
            valid = (not mask[i]) & np.isfinite(value) & (value < saturation)
            for m in range(nmarkers):
                valid &= value != markers[m]
            if check_dummy:
                if delta_dummy > 0:
                    valid &= not abs(value - dummy) <= delta_dummy
                else:
                    valid &= value != dummy
            g = gain_map[i] if has_gain_map else gain
            if has_dark:
                value -= dark[i]
            s = value / g
            v = explicit[f, i] / (g * g) if has_explicit else max(s, 1.0)
            if has_dark_var:
                v += dark_variance[i] / (g * g)
            signal[f, i] = s if valid else np.nan
            variance[f, i] = v if valid else np.nan


def preprocess(frames: np.ndarray, corrections: Corrections, error_model: str,
               variance: np.ndarray | None = None) -> Preprocessed:
    """Dark-subtract, convert to photons and estimate the variance of a batch of raw frames.

    Args:
        frames: ``(nframes, ny, nx)`` or ``(ny, nx)`` in the detector's raw dtype.
        corrections: from :func:`prepare_corrections` for the same ``(ny, nx)``.
        error_model: ``poisson``, ``azimuthal``, ``hybrid`` or ``variance``; ``variance`` needs ``variance``.
        variance: explicit variance of the raw values in ADU**2, ``(nframes, ny, nx)`` or ``(ny, nx)``.

    Returns :class:`Preprocessed` (signal and variance float32, NaN where invalid).
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    if frames.ndim != 3 or frames.shape[1:] != corrections.shape:
        raise ParameterError(f"frames of shape {frames.shape} do not match the detector {corrections.shape}")
    if frames.dtype.kind not in "uif":
        raise ParameterError(f"frames of dtype {frames.dtype} are not numbers")
    if not frames.dtype.isnative or frames.dtype == np.float16:  # the kernel reads native integers and floats
        frames = frames.astype(np.float32 if frames.dtype == np.float16 else frames.dtype.newbyteorder("="))
    nframes = frames.shape[0]
    npix = corrections.mask.size
    explicit = np.empty((0, 0), np.float32)
    if error_model == "variance":
        if variance is None:
            raise ParameterError("error model 'variance' needs an explicit variance array")
        explicit = np.broadcast_to(np.asarray(variance, np.float32), frames.shape).reshape(nframes, npix)
        explicit = np.ascontiguousarray(explicit)
    elif variance is not None:
        raise ParameterError(f"an explicit variance was given with error model {error_model!r}; use 'variance'")
    empty = np.empty(0, np.float32)
    gain = corrections.gain
    gain_map = gain.ravel() if isinstance(gain, np.ndarray) else empty
    signal = np.empty((nframes, npix), np.float32)
    var_out = np.empty((nframes, npix), np.float32)
    _preprocess_kernel(np.ascontiguousarray(frames).reshape(nframes, npix), corrections.mask.ravel(),
                       empty if corrections.dark is None else corrections.dark.ravel(),
                       empty if corrections.dark_variance is None else corrections.dark_variance.ravel(),
                       gain_map, float(gain) if not isinstance(gain, np.ndarray) else 1.0, explicit,
                       detector_markers(frames.dtype),
                       0.0 if corrections.dummy is None else float(corrections.dummy),
                       0.0 if not corrections.delta_dummy else float(corrections.delta_dummy),
                       corrections.dummy is not None,
                       np.inf if corrections.saturation is None else float(corrections.saturation),
                       signal, var_out)
    shape = (nframes,) + corrections.shape
    return Preprocessed(signal=signal.reshape(shape), variance=var_out.reshape(shape), norm=corrections.norm)
