"""The Eiger-like master + data files of ``braggsieve densify`` against what XDS's plugins and DIALS require.

Neither XDS (with the Neggia or Durin plugin) nor dxtbx can be installed here, so each reader's requirements were
taken from its source (public repositories) and are checked below with plain h5py, value by value against the
input geometry; where a reader's logic is short (frame -> data file lookup, integer conversion, masking, the NXmx
transformation chain) it is re-implemented in a few lines and its result compared with braggsieve's own
densified frames.  Sources read (docs/sparse.md has the summary table):

* Neggia, dectris/neggia ``src/dectris/neggia/plugin/H5ToXds.cpp``: the header comes from
  ``/entry/instrument/detector/{x,y}_pixel_size`` (float or double; 0 when missing),
  ``detectorSpecific/pixel_mask`` (2-D, 4-byte unsigned: its shape gives nx, ny; absence is fatal),
  ``detectorSpecific/nimages`` and ``ntrigger`` (unsigned-readable integers of 1-8 bytes; frames = product), and
  ``/entry/data/data_000001`` (3-D, integer class, 1/2/4 bytes, chunked (1, ny, nx)): its first dimension is the
  frames-per-file, and frame k (1-based) is read from ``data_%06d`` number ``(k-1) // n + 1`` at index
  ``(k-1) % n``.  Output: mask bit 0 -> -1, bits 1-4 -> -2, values at or above the signed maximum of the width
  -> -1.  ``user/Dataset.cpp``: it parses HDF5 itself, follows external links relative to the master's folder,
  accepts at most one filter, LZ4 (32004) or bitshuffle (32008) with cd_values[4] = 2 (LZ4) and the element size
  in cd_values[2], and reads a dataset without an offset from its chunk at (0, ...) only (so the pixel mask must
  be one chunk or contiguous).  ``data/H5Superblock.cpp``: superblock version 0 (8-byte offsets and lengths,
  base address 0, no driver block) or 2/3.
* Durin, DiamondLightSource/durin ``src/file.c`` and ``src/plugin.c``: ``H5Ovisit`` over the master keeps the
  groups whose ``NX_class`` (read as a C string) is ``NXdata`` / ``NXdetector``; pixel sizes from the detector's
  ``x_pixel_size``/``y_pixel_size`` (else ``detectorSpecific/``), scaled by their ``units`` (m, cm, mm, um ...);
  mask from the detector's ``pixel_mask`` (else ``detectorSpecific/pixel_mask``) read as int; data: the
  detector's or the NXdata's ``data_000001`` (preferred over ``data``), counting consecutive ``data_%06d``
  links, rank 3, frame n found by the cumulative block sizes; chunks (1, ny, nx) with at most one filter, 32008
  with <= 5 cd_values, allow the direct chunk read (``src/filters.c``: the chunk's 8-byte big-endian size must be
  the frame's size in bytes).  Values are reinterpreted as signed integers of the stored width; mask bits
  0-7 -> -1, bits 1-4 -> -2.
* dxtbx, cctbx/dxtbx ``src/dxtbx/format/FormatNXmx.py``: understands a file with an NXentry whose
  ``definition`` is ``NXmx`` and a ``/entry/data/data``; uses ``bit_depth_readout`` to allow unsigned 32-bit
  data (as int32, 2**31-1 / 2**31-2 -> -1 / -2).  ``FormatNXmxEigerFilewriter.py`` needs
  ``detectorSpecific/eiger_fw_version`` (not written: the generic class reads the virtual dataset).
  ``src/dxtbx/nexus/__init__.py`` with the ``nxmx`` package: beam ``incident_wavelength`` with units; detector
  ``sensor_material`` (Si, Silicon, CdTe, GaAs), ``sensor_thickness``, ``saturation_value``, ``pixel_mask``
  (== 0 is good) sliced by the module's ``data_origin``/``data_size`` (slow, fast); the panel origin is the
  cumulative transformation of the chain that ``fast_pixel_direction`` depends on (falling back on
  ``beam_center_x/y`` when it lies on the beam axis), the axes the module's ``vector``s, all converted from
  McStas to imgCIF with diag(-1, 1, -1); the scan from the sample's ``depends_on`` chain.
"""
import h5py
import hdf5plugin  # noqa: F401  (filters for h5py)
import numpy as np
import pytest

