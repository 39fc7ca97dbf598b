"""Sparse-frames files: braggsieve's writer read by FabIO, pyFAI's file read by braggsieve, bad input."""
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

from braggsieve.engine.densify import Densifier
from braggsieve.engine.records import SparseFrames
from braggsieve.errors import InputError
from braggsieve.io.sparse import SparseFile, SparseWriter, quantised_radius, rounded_mantissa

fabio = pytest.importorskip("fabio")
from fabio.sparseimage import SparseImage  # noqa: E402

DATA = Path(__file__).parent / "data"


def _frames(nframes=4, shape=(50, 64), nbins=30, seed=1, dtype=np.uint32):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    radius = (np.hypot(yy - 24.6, xx - 30.2) * 0.1).astype(np.float32)
    radius[10, :] = np.nan
    radial = np.linspace(0.2, 4.0, nbins)
    batches = []
    for f in range(nframes):
        counts = rng.integers(0, 60)
        index = np.sort(rng.choice(radius.size, counts, replace=False)).astype(np.uint32)
        intensity = rng.integers(10, 60000, counts).astype(dtype)
        bg = (10 * np.exp(-radial / 2) + 1 + f).astype(np.float32)[None]
        batches.append(SparseFrames(np.array([0, counts]), index, intensity, bg, np.sqrt(bg), radial, "r_mm"))
    norm = (0.5 + 0.5 * rng.uniform(size=shape)).astype(np.float32)
    return radius, radial, norm, batches


