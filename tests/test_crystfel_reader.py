"""The CXI + .geom + .lst of ``braggsieve peaks`` read the way CrystFEL's ``indexamajig --peaks=cxi`` reads them.

CrystFEL cannot be installed here, so its reading was taken from its source (taw10/crystfel, libcrystfel 0.10-0.11;
docs/peaks.md "CrystFEL reading" has the summary table) and is re-implemented below in a few lines, with plain h5py,
as far as it touches our files; each step is compared with braggsieve's own outputs, pyFAI and the simulated truth.
Sources read:

* ``libcrystfel/src/datatemplate.c`` (``data_template_new_from_string``): a line is cut at the first ``;``, trimmed,
  split at the first ``=``; a key without ``/`` is a top-level key (``photon_energy``/``wavelength``,
  ``peak_list``, ``peak_list_type`` = cxi | list3 | auto, ...) or else a default for the panels *first mentioned
  after it*; default values at the end of the file with no panel after them reject the file.  ``name/key`` sets a
  panel field: ``min_fs`` ... ``max_ss`` (inclusive, ``atof``), ``corner_x/y`` (pixels), ``fs``/``ss`` (vectors
  ``+a x +b y +c z``, only digits, ``.``, signs, x, y, z and spaces), ``clen`` (kept as text, resolved per image),
  ``coffset`` (m), ``res`` (pixels per metre), ``adu_per_photon`` or ``adu_per_eV``, ``data`` (default
  ``/data/data``), ``dimN`` (``%`` = event placeholder, ``ss``, ``fs`` or a fixed index; default dim0 = ss,
  dim1 = fs).  Rejected: no wavelength; per panel a missing fs or ss dimension or fs before ss, missing fs/ss
  vector, min/max fs/ss, corner_x/y, clen, res, data or ADU scale.
* ``libcrystfel/src/image.c`` / ``datatemplate.c`` (``im_get_length``): a literal ``clen`` without unit is in
  metres (``mm``/``m`` suffixes allowed); ``photon_energy`` without unit is in eV.
* ``src/im-sandbox.c`` (``read_prefixed_filename``): a .lst line is ``filename event``, split at the last space when
  what follows contains ``//``; the filename is used as written (plus ``--prefix``), i.e. relative to the folder
  indexamajig runs in.
* ``libcrystfel/src/image-hdf5.c`` (``read_dim_parts``, ``substitute_path``, ``load_hdf5_hyperslab``,
  ``image_hdf5_read_peaks_cxi``, ``read_peak_count``, ``read_peak_line``): the event ``//N`` has no path parts and
  one dimension value N; the image of panel p is the hyperslab ``data[N, min_ss:max_ss+1, min_fs:max_fs+1]`` of a
  dataset whose rank is the number of ``dimN`` entries, read as float.  The CXI peak list is the group
  ``peak_list``: ``nPeaks`` must be 1-D and longer than N (read as int), ``peakXPosRaw``, ``peakYPosRaw`` and
  ``peakTotalIntensity`` 2-D with more than N rows and at least nPeaks[N] columns (read as float); peak k of row N
  is at ``fs = peakXPosRaw + 0.5``, ``ss = peakYPosRaw + 0.5`` (``--no-half-pixel-shift`` drops the 0.5), its panel
  the one with ``min_fs <= fs < max_fs + 1`` and ``min_ss <= ss < max_ss + 1`` (two panels -> error), in panel
  coordinates ``fs - min_fs``, ``ss - min_ss`` (``data_template_slabby_file_to_panel_coords``).
* ``libcrystfel/src/detgeom.c`` (``detgeom_transform_coords``) with ``create_detgeom``: position in pixels
  ``(cnx, cny, (clen + coffset) / pixel) + fs * fs_vector + ss * ss_vector``; scattering vector
  ``r / (lambda |r|) - (0, 0, 1 / lambda)``.
* ``doc/man/crystfel_geometry.5.md``: the laboratory frame is right-handed, +z along the beam, +y to the zenith; the
  corner is the outer corner of the panel's first pixel; peak positions are distances from the panel corner, hence
  the half pixel added to pixel indices.  pyFAI's frame: x1 up, x2 horizontal, x3 along the beam, right-handed
  (pyFAI documentation; its maintainers confirm in silx-kit/pyFAI discussion 2867 that the triple (x2, x1, x3) is
  left-handed), so the same physical pixel is at CrystFEL (x, y, z) = (-x2, x1, x3).
"""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from synthetic_runs import spotted_frames

