"""The fixed part of a run: geometry, radial binning, static corrections and parameters (:class:`RunSetup`).

``build_setup(source, params, poni=..., mask=..., ...)`` makes it from file paths and parameter dataclasses;
the command line (``braggsieve.cli.common.load_geometry_and_corrections``) and the pipelines (process, stream,
the Dask workers, which receive a built setup) share it.

Geometry: the PONI file when one is given; otherwise it is derived from the first input's metadata (NXmx or
miniCBF header: distance, pixel size, beam centre, wavelength) and one log line says so.  The mask used is
always the union of the given mask, the input file's own pixel mask (NeXus ``pixel_mask``; Pilatus -1/-2 and
Eiger 0xFFFFFFFF markers of the first frame) and the detector's gaps.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.params import ClipParams, CorrectionParams, IntegrationParams
from ..errors import InputError, ParameterError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSetup:
    """Everything fixed for a run, built by :func:`build_setup`.

    Attributes:
        poni: the geometry (braggsieve.geometry.Poni), from a PONI file or derived from the input's metadata.
        geometry_source: where the geometry came from ("PONI file X" or "metadata of X").
        binning: the radial binning (engine.csr.RadialBinning) of the frames' shape.
        corrections: static per-pixel corrections (engine.corrections.Corrections); its mask holds the given
            mask, the input's own pixel mask, the detector gaps, and pixels with unusable corrections.
        params: {parameter class: instance} of the command, from the command line and config file.
        device: "cpu", "cuda" or "auto".
    """

    poni: Any
    geometry_source: str
    binning: Any
    corrections: Any
    params: dict[type, Any]
    device: str

    def param(self, cls: type):
        """The instance of parameter class ``cls`` (one of the command's)."""
        return self.params[cls]

    @property
    def integration(self) -> IntegrationParams:
        return self.params[IntegrationParams]

    @property
    def correction(self) -> CorrectionParams:
        return self.params[CorrectionParams]

    @property
    def clip(self) -> ClipParams | None:
        return self.params.get(ClipParams)

    def geometry_dict(self) -> dict[str, Any]:
        """The geometry as a JSON-ready dict (PONI parameters in SI units, the detector, where it came from)."""
        return {"source": self.geometry_source, **self.poni.as_dict()}

    def provenance(self, source, argv=None):
        """A started braggsieve.io.provenance.Provenance of this run over ``source`` (a FrameSource)."""
        from ..io.provenance import Provenance

        return Provenance.start({cls.__name__: value for cls, value in self.params.items()},
                                geometry=self.geometry_dict(), inputs=source.sources, argv=argv)


def _geometry(poni_path, source):
    """(Poni, description) from ``poni_path``, else from the first input's metadata."""
    from ..geometry import Poni, match_detector, read_poni

    if poni_path is not None:
        try:
            return read_poni(poni_path).for_shape(source.shape), f"PONI file {poni_path}"
        except ParameterError as exc:  # the frames do not have the PONI detector's shape
            raise InputError(f"{exc} (frames of {source.sources[0]})", poni_path) from None
    metadata = source.metadata
    if not metadata.has_geometry:
        raise ParameterError(f"no --poni given and {source.sources[0]} does not state the geometry "
                             f"(found: {metadata.describe()}); give a PONI file")
    detector = match_detector(source.shape, metadata.pixel_size_m, metadata.detector_name)
    poni = Poni.from_beam_center(detector, metadata.distance_m, beam_center_px=metadata.beam_center_px,
                                 wavelength_m=metadata.wavelength_m)
    log.warning("geometry from the metadata of %s (%s detector): %s", source.sources[0], detector.name,
                metadata.describe())
    return poni, f"metadata of {source.sources[0]}"


def _image(path, shape, what: str):
    from ..io.images import load_image

    return None if path is None else load_image(path, shape=shape, what=what)


def build_setup(source, params: dict[type, Any], *, poni: str | os.PathLike | None = None,
                mask: str | os.PathLike | None = None, mask_cell: int | None = None,
                dark: str | os.PathLike | None = None, flat: str | os.PathLike | None = None,
                dark_variance: str | os.PathLike | None = None, absorption: str | os.PathLike | None = None,
                gain_map: str | os.PathLike | None = None, device: str = "cpu") -> RunSetup:
    """Build the geometry, the radial binning and the static corrections of a run over ``source``
    (io.frames.FrameSource, or anything with ``shape``, ``sources`` and ``metadata``).

    ``params``: {class: instance} holding at least IntegrationParams and CorrectionParams (ClipParams and the
    command's others are carried along).  The paths are those of the command-line options of the same names
    (``mask`` may be ``FILE::/dataset``).  Raises InputError for unreadable files or shapes that differ from
    the frames', ParameterError for inconsistent parameters (e.g. a q unit without a wavelength)."""
    from ..engine.corrections import prepare_corrections
    from ..engine.csr import build_binning
    from ..geometry import pixels
    from ..io.masks import load_mask

    params = dict(params)
    integration, correction = params[IntegrationParams], params[CorrectionParams]
    geometry, geometry_source = _geometry(poni, source)
    if integration.unit != "r_mm" and integration.unit.startswith("q") and geometry.wavelength is None:
        raise ParameterError(f"unit {integration.unit} needs a wavelength, and the geometry ({geometry_source}) "
                             f"has none: give a PONI with a wavelength or use --unit 2th_deg or r_mm")
    shape = source.shape

    bad = np.asarray(geometry.detector.gap_mask(), dtype=bool).copy()
    if mask is not None:
        bad |= load_mask(mask, shape=shape, cell=mask_cell)
    if source.metadata.pixel_mask is not None and source.metadata.pixel_mask.shape == shape:
        bad |= source.metadata.pixel_mask
    if correction.saturation is None and source.metadata.saturation is not None:
        correction = dataclasses.replace(correction, saturation=source.metadata.saturation)
        params[CorrectionParams] = correction

    corrections = prepare_corrections(
        shape, correction, mask=bad,
        dark=_image(dark, shape, "dark"),
        flat=_image(flat, shape, "flat field"),
        dark_variance=_image(dark_variance, shape, "dark variance"),
        absorption=_image(absorption, shape, "absorption"),
        gain=_image(gain_map, shape, "gain map"),
        solid_angle=pixels.solid_angle(geometry) if correction.solid_angle else None,
        polarization=pixels.polarization(geometry, correction.polarization)
        if correction.polarization is not None else None,
    )
    radial = pixels.radial_map(geometry, integration.unit)
    delta = pixels.radial_delta(geometry, integration.unit) if integration.split == "bbox" else None
    binning = build_binning(radial, integration, mask=corrections.mask, radial_delta=delta)
    return RunSetup(poni=geometry, geometry_source=geometry_source, binning=binning, corrections=corrections,
                    params=params, device=device or "cpu")