def _write(path, radius, radial, norm, batches, **kw):
    with SparseWriter(path, radius_map=radius, radial=radial, unit="r_mm", dtype=batches[0].intensity.dtype,
                      normalization=norm, configuration={"sparsify": {"cutoff_pick": 2.0}}, **kw) as writer:
        for number, batch in enumerate(batches):
            writer.append(batch, ["a.h5", "b.h5"], [number % 2], [number // 2])


@pytest.mark.parametrize("dtype,options", [(np.uint32, {}), (np.int32, {}), (np.float32, {}),
                                           (np.uint32, {"rounded": True}), (np.uint32, {"compression": "zstd"}),
                                           (np.float32, {"compression": "zstd"}), (np.uint32, {"compression": "bslz4"})])
def test_fabio_reads_braggsieve_files_and_densifies_identically(tmp_path, dtype, options):
    radius, radial, norm, batches = _frames(dtype=dtype)
    path = tmp_path / "s.h5"
    _write(path, radius, radial, norm, batches, **options)
    image = SparseImage()
    image.read(str(path))
    assert image.nframes == len(batches)
    with SparseFile(path) as sparse:
        assert sparse.nframes == len(batches) and sparse.shape == radius.shape and sparse.dtype == dtype
        densify = Densifier(sparse.radius_map, sparse.radial, normalization=sparse.normalization,
                            dtype=sparse.dtype, dummy=sparse.dummy)
        batch = sparse.read(0)
        ours = densify(batch.background_avg, batch.background_std, batch.frame_ptr, batch.index, batch.intensity)
        files, number, index = sparse.sources
        assert files == ["a.h5", "b.h5"] and list(number) == [0, 1, 0, 1] and list(index) == [0, 0, 1, 1]
        assert sparse.configuration["sparsify"]["cutoff_pick"] == 2.0
    for f, original in enumerate(batches):
        frame = image.getframe(f).data
        np.testing.assert_array_equal(frame, ours[f])
        # the stored pixels come back exactly, at the right places
        np.testing.assert_array_equal(frame.ravel()[original.index], original.intensity)
        # the stored maps are the originals up to their documented precision
    step = radial[1] - radial[0]
    finite = np.isfinite(radius)
    assert np.array_equal(finite, np.isfinite(image.mask))
    assert np.max(np.abs(image.mask[finite] - radius[finite])) <= step / 8
    assert np.max(np.abs(image.normalization / norm - 1)) <= 2 ** -10


def _filters(dataset):
    """{HDF5 filter id: its values} of ``dataset``'s pipeline, in order."""
    plist = dataset.id.get_create_plist()
    return dict(plist.get_filter(i)[:3:2] for i in range(plist.get_nfilters()))


def test_default_codec_is_shuffle_then_blosc2_bytedelta(tmp_path):
    radius, radial, norm, batches = _frames()
    _write(tmp_path / "s.h5", radius, radial, norm, batches)
    _write(tmp_path / "r.h5", radius, radial, norm, batches, rounded=True)
    with h5py.File(tmp_path / "s.h5") as h5, h5py.File(tmp_path / "r.h5") as rounded:
        data = h5["entry_0000/sparse_frames"]
        for name in ("index", "intensity", "background_avg", "mask", "normalization"):
            filters = _filters(data[name])
            assert list(filters) == [h5py.h5z.FILTER_SHUFFLE, hdf5plugin.BLOSC2_ID], name
            assert filters[hdf5plugin.BLOSC2_ID][4:7] == (6, 35, 5), name  # zstd level 6, byte-delta, zstd
        stored = _filters(rounded["entry_0000/sparse_frames/intensity"])  # rounded values: no byte-delta
        assert list(stored) == [h5py.h5z.FILTER_SHUFFLE, hdf5plugin.BLOSC2_ID]
        assert stored[hdf5plugin.BLOSC2_ID][4:7] == (6, 0, 5)


def test_batches_across_chunk_boundaries_are_stored_in_order(tmp_path, monkeypatch):
    """Many small batches crossing the chunks (whole chunks written as they fill, the tail at the end) give the
    same arrays as one batch."""
    import braggsieve.io.sparse as sparse_io

    monkeypatch.setattr(sparse_io, "_CHUNK_PIXELS", 512)
    rng = np.random.default_rng(5)
    radius, radial, norm, _ = _frames()
    frames = []
    for f in range(60):
        count = int(rng.integers(0, 150))
        index = np.sort(rng.choice(radius.size, count, replace=False)).astype(np.uint32)
        bg = np.full((1, len(radial)), 2.0 + f, np.float32)
        frames.append(SparseFrames(np.array([0, count]), index, rng.poisson(100, count).astype(np.uint32), bg, bg,
                                   radial, "r_mm"))
    ptr = np.concatenate([[0], np.cumsum([len(f.index) for f in frames])])
    _write(tmp_path / "many.h5", radius, radial, norm, frames)
    with SparseFile(tmp_path / "many.h5") as many:
        batch = many.read(0)
        np.testing.assert_array_equal(batch.frame_ptr, ptr)
        np.testing.assert_array_equal(batch.index, np.concatenate([f.index for f in frames]))
        np.testing.assert_array_equal(batch.intensity, np.concatenate([f.intensity for f in frames]))
        np.testing.assert_array_equal(batch.background_avg, np.concatenate([f.background_avg for f in frames]))
        files, number, index = many.sources
        np.testing.assert_array_equal(number, np.arange(60) % 2)
        np.testing.assert_array_equal(index, np.arange(60) // 2)


def test_rounded_radius_map_moves_the_densified_background_by_at_most_an_eighth_of_a_bin_step(tmp_path):
    """The radius map is stored to at most 1/4 bin, so a pixel's background, interpolated linearly between bin
    centres, moves by at most 1/8 of the largest change between neighbouring bins (times the normalisation)."""
    radius, radial, norm, batches = _frames(nframes=1)
    bg = (50 * np.exp(-radial) + 4 + 1.5 * np.sin(7 * radial)).astype(np.float32)[None]  # steep and wavy
    frame = SparseFrames(np.array([0, 0]), np.zeros(0, np.uint32), np.zeros(0, np.uint32), bg, np.sqrt(bg),
                         radial, "r_mm")
    dense = []
    for fraction in (0, 4):
        path = tmp_path / f"r{fraction}.h5"
        _write(path, radius, radial, norm, [frame], radius_fraction=fraction)
        with SparseFile(path) as sparse:
            assert np.array_equal(sparse.radius_map, radius, equal_nan=True) == (fraction == 0)
            densify = Densifier(sparse.radius_map, sparse.radial, normalization=sparse.normalization,
                                dtype=np.float32, dummy=np.float32(np.nan))
            batch = sparse.read(0)
            dense.append(densify(batch.background_avg, None, batch.frame_ptr, batch.index, batch.intensity)[0])
    exact, rounded = dense
    ok = np.isfinite(exact) & np.isfinite(rounded)
    assert ok.sum() > 0.9 * np.isfinite(radius).sum()
    step = np.abs(np.diff(bg[0].astype(np.float64))).max()
    diff = np.abs(rounded[ok].astype(np.float64) - exact[ok])
    assert 0 < diff.max() <= step / 8 * norm[ok].max() * (1 + 1e-3) + 1e-4


def test_fabio_open_recognises_only_the_compatible_creator(tmp_path):
    radius, radial, norm, batches = _frames()
    plain, compat = tmp_path / "plain.h5", tmp_path / "compat.h5"
    _write(plain, radius, radial, norm, batches)
    _write(compat, radius, radial, norm, batches, creator_compat=True)
    with h5py.File(plain) as h5:
        assert h5.attrs["creator"].startswith("braggsieve")
    img = fabio.open(str(compat))
    assert type(img).__name__ == "SparseImage" and img.nframes == len(batches)
    with pytest.raises(Exception):
        fabio.open(str(plain))


def test_braggsieve_reads_pyfai_file_like_fabio():
    path = DATA / "pyfai_sparse_tiny.h5"
    original = np.load(DATA / "pyfai_sparse_tiny_frames.npy")
    mask = np.load(DATA / "pyfai_sparse_tiny_mask.npy").astype(bool)
    image = SparseImage()
    image.read(str(path))
    with SparseFile(path) as sparse:
        assert sparse.creator.startswith("pyFAI") and sparse.unit == "r_mm" and sparse.nframes == 3
        assert sparse.sources is None and sparse.instrument()["distance"] == pytest.approx(0.05)
        assert sparse.configuration["sparsify"]["cutoff_pick"] == 3.0
        densify = Densifier(sparse.radius_map, sparse.radial, normalization=sparse.normalization,
                            dtype=sparse.dtype, dummy=sparse.dummy)
        for f in range(sparse.nframes):
            batch = sparse.read(f, f + 1)
            ours = densify(batch.background_avg, batch.background_std, batch.frame_ptr, batch.index,
                           batch.intensity)[0]
            np.testing.assert_array_equal(ours, image.getframe(f).data)
            # pyFAI stored the above-background pixels exactly as measured
            np.testing.assert_array_equal(ours.ravel()[batch.index], original[f].ravel()[batch.index])
            # and the background it rebuilt is close to the measured frame away from the spots
            keep = ~mask & (ours == np.round(ours))
            rest = np.ones(ours.size, bool)
            rest[batch.index] = False
            rest &= keep.ravel() & (ours.ravel() > 0)
            assert abs(np.mean(ours.ravel()[rest]) / np.mean(original[f].ravel()[rest]) - 1) < 0.1


def test_no_file_is_left_when_writing_fails(tmp_path):
    radius, radial, norm, batches = _frames()
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError):
        with SparseWriter(path, radius_map=radius, radial=radial, unit="r_mm", dtype=np.uint32) as writer:
            writer.append(batches[0], ["a"], [0], [0])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_bad_sparse_files(tmp_path):
    radius, radial, norm, batches = _frames()
    good = tmp_path / "good.h5"
    _write(good, radius, radial, norm, batches)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[:4000])
    with pytest.raises(InputError, match="truncated.h5"):
        SparseFile(truncated)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["default"] = "entry"
        h5["entry/data/intensity"] = np.zeros(3)
        h5["entry"].attrs["default"] = "data"
    with pytest.raises(InputError, match="lacks mask, frame_ptr, index"):
        SparseFile(other)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="cannot open as HDF5"):
        SparseFile(text)