from braggsieve.cli import main
from braggsieve.geometry import Poni, get_detector, read_poni, write_poni
from braggsieve.geometry.crystfel import geom_text
from braggsieve.geometry.pixels import r_mm
from braggsieve.io.cxi import MASK, CxiWriter, read_cxi

pyfai_azimuthal = pytest.importorskip("pyFAI.integrator.azimuthal")
import pyFAI
import pyFAI.detectors

HC_EV_M = 12398.419843320026e-10
TOPLEVEL = {"photon_energy", "wavelength", "electron_voltage", "peak_list", "peak_list_type", "bandwidth",
            "detector_shift_x", "detector_shift_y"}
REQUIRED = ("min_fs", "max_fs", "min_ss", "max_ss", "corner_x", "corner_y", "fs", "ss", "clen", "res", "data")


# ---------------------------------------------------------------- CrystFEL's reading, re-implemented --------
def _vector(text: str) -> np.ndarray:
    """A CrystFEL direction (``dir_conv``): signed terms ``[number]x|y|z``; spaces ignored."""
    compact = text.replace(" ", "")
    assert re.fullmatch(r"[0-9.+\-xyz]+", compact), f"invalid character in vector {text!r}"
    out = np.zeros(3)
    for sign_number, axis in re.findall(r"([+-]?[0-9.]*)([xyz])", compact):
        number = sign_number if sign_number not in ("", "+", "-") else sign_number + "1"
        out["xyz".index(axis)] += float(number)
    return out


def parse_geom(text: str) -> tuple[dict, list[dict]]:
    """(top-level values, panels in file order) as ``data_template_new_from_string`` builds them; asserts what
    it would reject."""
    top, defaults, panels, by_name = {}, {"data": "/data/data", "dims": {0: "ss", 1: "fs"}}, [], {}
    unused_defaults = False
    for raw in text.replace("\r", "\n").split("\n"):
        line = raw.lstrip(" \t").split(";", 1)[0]
        if not line:
            continue
        assert "=" in line, f"bad line {line!r}"
        key, value = line.split("=", 1)
        key, value = key.rstrip(" \t"), value.strip(" \t")
        if "/" not in key:
            if key in TOPLEVEL:
                top[key] = value
            else:
                _set_field(defaults, key, value)
                unused_defaults = True
            continue
        name, field = key.split("/", 1)
        if name not in by_name:
            by_name[name] = {**defaults, "dims": dict(defaults["dims"]), "name": name}
            panels.append(by_name[name])
            unused_defaults = False
        _set_field(by_name[name], field, value)
    assert panels, "no panel descriptions"
    assert not unused_defaults, "statements at the end of the file apply to no panel"
    assert "photon_energy" in top or "wavelength" in top, "no wavelength"
    for p in panels:
        dims = [p["dims"][k] for k in sorted(p["dims"])]
        assert "fs" in dims and "ss" in dims and dims.index("ss") < dims.index("fs"), p["name"]
        missing = [k for k in REQUIRED if k not in p]
        assert not missing and ("adu_per_photon" in p or "adu_per_eV" in p), f"{p['name']} lacks {missing}"
    return top, panels


def _set_field(panel: dict, key: str, value: str) -> None:
    if key in ("fs", "ss"):
        panel[key] = _vector(value)
    elif key.startswith("dim"):
        panel["dims"] = {**panel["dims"], int(key[3:]): value}
    elif key in ("data", "clen", "mask"):
        panel[key] = value
    elif key in ("mask_good", "mask_bad"):  # strtod: decimal or 0x hexadecimal
        panel[key] = int(value, 0)
    else:
        panel[key] = float(value)


def length_m(text: str) -> float:
    """A literal length as ``im_get_length`` reads it: metres unless the suffix says mm."""
    number, _, unit = text.partition(" ")
    return float(number) * {"": 1.0, "m": 1.0, "mm": 1e-3}[unit.strip()]


def read_lst(lst: Path, cwd: Path) -> list[tuple[Path, str]]:
    """(file, event) per line, the file relative to ``cwd`` (indexamajig's working folder)."""
    out = []
    for line in lst.read_text().splitlines():
        if not line:
            continue
        name, _, event = line.rpartition(" ")
        assert "//" in event, f"no event in {line!r}"
        out.append((cwd / name, event))
    return out


def event_index(event: str) -> int:
    """The first dimension value of an event ``path//N[/M...]``; our events have no path parts."""
    path_parts, _, dims = event.partition("//")
    assert path_parts == "" and dims, f"unexpected event {event!r}"
    return int(dims.split("/")[0])


