"""Bad pixels planted with a ground-truth map of their type.

:func:`plant_bad_pixels` chooses defective pixels (never on gaps) and returns their type map together with a
:class:`~braggsieve.simulate.response.PixelResponse` that carries the defects; recording frames with it
(:func:`~braggsieve.simulate.response.record_frames`) applies them.  The same two functions serve SSX frames,
dark series and flat-field series (the mask maker's tests).

Types (code: statistic that betrays the pixel; ``g`` = gain in ADU/photon, 1 for counting detectors):

==========  ====  ==========================================================================================
dead           1  no response to photons: 0 counts (integrating: pedestal and read noise only)
hot            2  ``hot_rate`` extra photons per frame (Poisson): high mean in darks
noisy          3  extra Gaussian noise of ``noisy_sigma`` photons (x g): large dark std
offset         4  constant offset of +-``offset`` photons (x g): dark mean off
bimodal        5  +``bimodal_offset`` photons (x g) in a random half of the frames: two-level histogram
stuck          6  always the same raw value (pedestal + uniform in [0, ``stuck_max``] photons x g): zero std
under          7  flat-field efficiency ``1 - under_loss`` (default 0.5): low under flat illumination
over           8  flat-field efficiency ``1 + over_gain`` (default 0.5): high under flat illumination
==========  ====  ==========================================================================================
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .params import DEFECT_TYPES, BadPixelParams
from .response import PixelResponse

def plant_bad_pixels(response: PixelResponse, params: BadPixelParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, PixelResponse]:
    """Choose defective pixels and their types; returns the type map uint8 ``(ny, nx)`` (codes of
    ``DEFECT_TYPES``, 0 = good) and ``response`` with the defects added (any earlier defects are replaced)."""
    type_map = np.zeros(response.shape, np.uint8)
    types = params.types()
    candidates = np.flatnonzero(~response.gap)
    count = int(round(params.bad_fraction * candidates.size)) if types else 0
    chosen = np.sort(rng.choice(candidates, size=count, replace=False))
    codes = np.array([DEFECT_TYPES[t] for t in types], np.uint8)[rng.integers(0, len(types), count)] \
        if count else np.zeros(0, np.uint8)
    type_map.reshape(-1)[chosen] = codes

    gain = response.gain.reshape(-1)[chosen]
    efficiency = response.response.copy()
    flat = efficiency.reshape(-1)
    extra_rate = np.zeros(count, np.float32)
    offset = np.zeros(count, np.float32)
    toggle = np.zeros(count, np.float32)
    sigma = np.zeros(count, np.float32)
    is_ = {name: codes == code for name, code in DEFECT_TYPES.items()}
    flat[chosen[is_["dead"]]] = 0.0
    extra_rate[is_["hot"]] = params.hot_rate
    sigma[is_["noisy"]] = params.noisy_sigma * gain[is_["noisy"]]
    signs = rng.choice(np.array([-1.0, 1.0]), count)
    offset[is_["offset"]] = (signs * params.offset * gain)[is_["offset"]]
    toggle[is_["bimodal"]] = params.bimodal_offset * gain[is_["bimodal"]]
    flat[chosen[is_["under"]]] *= 1.0 - params.under_loss
    flat[chosen[is_["over"]]] *= 1.0 + params.over_gain
    stuck = np.full(count, np.nan, np.float32)
    stuck[is_["stuck"]] = np.round(rng.uniform(0, params.stuck_max, count) * gain + response.pedestal.reshape(-1)[
        chosen])[is_["stuck"]]
    return type_map, dataclasses.replace(response, response=efficiency, defect_index=chosen.astype(np.int64),
                                         extra_rate=extra_rate, offset=offset, toggle_offset=toggle,
                                         extra_sigma=sigma, stuck_value=stuck)