def test_static_map_rounding_bounds():
    rng = np.random.default_rng(0)
    values = rng.uniform(0.01, 50, 10000).astype(np.float32)
    values[::7] = np.nan
    q = quantised_radius(values, bin_width=0.05)
    ok = np.isfinite(values)
    assert np.array_equal(ok, np.isfinite(q)) and np.max(np.abs(q[ok] - values[ok])) <= 0.05 / 8
    m = rounded_mantissa(values)
    assert np.max(np.abs(m[ok] / values[ok] - 1)) <= 2.0 ** -10


def test_files_of_one_geometry_copy_the_compressed_maps_and_a_new_geometry_gets_its_own(tmp_path):
    """The parts of a run share their static maps: the second file copies the first one's compressed chunks
    (several chunks of 256 rows here), a changed normalisation or radius map is compressed anew."""
    radius, radial, norm, batches = _frames(shape=(600, 64))
    step = radial[1] - radial[0]
    paths = [tmp_path / f"{name}.h5" for name in ("a", "b", "c", "d")]
    _write(paths[0], radius, radial, norm, batches)
    _write(paths[1], radius, radial, norm, batches)
    _write(paths[2], radius + 0.5, radial, norm * 1.5, batches)
    _write(paths[3], radius, radial, norm, batches)
    maps = []
    for path in paths:
        with h5py.File(path) as h5:
            data = h5["entry_0000/sparse_frames"]
            chunks = [data["mask"].id.read_direct_chunk((row, 0))[1] for row in range(0, 600, 256)]
            maps.append((data["mask"][()], data["normalization"][()], chunks))
    for mask, normalization, chunks in (maps[1], maps[3]):
        assert chunks == maps[0][2]  # the same compressed bytes
        np.testing.assert_array_equal(mask, quantised_radius(radius, step, 4))
        np.testing.assert_array_equal(normalization, rounded_mantissa(norm))
    np.testing.assert_array_equal(maps[2][0], quantised_radius(radius + 0.5, step, 4))
    np.testing.assert_array_equal(maps[2][1], rounded_mantissa(norm * 1.5))
    image = SparseImage()  # FabIO reads a file whose maps were copied
    image.read(str(paths[3]))
    np.testing.assert_array_equal(image.normalization, rounded_mantissa(norm))