def read_image(file: Path, panel: dict, event: str) -> np.ndarray:
    """The float image of one panel for ``event`` (``load_hdf5_hyperslab``)."""
    dims = [panel["dims"][k] for k in sorted(panel["dims"])]
    with h5py.File(file, "r") as f:
        dataset = f[panel["data"]]
        assert dataset.ndim == len(dims)
        index = tuple(event_index(event) if d == "%" else
                      slice(int(panel["min_ss"]), int(panel["max_ss"]) + 1) if d == "ss" else
                      slice(int(panel["min_fs"]), int(panel["max_fs"]) + 1) if d == "fs" else int(d)
                      for d in dims)
        return dataset[index].astype(np.float32)


def read_bad_pixels(file: Path, panel: dict, event: str) -> np.ndarray:
    """bool (panel rows, cols), True = bad, from the panel's mask (``image_hdf5_read_mask``: a mask with fewer
    dimensions than the data is read without the placeholder dimensions; bad when a good bit is missing or a
    bad bit is set)."""
    dims = [panel["dims"][k] for k in sorted(panel["dims"])]
    with h5py.File(file, "r") as f:
        dataset = f[panel["mask"]]
        if dataset.ndim == len(dims) - dims.count("%"):
            dims = [d for d in dims if d != "%"]
        assert dataset.ndim == len(dims)
        index = tuple(event_index(event) if d == "%" else
                      slice(int(panel["min_ss"]), int(panel["max_ss"]) + 1) if d == "ss" else
                      slice(int(panel["min_fs"]), int(panel["max_fs"]) + 1) if d == "fs" else int(d)
                      for d in dims)
        values = dataset[index].astype(np.int32)
    good, bad = panel.get("mask_good", 0), panel.get("mask_bad", 0)
    return ((values & good) != good) | ((values & bad) != 0)


def read_peaks_cxi(file: Path, top: dict, panels: list[dict], event: str, half_pixel_shift: bool = True):
    """Peaks of ``event`` as ``image_hdf5_read_peaks_cxi`` returns them: (panel index, fs, ss, intensity) with
    fs, ss in panel coordinates (continuous, pixel k spans [k, k+1))."""
    assert top.get("peak_list_type", "auto") in ("cxi", "auto") and "%" not in top["peak_list"]
    line, group = event_index(event), top["peak_list"]
    with h5py.File(file, "r") as f:
        counts = f[group + "/nPeaks"]
        assert counts.ndim == 1 and counts.shape[0] > line
        n = int(np.asarray(counts[line], dtype=np.int32))
        rows = {}
        for name in ("peakXPosRaw", "peakYPosRaw", "peakTotalIntensity"):
            dataset = f[f"{group}/{name}"]
            assert dataset.ndim == 2 and dataset.shape[0] > line and dataset.shape[1] >= n
            rows[name] = dataset[line].astype(np.float32)
    shift = 0.5 if half_pixel_shift else 0.0
    out = []
    for k in range(n):
        fs, ss = np.float32(rows["peakXPosRaw"][k] + shift), np.float32(rows["peakYPosRaw"][k] + shift)
        hits = [i for i, p in enumerate(panels)
                if p["min_fs"] <= fs < p["max_fs"] + 1 and p["min_ss"] <= ss < p["max_ss"] + 1]
        assert len(hits) == 1, f"peak ({fs}, {ss}) is in {len(hits)} panels"
        p = panels[hits[0]]
        out.append((hits[0], float(fs) - p["min_fs"], float(ss) - p["min_ss"], float(rows["peakTotalIntensity"][k])))
    return out


def lab_position(panel: dict, fs: float, ss: float) -> np.ndarray:
    """CrystFEL (x, y, z) in metres of panel position (fs, ss) (``detgeom_transform_coords`` times the pitch)."""
    pitch = 1.0 / panel["res"]
    corner = np.array([panel["corner_x"], panel["corner_y"],
                       (length_m(panel["clen"]) + panel.get("coffset", 0.0)) / pitch])
    return (corner + fs * panel["fs"] + ss * panel["ss"]) * pitch


def scattering_vector(position: np.ndarray, wavelength: float) -> np.ndarray:
    """CrystFEL's reciprocal-space position (1/m) of a lab position (``detgeom_transform_coords``)."""
    return position / (wavelength * np.linalg.norm(position)) - np.array([0.0, 0.0, 1.0 / wavelength])


