"""cli.common: shared options, TOML config tables, and the geometry + corrections set-up of a run, checked
against pyFAI (PONI, solid angle, polarisation, Fit2D beam centre) and the files' own metadata."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import fabio
import h5py
import numpy as np
import pytest

from braggsieve.cli import common
from braggsieve.engine.params import ClipParams, CorrectionParams, IntegrationParams
from braggsieve.errors import InputError, ParameterError
from braggsieve.params import option

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
SHAPE = (40, 50)


@dataclass(frozen=True)
class DemoParams:
    """Extra parameters of a test command."""

    threshold: float = option(2.0, "a threshold")


def _parse(argv, command="demo"):
    parser = argparse.ArgumentParser(prog="braggsieve")
    sub = parser.add_subparsers()
    common.add_processing_options(sub.add_parser(command), command, DemoParams)
    return parser.parse_args([command, *map(str, argv)])


def _frames_file(tmp_path, n=3, dtype=np.int32, marker=True):
    data = np.random.default_rng(1).poisson(20, (n, *SHAPE)).astype(dtype)
    if marker:
        data[:, 5, 7] = -2
    path = tmp_path / "frames.h5"
    with h5py.File(path, "w") as handle:
        handle["/entry/data/data"] = data
    return str(path)


def _pyfai_poni(tmp_path, shape=SHAPE, wavelength=1e-10, name="g.poni"):
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    ai = AzimuthalIntegrator(dist=0.05, poni1=0.0021, poni2=0.0017, rot1=0.05, rot2=-0.03, rot3=0.1,
                             detector=Detector(100e-6, 110e-6, max_shape=shape), wavelength=wavelength)
    path = tmp_path / name
    ai.save(str(path))  # pyFAI appends to an existing file: use a new name each time
    return ai, str(path)


def test_options_defaults_and_config_precedence(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[demo]\nbins = 500\ncutoff-clip = 3.5\nthreshold = 7\nmask = "masks/m.npy"\n'
                      '[other]\nbins = 1\n')
    args = _parse(["a.h5", "--config", config, "--bins", "200", "--frames", "2:8:2"])
    params = common.load_parameters(args)
    assert params[IntegrationParams].bins == 200  # command line wins
    assert params[ClipParams].cutoff_clip == 3.5 and params[DemoParams].threshold == 7.0  # config
    assert params[CorrectionParams] == CorrectionParams()  # defaults
    assert list(args.frames.indices(10)) == [2, 4, 6]
    assert common.config_table(args)["mask"] == str(tmp_path / "masks" / "m.npy")  # relative to the config


def test_config_errors_name_the_file(tmp_path):
    bad_key = tmp_path / "typo.toml"
    bad_key.write_text("[demo]\nbinz = 3\n")
    with pytest.raises(ParameterError, match=r"typo\.toml.*binz"):
        common.load_parameters(_parse(["a.h5", "--config", bad_key]))
    broken = tmp_path / "broken.toml"
    broken.write_text("[demo\nbins = \n")
    with pytest.raises(InputError, match=r"broken\.toml.*TOML"):
        common.load_parameters(_parse(["a.h5", "--config", broken]))
    with pytest.raises(SystemExit):
        _parse(["a.h5", "--frames", "x:y"])


def test_setup_from_a_pyfai_poni_with_masks_and_corrections(tmp_path):
    ai, poni = _pyfai_poni(tmp_path)
    user_mask = np.zeros(SHAPE, bool)
    user_mask[0, :3] = True
    np.save(tmp_path / "mask.npy", user_mask)
    dark = np.full(SHAPE, 2.0, np.float32)
    np.save(tmp_path / "dark.npy", dark)
    args = _parse([_frames_file(tmp_path), "--poni", poni, "--mask", tmp_path / "mask.npy", "--dark",
                   tmp_path / "dark.npy", "--polarization", "0.95", "--bins", "64", "--unit", "2th_deg"])
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    mask = setup.corrections.mask
    assert mask[0, :3].all() and mask[5, 7]  # --mask and the file's own -2 marker
    assert mask.sum() == 4
    expected = ai.solidAngleArray(SHAPE) * ai.polarization(SHAPE, factor=0.95)
    np.testing.assert_allclose(setup.corrections.norm[~mask], expected[~mask], rtol=2e-6)
    np.testing.assert_array_equal(setup.corrections.dark, dark)
    tth = np.degrees(ai.twoThetaArray(SHAPE))
    np.testing.assert_allclose(setup.binning.pixel_radius[~mask], tth[~mask], rtol=1e-5)
    assert setup.binning.nbins == 64 and setup.device == "cpu"
    provenance = setup.provenance(source).to_dict()
    assert provenance["parameters"]["CorrectionParams"]["polarization"] == 0.95
    assert provenance["geometry"]["rot3"] == pytest.approx(0.1)


def test_geometry_derived_from_minicbf_metadata_matches_pyfai_fit2d(tmp_path, caplog):
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    header = ("# Detector: PILATUS 1M, S/N 10-0000\r\n# Pixel_size 172e-6 m x 172e-6 m\r\n"
              "# Wavelength 0.8 A\r\n# Detector_distance 0.2 m\r\n# Beam_xy (490.3, 520.7) pixels\r\n"
              "# Count_cutoff 1000 counts\r\n")
    frame = np.random.default_rng(2).poisson(5, (1043, 981)).astype(np.int32)
    image = fabio.cbfimage.CbfImage(data=frame)
    image.header["_array_data.header_contents"] = header
    image.write(str(tmp_path / "p1m.cbf"))
    args = _parse([tmp_path / "p1m.cbf", "--unit", "q_nm^-1", "--bins", "100"])
    with caplog.at_level(logging.WARNING):
        setup = common.load_geometry_and_corrections(args, common.open_source(args))
    assert "geometry from the metadata" in caplog.text and "pilatus1m" in caplog.text
    ai = AzimuthalIntegrator(detector="Pilatus1M", wavelength=0.8e-10)
    ai.setFit2D(200.0, 490.3, 520.7, pixelX=172, pixelY=172)
    poni = setup.poni
    assert (poni.dist, poni.poni1, poni.poni2) == pytest.approx((ai.dist, ai.poni1, ai.poni2), rel=1e-12)
    assert poni.detector.name == "pilatus1m"
    assert setup.correction.saturation == 1000  # the Count_cutoff, since no --saturation was given
    assert setup.corrections.mask.sum() == poni.detector.gap_mask().sum()  # Pilatus 1M module gaps


def test_set_up_errors(tmp_path):
    frames = _frames_file(tmp_path)
    _, poni_other = _pyfai_poni(tmp_path, shape=(30, 30))
    args = _parse([frames, "--poni", poni_other])
    with pytest.raises(InputError, match=r"g\.poni.*30x30"):
        common.load_geometry_and_corrections(args, common.open_source(args))
    _, poni = _pyfai_poni(tmp_path, wavelength=None, name="no_wavelength.poni")
    args = _parse([frames, "--poni", poni])
    with pytest.raises(ParameterError, match="needs a wavelength"):
        common.load_geometry_and_corrections(args, common.open_source(args))
    np.save(tmp_path / "small.npy", np.zeros((4, 4)))
    args = _parse([frames, "--poni", poni, "--unit", "r_mm", "--mask", tmp_path / "small.npy"])
    with pytest.raises(InputError, match=r"small\.npy.*shape"):
        common.load_geometry_and_corrections(args, common.open_source(args))
    args = _parse([frames])  # a plain HDF5 without NXmx metadata and no --poni
    with pytest.raises(ParameterError, match="does not state the geometry"):
        common.load_geometry_and_corrections(args, common.open_source(args))
    with pytest.raises(ParameterError, match="no input"):
        common.open_source(_parse([]))


@pytest.mark.realdata
def test_real_pilatus_6m_still_sets_itself_up_from_its_header():
    path = REAL / "grid_stills_pilatus3_6m" / "thau_3_2_0002.cbf.bz2"
    if not path.exists():
        pytest.skip("real Pilatus 6M stills not present")
    args = _parse([path, "--bins", "500"])
    source = common.open_source(args)
    setup = common.load_geometry_and_corrections(args, source)
    assert setup.poni.detector.name == "pilatus6m"
    markers = source.metadata.pixel_mask
    assert markers.sum() == 526101 + 625  # -1 gaps and -2 bad pixels of the real frame (data README)
    assert setup.corrections.mask[markers].all()
    assert setup.binning.radial_range[1] > 0 and setup.correction.saturation == 115897


def test_inputs_and_frames_from_the_config_table(tmp_path):
    frames = _frames_file(tmp_path, n=6)
    config = tmp_path / "c.toml"
    config.write_text('[demo]\ninputs = ["frames.h5"]\nframes = "1:6:2"\ndevice = "auto"\n')
    args = _parse(["--config", config])
    source = common.open_source(args)
    assert source.sources == [frames] and source.nframes == 3
    batch, ids = next(source.iter_batches(8))
    with h5py.File(frames) as handle:
        np.testing.assert_array_equal(batch, handle["/entry/data/data"][1:6:2])
    assert list(ids.index) == [1, 3, 5]
    config.write_text('[demo]\nframes = "x"\n')
    with pytest.raises(ParameterError, match="frame range"):
        common.open_source(_parse([frames, "--config", config]))