from braggsieve.engine.densify import Densifier
from braggsieve.engine.records import SparseFrames
from braggsieve.io.eiger_writer import EigerWriter, trusted_maximum
from braggsieve.io.sparse import SparseFile, SparseWriter
from braggsieve.pipeline.sparse import densify_run

SHAPE = (50, 64)                      # ny, nx
NFRAMES, PER_FILE = 5, 2              # 3 data files: 2 + 2 + 1 frames
INFO = {"distance": 0.15, "x_pixel_size": 75e-6, "y_pixel_size": 80e-6, "beam_center_x": 30.2,
        "beam_center_y": 24.6, "wavelength": 0.9e-10}
MASKED_ROW = 10
MCSTAS_TO_IMGCIF = np.diag([-1.0, 1.0, -1.0])


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """(master path, braggsieve's densified frames (n, ny, nx) uint32, stored pixels, input mask) for a small
    sparse file written with a geometry, densified by ``densify_run`` without noise."""
    tmp = tmp_path_factory.mktemp("readers")
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    radius = (np.hypot(yy - INFO["beam_center_y"], xx - INFO["beam_center_x"]) * 0.075).astype(np.float32)
    radius[MASKED_ROW, :] = np.nan                       # unmeasured pixels: the pixel mask
    radial = np.linspace(0.05, 3.0, 40)
    sparse_path = tmp / "s.h5"
    stored = []
    with SparseWriter(sparse_path, radius_map=radius, radial=radial, unit="r_mm", dtype=np.uint32,
                      configuration={"sparsify": {"cutoff_pick": 2.0}}, instrument=INFO) as writer:
        for f in range(NFRAMES):
            index = np.sort(rng.choice(radius.size, 40, replace=False)).astype(np.uint32)
            index = index[index // SHAPE[1] != MASKED_ROW]
            intensity = rng.integers(100, 40000, len(index)).astype(np.uint32)
            bg = (20 * np.exp(-radial) + 2 + f).astype(np.float32)[None]
            writer.append(SparseFrames(np.array([0, len(index)]), index, intensity, bg, np.sqrt(bg), radial,
                                       "r_mm"), ["raw.h5"], [0], [f])
            stored.append((index, intensity))
    master = tmp / "out" / "run_master.h5"
    master.parent.mkdir()
    densify_run(sparse_path, master, noise="none", frames_per_file=PER_FILE, progress=False)
    with SparseFile(sparse_path) as sparse:
        densify = Densifier(sparse.radius_map, sparse.radial, normalization=sparse.normalization,
                            dtype=sparse.dtype, dummy=sparse.dummy)
        batch = sparse.read()
        frames = densify(batch.background_avg, None, batch.frame_ptr, batch.index, batch.intensity)
    for f, (index, intensity) in enumerate(stored):  # the stored pixels themselves are exact
        np.testing.assert_array_equal(frames[f].ravel()[index], intensity)
    return master, frames, ~np.isfinite(radius)


def _data_files(master):
    return sorted(master.parent.glob("run_data_*.h5"))


def _check_superblock(path):
    """Neggia's H5Superblock: version 0 with 8-byte offsets/lengths, base address 0 and no driver block, or
    version 2/3 without extension (v3: not open for writing)."""
    head = path.read_bytes()[:56]
    assert head[:8] == b"\x89HDF\r\n\x1a\n", path
    version = head[8]
    if version == 0:
        assert (head[13], head[14], head[15]) == (8, 8, 0)
        assert int.from_bytes(head[24:32], "little") == 0 and head[48:56] == b"\xff" * 8
    else:
        assert version in (2, 3) and (head[9], head[10]) == (8, 8)
        assert int.from_bytes(head[12:20], "little") == 0 and head[20:28] == b"\xff" * 8


def _filters(ds):
    plist = ds.id.get_create_plist()
    return [plist.get_filter(k) for k in range(plist.get_nfilters())]


def _check_bslz4(ds, readers_max_params=5):
    """One filter, bitshuffle (32008) with LZ4 (cd_values[4] == 2) and the element size in cd_values[2]."""
    filters = _filters(ds)
    assert len(filters) == 1
    code, _flags, values, _name = filters[0]
    assert code == 32008 and len(values) <= readers_max_params
    assert values[4] == 2 and values[2] == ds.dtype.itemsize


def _is_ascii_fixed(node, name):
    """The attribute is a fixed-length ASCII string, the trivial conversion for Durin's C reads."""
    attr = h5py.h5a.open(node.id, name.encode())
    kind = attr.get_type()
    return (isinstance(kind, h5py.h5t.TypeStringID) and not kind.is_variable_str()
            and kind.get_cset() == h5py.h5t.CSET_ASCII)


def test_neggia_requirements_and_frame_lookup(dense):
    master, frames, mask = dense
    for path in [master] + _data_files(master):
        _check_superblock(path)
    ny, nx = SHAPE
    with h5py.File(master) as h5:
        det = h5["entry/instrument/detector"]
        for name, value in (("x_pixel_size", 75e-6), ("y_pixel_size", 80e-6)):
            assert det[name].dtype.kind == "f" and det[name].dtype.itemsize in (4, 8)
            assert det[name][()] == pytest.approx(value)
        pixel_mask = det["detectorSpecific/pixel_mask"]
        assert pixel_mask.dtype == np.uint32 and pixel_mask.shape == (ny, nx)
        assert pixel_mask.chunks in (None, (ny, nx))  # Neggia reads the chunk at (0, 0) as the whole mask
        if pixel_mask.chunks:
            _check_bslz4(pixel_mask)
        counts = [det[f"detectorSpecific/{name}"] for name in ("nimages", "ntrigger")]
        for ds in counts:
            assert ds.shape == () and ds.dtype.kind in "iu" and ds.dtype.itemsize in (1, 2, 4, 8) and ds[()] >= 0
        assert counts[0][()] * counts[1][()] == NFRAMES

        group = h5["entry/data"]
        link = group.get("data_000001", getlink=True)
        assert isinstance(link, h5py.ExternalLink) and "/" not in link.filename  # beside the master
        first = group["data_000001"]
        assert first.ndim == 3 and first.shape[1:] == (ny, nx)
        assert first.dtype.kind in "iu" and first.dtype.itemsize in (1, 2, 4)
        assert first.chunks == (1, ny, nx)
        _check_bslz4(first)
        per_file = first.shape[0]
        assert per_file == PER_FILE

        # Neggia's lookup: frame k (1-based) -> data_%06d number (k-1)//n + 1, index (k-1) % n, opened by the
        # external link's file name relative to the master's folder
        mask_bits = pixel_mask[()]
        signed_max = np.iinfo(np.dtype(f"i{first.dtype.itemsize}")).max
        for k in range(1, NFRAMES + 1):
            name = f"data_{(k - 1) // per_file + 1:06d}"
            target = group.get(name, getlink=True)
            with h5py.File(master.parent / target.filename, "r") as data_file:
                raw = data_file[target.path][(k - 1) % per_file]
            xds = np.where(raw.astype(np.int64) >= signed_max, -1, raw.astype(np.int64))
            xds = np.where(mask_bits & 30, -2, np.where(mask_bits & 1, -1, xds))
            expected = np.where(mask, -1, frames[k - 1].astype(np.int64))
            np.testing.assert_array_equal(xds, expected)


def test_durin_requirements_and_frame_lookup(dense):
    master, frames, mask = dense
    with h5py.File(master) as h5:
        found = {}

        def visit(name, node):  # H5Ovisit by name; NX_class read as a C string; the last group of a class wins
            if isinstance(node, h5py.Group) and "NX_class" in node.attrs:
                assert _is_ascii_fixed(node, "NX_class"), name
                found[node.attrs["NX_class"].decode("ascii")] = node

        h5.visititems(visit)
        assert found["NXdata"].name == "/entry/data" and found["NXdetector"].name == "/entry/instrument/detector"
        det, data = found["NXdetector"], found["NXdata"]
        scale = {"m": 1.0, "metres": 1.0, "meters": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "microns": 1e-6}
        for group in (det, det["detectorSpecific"]):
            for name, value in (("x_pixel_size", 75e-6), ("y_pixel_size", 80e-6)):
                assert _is_ascii_fixed(group[name], "units")
                size = float(group[name][()]) * scale[group[name].attrs["units"].decode().lower()]
                assert size == pytest.approx(value)
        durin_mask = np.empty(SHAPE, np.int32)
        det["pixel_mask"].read_direct(durin_mask)  # H5Dread as native int
        np.testing.assert_array_equal(durin_mask != 0, mask)
        # the Eiger strategy: neither data_000001 nor data in the NXdetector, data_000001 in the NXdata
        assert "data_000001" not in det and "data" not in det and "data_000001" in data
        blocks, n = [], 1
        while f"data_{n:06d}" in data:
            blocks.append(data[f"data_{n:06d}"].shape[0])
            assert data[f"data_{n:06d}"].ndim == 3
            n += 1
        assert sum(blocks) == NFRAMES and blocks == [2, 2, 1]
        first = data["data_000001"]
        assert first.chunks == (1,) + SHAPE
        _check_bslz4(first)
        width = first.dtype.itemsize
        for frame in range(NFRAMES):
            block = int(np.searchsorted(np.cumsum(blocks), frame, side="right"))
            index = frame - sum(blocks[:block])
            ds = data[f"data_{block + 1:06d}"]
            _filter_mask, chunk = ds.id.read_direct_chunk((index, 0, 0))
            assert int.from_bytes(chunk[:8], "big") == width * SHAPE[0] * SHAPE[1]  # Durin's size check
            assert int.from_bytes(chunk[8:12], "big") > 0
            values = ds[index].view(f"i{width}").astype(np.int64)  # signed reinterpretation of the width
            values = np.where(durin_mask & 0xFF, -1, values)
            values = np.where(durin_mask & 30, -2, values)
            np.testing.assert_array_equal(values, np.where(mask, -1, frames[frame].astype(np.int64)))


def _chain(h5, path):
    """The NeXus transformation chain from ``path`` (an absolute dataset path) to '.', as 4x4 matrices in
    metres: translation = offset + value * vector."""
    matrices = []
    while path != ".":
        ds = h5[path]
        assert ds.attrs["transformation_type"] in (b"translation", b"rotation")
        assert ds.attrs["units"] in (b"m", b"deg")
        a = np.identity(4)
        if ds.attrs["transformation_type"] == b"translation":
            a[:3, 3] = np.asarray(ds.attrs["offset"]) + float(np.ravel(ds[()])[0]) * np.asarray(ds.attrs["vector"])
        matrices.append(a)
        path = ds.attrs["depends_on"].decode()
    total = np.identity(4)
    for a in reversed(matrices):  # T_last ... T_first
        total = total @ a
    return total


def test_dxtbx_requirements_and_geometry(dense):
    master, frames, mask = dense
    ny, nx = SHAPE
    px, py, d = INFO["x_pixel_size"], INFO["y_pixel_size"], INFO["distance"]
    with h5py.File(master) as h5:
        # FormatNXmx.understand; not claimed by FormatNXmxEigerFilewriter (which would reverse data_size)
        assert h5["entry"].attrs["NX_class"] == b"NXentry" and h5["entry/definition"][()] == b"NXmx"
        assert "entry/data/data" in h5
        assert "entry/instrument/detector/detectorSpecific/eiger_fw_version" not in h5
        classes = {}
        h5.visititems(lambda name, node: classes.setdefault(node.attrs.get("NX_class", b""), []).append(name))
        for nx_class in (b"NXinstrument", b"NXdetector", b"NXbeam", b"NXsample", b"NXdata", b"NXdetector_module"):
            assert len(classes[nx_class]) == 1, nx_class
        beam = h5["entry/instrument/beam/incident_wavelength"]
        assert beam.attrs["units"] == b"angstrom" and beam[()] == pytest.approx(0.9)
        data = h5["entry/data"]
        assert data.attrs["signal"] == b"data"
        np.testing.assert_array_equal(data["data"][()], frames)
        det = h5["entry/instrument/detector"]
        assert det["sensor_material"][()].decode() in ("Si", "Silicon", "CdTe", "GaAs")
        assert det["sensor_thickness"].attrs["units"] == b"m" and det["sensor_thickness"][()] > 0
        # uint32 frames: dxtbx converts them (to int32) only when bit_depth_readout is 32
        assert data["data"].dtype == np.uint32 and det["bit_depth_readout"][()] == 32
        assert det["saturation_value"][()] == trusted_maximum(np.uint32) == 2 ** 31 - 3
        assert det["frame_time"].attrs["units"] == b"s"
        module = det["module"]
        origin, size = module["data_origin"][()], module["data_size"][()]
        assert list(origin) == [0, 0] and list(size) == [ny, nx]   # slow, fast: image size (nx, ny)
        good = det["pixel_mask"][origin[0]:origin[0] + size[0], origin[1]:origin[1] + size[1]] == 0
        np.testing.assert_array_equal(good, ~mask)
        # geometry as dxtbx's flat detector model builds it (McStas -> imgCIF)
        fast, slow = module["fast_pixel_direction"], module["slow_pixel_direction"]
        assert fast[()] == pytest.approx(px) and slow[()] == pytest.approx(py)
        assert fast.attrs["depends_on"] == slow.attrs["depends_on"]
        assert det["depends_on"][()] == b"/entry/instrument/detector/transformations/translation"
        a = _chain(h5, fast.attrs["depends_on"].decode())
        panel_origin = MCSTAS_TO_IMGCIF @ a[:3, 3]
        fast_axis = MCSTAS_TO_IMGCIF @ np.asarray(fast.attrs["vector"])
        slow_axis = MCSTAS_TO_IMGCIF @ np.asarray(slow.attrs["vector"])
        assert not (panel_origin[0] == 0 and panel_origin[1] == 0)  # no fallback on beam_center_x/y needed
        np.testing.assert_allclose(fast_axis, [1, 0, 0]) and np.testing.assert_allclose(slow_axis, [0, -1, 0])
        # the beam (along -z in imgCIF) meets the panel at the input beam centre, at the input distance
        normal = np.cross(fast_axis, slow_axis)
        hit = np.array([0, 0, -1.0]) * (normal @ panel_origin) / (normal @ np.array([0, 0, -1.0]))
        offset = hit - panel_origin
        assert (offset @ fast_axis / px, offset @ slow_axis / py) == pytest.approx(
            (INFO["beam_center_x"], INFO["beam_center_y"]))
        assert np.linalg.norm(hit) == pytest.approx(d)
        # and the full chain of a pixel, its own fast/slow translations included, puts that pixel on the axis
        pixel = _chain(h5, "/entry/instrument/detector/module/module_offset")[:3, 3] \
            + INFO["beam_center_x"] * px * np.asarray(fast.attrs["vector"]) \
            + INFO["beam_center_y"] * py * np.asarray(slow.attrs["vector"])
        np.testing.assert_allclose(pixel, [0, 0, d], atol=1e-12)
        assert det["beam_center_x"][()] == pytest.approx(30.2) and det["beam_center_y"][()] == pytest.approx(24.6)
        # the sample: a rotation axis with one (constant) value per frame
        omega = h5[h5["entry/sample/depends_on"][()].decode()]
        assert omega.attrs["transformation_type"] == b"rotation" and omega.shape == (NFRAMES,)


def test_nxmx_package_reads_master(dense):
    """The ``nxmx`` package (what dxtbx parses NXmx with) on the master, where it is installed."""
    nxmx = pytest.importorskip("nxmx")
    master, frames, mask = dense
    with h5py.File(master) as h5:
        entry = nxmx.NXmx(h5).entries[0]
        detector = entry.instruments[0].detectors[0]
        beam = entry.instruments[0].beams[0]
        assert beam.incident_wavelength.to("angstrom").magnitude == pytest.approx(0.9)
        assert detector.sensor_material == "Si" and detector.bit_depth_readout == 32
        assert detector.saturation_value == 2 ** 31 - 3
        np.testing.assert_array_equal(detector.pixel_mask[()] == 0, ~mask)
        (module,) = detector.modules
        chain = nxmx.get_dependency_chain(module.fast_pixel_direction.depends_on)
        a = nxmx.get_cumulative_transformation(chain)          # millimetres
        expected = [INFO["beam_center_x"] * INFO["x_pixel_size"] * 1e3,
                    INFO["beam_center_y"] * INFO["y_pixel_size"] * 1e3, INFO["distance"] * 1e3]
        np.testing.assert_allclose(a[0, :3, 3], expected)
        assert module.fast_pixel_direction[()].to("mm").magnitude.item() == pytest.approx(0.075)
        assert list(module.data_size[::-1]) == [SHAPE[1], SHAPE[0]]
        sample = entry.samples[0]
        assert len(nxmx.get_dependency_chain(sample.depends_on)) == 1 and len(sample.depends_on) == NFRAMES
        nxdata = entry.data[0]
        np.testing.assert_array_equal(nxdata[nxdata.signal][NFRAMES - 1], frames[-1])


def test_float_frames_are_stored_as_int32(tmp_path):
    """Neggia refuses non-integer data and Durin reads the bytes as integers: float frames become int32
    (rounded, NaN -> -1), with the saturation value of int32."""
    frames = np.array([[[0.4, 2.6], [np.nan, 7e9]], [[-3.5, 1.5], [12.49, 0.0]]], np.float32)
    with EigerWriter(tmp_path / "f_master.h5", (2, 2), np.float32, nframes=2, frames_per_file=1,
                     instrument=INFO) as writer:
        writer.append(frames)
    with h5py.File(tmp_path / "f_master.h5") as h5:
        data = h5["entry/data/data"][()]
        assert data.dtype == np.int32 and h5["entry/data/data_000002"].dtype == np.int32
        np.testing.assert_array_equal(data, [[[0, 3], [-1, 2 ** 31 - 1]], [[-4, 2], [12, 0]]])
        det = h5["entry/instrument/detector"]
        assert det["bit_depth_image"][()] == 32 and det["saturation_value"][()] == 2 ** 31 - 3


def test_pixel_mask_is_one_chunk_on_a_large_detector(tmp_path):
    """Neggia decodes the mask from the chunk at (0, 0) as if it were the whole mask: on a detector large enough
    for h5py to split an auto-chunked mask, the mask must still be one bitshuffle-LZ4 chunk of ny * nx * 4
    bytes (the chunk's big-endian size header)."""
    shape = (1100, 1030)
    mask = np.zeros(shape, bool)
    mask[:, 513:515] = True
    with EigerWriter(tmp_path / "big_master.h5", shape, np.uint16, nframes=1, instrument=INFO,
                     pixel_mask=mask) as writer:
        writer.append(np.zeros((1,) + shape, np.uint16))
    with h5py.File(tmp_path / "big_master.h5") as h5:
        pixel_mask = h5["entry/instrument/detector/detectorSpecific/pixel_mask"]
        assert pixel_mask.chunks == shape
        _check_bslz4(pixel_mask)
        _filter_mask, chunk = pixel_mask.id.read_direct_chunk((0, 0))
        assert int.from_bytes(chunk[:8], "big") == shape[0] * shape[1] * 4
        np.testing.assert_array_equal(pixel_mask[()] == 1, mask)
        assert h5["entry/instrument/detector/saturation_value"][()] == 2 ** 15 - 2  # Neggia: 32767 and up -> -1