def wavelength_m(top: dict) -> float:
    number, _, unit = top["photon_energy"].partition(" ")
    return HC_EV_M / (float(number) * {"": 1.0, "eV": 1.0, "keV": 1e3}[unit.strip()])


# ---------------------------------------------------------------- runs ------------------------------------
SHAPE = (120, 140)
HITS = (1, 3, 4)
TILT = {"rot1": 0.004, "rot2": -0.003, "rot3": 0.1}  # small: the beam centre moves < 0.5 px


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A tilted single-panel run: (output folder, frames, truth {frame: (rows, cols)})."""
    folder = tmp_path_factory.mktemp("crystfel_single")
    frames = spotted_frames(folder, shape=SHAPE, nframes=6, hits=HITS, seed=5, centre=(70.4, 58.7),
                            distance=0.08, spots=9, spacing=12, background=(10.0, 20.0, 40.0))
    untilted = read_poni(folder / "run.poni")
    write_poni(Poni(dist=untilted.dist, poni1=untilted.poni1, poni2=untilted.poni2, wavelength=1e-10,
                    detector=untilted.detector, **TILT), folder / "run.poni")
    with h5py.File(folder / "run.h5", "w") as f:
        f["entry/data/data"] = frames
    assert main(["peaks", str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "-o",
                 str(folder / "out" / "run.cxi"), "--min-peaks", "5", "--no-plot", "--unit", "r_mm", "--bins", "50"]) == 0
    truth = {}
    for k in HITS:  # spotted_frames' spots: 3x3 shoulder with a bright centre, so the centroid is the centre
        excess = frames[k].astype(float) - np.median(frames[[0, 2, 5]], axis=0)
        rows, cols = np.nonzero(excess > 600)
        truth[k] = (rows, cols)
    return folder / "out", frames, truth


@pytest.fixture(scope="module")
def agipd(tmp_path_factory):
    """A multi-panel run (AGIPD 1M, 128 panels of 64 x 128 pixels, fast axis along -p1): (output folder,
    frames, truth, poni)."""
    folder = tmp_path_factory.mktemp("crystfel_agipd")
    detector = get_detector("agipd1m")
    poni = Poni(dist=0.15, poni1=0.1267, poni2=0.1071, rot1=0.0, rot2=0.0, rot3=0.0, wavelength=1.3e-10,
                detector=detector)
    write_poni(poni, folder / "run.poni")
    rng = np.random.default_rng(11)
    level = 3 + 30 * np.exp(-r_mm(poni) / 20)
    frames = rng.poisson(np.broadcast_to(level, (3, *detector.shape))).astype(np.uint16)
    truth = {}
    for k in (0, 2):
        asic = rng.choice(256, 50, replace=False)  # 64 x 64 ASICs; spots 8 px inside (edges are masked)
        rows, cols = (asic // 2) * 64 + rng.integers(8, 56, 50), (asic % 2) * 64 + rng.integers(8, 56, 50)
        for r, c in zip(rows, cols):
            frames[k, r - 1:r + 2, c - 1:c + 2] += 200
            frames[k, r, c] += 800
        truth[k] = (rows, cols)
    with h5py.File(folder / "run.h5", "w") as f:
        f["entry/data/data"] = frames
    assert main(["peaks", str(folder / "run.h5"), "--poni", str(folder / "run.poni"), "-o",
                 str(folder / "out" / "run.cxi"), "--no-plot", "--unit", "r_mm"]) == 0
    return folder / "out", frames, truth, poni


def _pyfai_for_panels(poni: Poni):
    """pyFAI's integrator for a stacked-panel detector, its pixels given by their corners (pyFAI order z, y, x =
    p3, p1, p2 in metres), so that pyFAI's own geometry code places them."""
    ny, nx = poni.detector.shape
    corners = np.zeros((ny, nx, 4, 3), np.float32)
    for p in poni.detector.as_panels():
        ii, jj = np.mgrid[0:p.shape[0], 0:p.shape[1]]
        for c, (di, dj) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
            for axis in (0, 1):
                corners[p.ss[0]:p.ss[1], p.fs[0]:p.fs[1], c, 1 + axis] = (
                    p.corner[axis] + (ii + di) * p.ss_vector[axis] + (jj + dj) * p.fs_vector[axis])
    detector = pyFAI.detectors.Detector(*poni.detector.pixel_size, max_shape=(ny, nx))
    detector.set_pixel_corners(corners)
    return pyfai_azimuthal.AzimuthalIntegrator(dist=poni.dist, poni1=poni.poni1, poni2=poni.poni2, rot1=poni.rot1,
                                               rot2=poni.rot2, rot3=poni.rot3, wavelength=poni.wavelength,
                                               detector=detector)


