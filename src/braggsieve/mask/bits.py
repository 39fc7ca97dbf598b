"""The bit legend of braggsieve's uint32 bad-pixel masks (0 = good; any set bit = bad).

Bits 0-4 are those of the NeXus NXmx ``pixel_mask`` where NXmx names the defect; braggsieve's own findings
use free bits 9-13, inside the low 16 bits that NXmx readers treat as "do not use this pixel".
"""
from __future__ import annotations

import enum


class Bit(enum.IntEnum):
    """Bit numbers (``1 << Bit.X`` is the flag value)."""

    GAP = 0               # NXmx gap: module gap or ASIC edge from the detector layout
    DEAD = 1              # NXmx dead: constant value in every frame (flat series; dark series of integrating
                          # detectors) or dark noise far below its neighbours' (F3 low)
    UNDER_RESPONDING = 2  # NXmx under-responding: average local SNR under flat illumination too low (F6 low)
    OVER_RESPONDING = 3   # NXmx over-responding: average local SNR under flat illumination too high (F6 high)
    NOISY = 4             # NXmx noisy: dark noise (temporal std) far above its neighbours' (F3 high)
    OFFSET = 9            # dark level (temporal mean) far from its neighbours' (F2): hot or cold pixel
    GAIN_STAGES = 10      # gain-indicator levels of consecutive gain stages not separable (F4)
    GAIN_LEVEL = 11       # gain-indicator level of a stage far from its neighbours' (F5)
    NO_DATA = 12          # too few valid frames (NaN, detector markers, frames rejected by F1)
    INPUT_MASK = 13       # marked bad by the input file's own pixel mask


DESCRIPTIONS = {
    Bit.GAP: "gap or ASIC edge of the detector layout (NXmx bit 0)",
    Bit.DEAD: "dead: constant in every frame, or dark noise far below its neighbours' (NXmx bit 1)",
    Bit.UNDER_RESPONDING: "under-responding: average local SNR under flat field below -lambda (F6, NXmx bit 2)",
    Bit.OVER_RESPONDING: "over-responding: average local SNR under flat field above +lambda (F6, NXmx bit 3)",
    Bit.NOISY: "noisy: dark temporal std more than lambda robust sigmas above its neighbours' (F3, NXmx bit 4)",
    Bit.OFFSET: "offset: dark temporal mean more than lambda robust sigmas from its neighbours' (F2)",
    Bit.GAIN_STAGES: "gain stages not distinguishable: indicator levels of consecutive stages closer than "
                     "lambda combined sigmas (F4)",
    Bit.GAIN_LEVEL: "gain-indicator level more than lambda robust sigmas from its neighbours' (F5)",
    Bit.NO_DATA: "fewer valid frames than --min-frames (NaN, detector markers, outlier frames of F1)",
    Bit.INPUT_MASK: "marked bad by the input file's own pixel mask",
}


def flag(bit: Bit) -> int:
    """The uint32 value of one bit."""
    return 1 << int(bit)


def legend() -> dict[str, dict[str, object]]:
    """JSON-ready legend: bit name -> {"bit": n, "value": 1 << n, "description": ...}."""
    return {b.name: {"bit": int(b), "value": flag(b), "description": DESCRIPTIONS[b]} for b in Bit}