def _check_peaks_against_pyfai(out: Path, ai, truth: dict, frames: np.ndarray, min_found: float,
                               min_on_spot: float = 1.0) -> int:
    """Read every .lst event the CrystFEL way and compare with braggsieve's peaks, pyFAI and the truth (at least
    ``min_found`` of the spots found, at least ``min_on_spot`` of the peaks within 1 px of a spot); returns the
    number of peaks checked."""
    top, panels = parse_geom((out / "run.geom").read_text())
    wavelength = wavelength_m(top)
    assert wavelength == pytest.approx(ai.wavelength, rel=1e-6)
    ours = read_cxi(out / "run.cxi")
    events = read_lst(out / "run.lst", cwd=out)
    assert sorted(event_index(e) for _, e in events) == sorted(truth)  # the hits, and only them
    checked = 0
    for file, event in events:
        n = event_index(event)
        image = np.concatenate([read_image(file, p, event).ravel() for p in panels])  # every panel, each once
        assert image.size == frames[n].size and np.array_equal(np.sort(image), np.sort(frames[n].ravel()))
        a, b = ours.frame_ptr[n], ours.frame_ptr[n + 1]
        peaks = read_peaks_cxi(file, top, panels, event)
        assert len(peaks) == b - a > 0
        raw = np.array([(fs + panels[p]["min_fs"] - 0.5, ss + panels[p]["min_ss"] - 0.5) for p, fs, ss, _ in peaks])
        np.testing.assert_allclose(raw[:, 0], ours.col[a:b], atol=1e-4)  # pixel centres back at integers
        np.testing.assert_allclose(raw[:, 1], ours.row[a:b], atol=1e-4)
        np.testing.assert_allclose([i for *_, i in peaks], ours.intensity[a:b], rtol=1e-6)
        position = np.array([lab_position(panels[p], fs, ss) for p, fs, ss, _ in peaks])
        z, x1, x2 = ai.calc_pos_zyx(d1=raw[:, 1].astype(float), d2=raw[:, 0].astype(float))
        np.testing.assert_allclose(position, np.stack([-x2, x1, z], axis=1), rtol=0, atol=2e-8)  # metres
        q = np.array([scattering_vector(r, wavelength) for r in position])
        tth = 2 * np.arcsin(np.linalg.norm(q, axis=1) * wavelength / 2)
        np.testing.assert_allclose(tth, ai.tth(raw[:, 1].astype(float), raw[:, 0].astype(float)), atol=1e-6)
        rows, cols = truth[n]
        d = np.hypot(raw[:, 1, None] - rows[None, :], raw[:, 0, None] - cols[None, :])
        assert (d.min(axis=1) < 1).mean() >= min_on_spot
        assert (d.min(axis=0) < 1).mean() >= min_found
        checked += len(peaks)
    return checked


# ---------------------------------------------------------------- tests -----------------------------------
def test_single_panel_run_reads_back_as_crystfel_reads_it(single):
    out, frames, truth = single
    poni = read_poni(out.parent / "run.poni")
    ai = pyFAI.load(str(out.parent / "run.poni"))
    assert ai.rot3 == pytest.approx(TILT["rot3"])
    _, panels = parse_geom((out / "run.geom").read_text())
    assert len(panels) == 1 and panels[0]["dims"] == {0: "%", 1: "ss", 2: "fs"}
    assert "coffset" in panels[0] and abs(panels[0]["fs"][2]) > 0  # the tilt reaches the file
    assert length_m(panels[0]["clen"]) == pytest.approx(poni.dist)
    assert _check_peaks_against_pyfai(out, ai, truth, frames, min_found=0.9) >= 24  # --bins 50: enough pixels per bin


def test_multi_panel_run_has_one_panel_per_asic_pair_and_reads_back(agipd):
    out, frames, truth, poni = agipd
    _, panels = parse_geom((out / "run.geom").read_text())
    assert len(panels) == len(poni.detector.as_panels()) == 128
    cover = np.zeros(poni.detector.shape, int)  # slabby lookup: each raw pixel in exactly one panel
    for p in panels:
        cover[int(p["min_ss"]):int(p["max_ss"]) + 1, int(p["min_fs"]):int(p["max_fs"]) + 1] += 1
    assert (cover == 1).all()
    assert _check_peaks_against_pyfai(out, _pyfai_for_panels(poni), truth, frames, min_found=0.95,
                                      min_on_spot=0.98) >= 90


def test_cxi_datasets_have_the_layout_crystfel_needs(single):
    out, frames, _ = single
    _, panels = parse_geom((out / "run.geom").read_text())
    with h5py.File(out / "run.cxi", "r") as f:
        result = f["entry_1/result_1"]
        counts = result["nPeaks"]
        assert counts.ndim == 1 and counts.dtype.kind == "i" and counts.shape == (len(frames),)
        for name in ("peakXPosRaw", "peakYPosRaw", "peakTotalIntensity"):
            dataset = result[name]
            assert dataset.ndim == 2 and dataset.dtype.kind == "f" and dataset.shape[0] == len(frames)
            assert dataset.shape[1] >= counts[()].max()
            assert set(dataset._filters) <= {"gzip", "shuffle"}  # readable without HDF5 filter plugins
        data = f["entry_1/data_1/data"]
        assert data.shape == (len(frames), panels[0]["max_ss"] + 1, panels[0]["max_fs"] + 1)
    # frames without peaks read as empty lists, not errors
    top, _ = parse_geom((out / "run.geom").read_text())
    for n in set(range(len(frames))) - set(HITS):
        assert read_peaks_cxi(out / "run.cxi", top, panels, f"//{n}") == []


def test_half_pixel_shift_is_needed_and_lst_paths_are_relative_to_the_output_folder(single, tmp_path):
    out, _, _ = single
    ai = pyFAI.load(str(out.parent / "run.poni"))
    top, panels = parse_geom((out / "run.geom").read_text())
    file, event = read_lst(out / "run.lst", cwd=out)[0]
    ours = read_cxi(out / "run.cxi")
    n = event_index(event)
    a = ours.frame_ptr[n]
    _, fs, ss, _ = read_peaks_cxi(file, top, panels, event, half_pixel_shift=False)[0]
    position = lab_position(panels[0], fs, ss)
    _, x1, x2 = ai.calc_pos_zyx(d1=np.array([float(ours.row[a])]), d2=np.array([float(ours.col[a])]))
    pixel = 1 / panels[0]["res"]
    # without the shift CrystFEL puts the peak half a pixel off along both axes
    assert np.hypot(position[0] + x2[0], position[1] - x1[0]) == pytest.approx(pixel * np.sqrt(0.5), rel=0.05)
    assert not read_lst(out / "run.lst", cwd=tmp_path)[0][0].exists()  # run indexamajig in the output folder


def test_geometry_without_wavelength_says_what_crystfel_needs():
    detector = get_detector("pilatus1m")
    poni = Poni.from_beam_center(detector, 0.2, (500.5, 520.2))
    text = geom_text(poni)
    with pytest.raises(AssertionError, match="no wavelength"):
        parse_geom(text)
    assert "; photon_energy = ?" in text
    top, panels = parse_geom(text.replace("; photon_energy = ?", "photon_energy = 12000 ;"))
    assert wavelength_m(top) == pytest.approx(HC_EV_M / 12000) and len(panels) == 1
    # a one-image detector with gaps is one panel: the gaps stay in the data (masked by value or mask, not cut)
    assert (panels[0]["max_ss"] + 1, panels[0]["max_fs"] + 1) == detector.shape


@pytest.mark.parametrize("name", ["pilatus1m", "agipd1m"])
def test_mask_in_the_cxi_is_the_bad_pixel_map_crystfel_reads(tmp_path, name):
    detector = get_detector(name)
    poni = Poni.from_beam_center(detector, 0.2, (100.5, 120.2), 1e-10)
    rng = np.random.default_rng(3)
    mask = detector.gap_mask() | (rng.random(detector.shape) < 0.01)
    writer = CxiWriter(tmp_path / "m.cxi", detector.shape, np.int32, images="none", mask=mask)
    writer.close()
    _, panels = parse_geom(geom_text(poni, mask=MASK))
    assert len(panels) == len(detector.as_panels())
    read_back = np.zeros(detector.shape, bool)
    for p in panels:
        read_back[int(p["min_ss"]):int(p["max_ss"]) + 1, int(p["min_fs"]):int(p["max_fs"]) + 1] = \
            read_bad_pixels(tmp_path / "m.cxi", p, "//7")
    np.testing.assert_array_equal(read_back, mask)
    with pytest.raises(ValueError, match="mask shape"):
        CxiWriter(tmp_path / "x.cxi", detector.shape, np.int32, images="none", mask=mask[1:])
