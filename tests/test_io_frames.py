"""io.frames: HDF5/NeXus, Eiger master files, fabio formats, frame ranges, batches, read_into, bad input."""
from __future__ import annotations

import os
from pathlib import Path

import fabio
import h5py
import hdf5plugin
import numpy as np
import pytest

from braggsieve.errors import InputError, ParameterError
from braggsieve.io.frames import FrameRange, expand_paths, open_frames

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
RNG = np.random.default_rng(7)


def _frames(n, shape=(12, 9), dtype=np.uint32):
    return RNG.integers(0, 1000, size=(n, *shape)).astype(dtype)


def _h5(path, data, h5path="/entry/data/data", **kwargs):
    with h5py.File(path, "w") as handle:
        handle.create_dataset(h5path, data=data, **kwargs)
    return str(path)


def _read_all(source, batch_size):
    frames, ids = zip(*source.iter_batches(batch_size))
    return (np.concatenate(frames), np.concatenate([i.source for i in ids]),
            np.concatenate([i.index for i in ids]), np.concatenate([i.position for i in ids]))


@pytest.mark.parametrize("text, n, expected", [
    ("2:7", 10, [2, 3, 4, 5, 6]), (":3", 10, [0, 1, 2]), ("-3:", 10, [7, 8, 9]), ("1:10:4", 10, [1, 5, 9]),
    ("4", 10, [4]), ("-1", 10, [9]), ("::3", 7, [0, 3, 6]), ("5:50", 8, [5, 6, 7])])
def test_frame_range_matches_python_slices(text, n, expected):
    assert list(FrameRange.parse(text).indices(n)) == expected


@pytest.mark.parametrize("text", ["a:b", "1:2:3:4", "1:5:0", "1:5:-1", ""])
def test_frame_range_rejects_nonsense(text):
    with pytest.raises(ParameterError):
        FrameRange.parse(text)


def test_hdf5_files_concatenate_with_range_and_ids(tmp_path):
    a, b, c = _frames(5), _frames(1)[0], _frames(4)  # b is a 2-D dataset: one frame
    paths = [_h5(tmp_path / "a.h5", a, chunks=(1, 12, 9), **hdf5plugin.Bitshuffle()),
             _h5(tmp_path / "b.h5", b), _h5(tmp_path / "c.h5", c, compression="gzip")]
    everything = np.concatenate([a, b[None], c])
    source = open_frames(paths, frames="1:10:2")
    assert (source.nframes, source.shape, source.dtype) == (5, (12, 9), np.uint32)
    for batch in (1, 2, 3, 16):
        frames, src, index, position = _read_all(source, batch)
        np.testing.assert_array_equal(frames, everything[1:10:2])
        np.testing.assert_array_equal(src, [0, 0, 1, 2, 2])
        np.testing.assert_array_equal(index, [1, 3, 0, 1, 3])
        np.testing.assert_array_equal(position, np.arange(5))
    assert source.frames_per_source() == [5, 1, 4]


def test_read_into_fills_a_caller_buffer_and_stops_at_the_end(tmp_path):
    data = _frames(7, dtype=np.uint16)
    source = open_frames(_h5(tmp_path / "d.h5", data))
    out = np.full((4, 12, 9), 9999, np.uint16)
    ids = source.read_into(out, 5)
    assert len(ids) == 2
    np.testing.assert_array_equal(out[:2], data[5:])
    assert (out[2:] == 9999).all()
    with pytest.raises(ValueError):
        source.read_into(np.empty((2, 12, 9), np.float32), 0)


def test_big_endian_dataset_is_read_in_native_order(tmp_path):
    data = _frames(3, dtype=np.dtype(">i4"))
    source = open_frames(_h5(tmp_path / "be.h5", data))
    assert source.dtype == np.dtype("=i4")
    np.testing.assert_array_equal(next(source.iter_batches(3))[0], data.astype("=i4"))


def _eiger_master(tmp_path, parts, prefix="run"):
    for number, part in enumerate(parts, start=1):
        _h5(tmp_path / f"{prefix}_data_{number:06d}.h5", part, chunks=(1, *part.shape[1:]),
            **hdf5plugin.Bitshuffle(cname="lz4"))
    master = tmp_path / f"{prefix}_master.h5"
    with h5py.File(master, "w") as handle:
        group = handle.create_group("/entry/data")
        for number in range(1, len(parts) + 1):
            group[f"data_{number:06d}"] = h5py.ExternalLink(f"{prefix}_data_{number:06d}.h5", "/entry/data/data")
        det = handle.create_group("/entry/instrument/detector")
        det["detector_distance"] = 0.12
        det["x_pixel_size"] = 75e-6
        det["y_pixel_size"] = 75e-6
        det["beam_center_x"] = 4.5
        det["beam_center_x"].attrs["units"] = "pixel"
        det["beam_center_y"] = 6.25
        det["beam_center_y"].attrs["units"] = "pixel"
        det["description"] = "Dectris EIGER2 Si 4M"
        spec = det.create_group("detectorSpecific")
        spec["countrate_correction_count_cutoff"] = 12345
        mask = np.zeros(parts[0].shape[1:], np.uint32)
        mask[3, 4] = 1
        mask[0, :] = 1 << 0
        spec["pixel_mask"] = mask
        handle["/entry/instrument/beam/incident_wavelength"] = 1.0332
        handle["/entry/instrument/beam/incident_wavelength"].attrs["units"] = "angstrom"
    return str(master)


def test_eiger_master_reads_its_data_files_in_order(tmp_path):
    parts = [_frames(3), _frames(3), _frames(2)]
    parts[0][1, 5, 5] = 0xFFFFFFFF
    source = open_frames(_eiger_master(tmp_path, parts), frames="2:7")
    frames, src, index, _ = _read_all(source, 2)
    np.testing.assert_array_equal(frames, np.concatenate(parts)[2:7])
    np.testing.assert_array_equal(index, [2, 3, 4, 5, 6])
    assert set(src) == {0} and source.input_of(0)[0] == "eiger"
    meta = source.metadata
    assert meta.distance_m == pytest.approx(0.12) and meta.beam_center_px == (4.5, 6.25)
    assert meta.wavelength_m == pytest.approx(1.0332e-10) and meta.saturation == 12345
    expected = np.zeros((12, 9), bool)
    expected[3, 4] = expected[0, :] = True
    np.testing.assert_array_equal(meta.pixel_mask, expected)  # first selected frame (2) has no marker


def test_eiger_master_stops_at_the_announced_number_of_images(tmp_path, caplog):
    parts = [_frames(3), _frames(3)]
    master = _eiger_master(tmp_path, parts)
    with h5py.File(master, "a") as handle:
        handle["/entry/instrument/detector/detectorSpecific/nimages"] = 2
        handle["/entry/instrument/detector/detectorSpecific/ntrigger"] = 2
    source = open_frames(master)
    assert source.nframes == 4
    np.testing.assert_array_equal(_read_all(source, 3)[0], np.concatenate(parts)[:4])
    with h5py.File(master, "a") as handle:
        handle["/entry/instrument/detector/detectorSpecific/nimages"][()] = 10
    assert open_frames(master).nframes == 6 and "announces 20 frames" in caplog.text


def test_eiger_master_with_a_missing_data_file_names_it(tmp_path):
    master = _eiger_master(tmp_path, [_frames(2), _frames(2)])
    os.remove(tmp_path / "run_data_000002.h5")
    with pytest.raises(InputError, match="run_data_000002.h5"):
        open_frames(master)


def test_fabio_formats_and_globs_in_natural_order(tmp_path):
    data = _frames(11, dtype=np.int32)
    for i, frame in enumerate(data[:10]):
        fabio.cbfimage.CbfImage(data=frame).write(str(tmp_path / f"img_{i}.cbf"))
    fabio.edfimage.EdfImage(data=data[10].astype(np.float32)).write(str(tmp_path / "single.edf"))
    source = open_frames(str(tmp_path / "img_*.cbf"))
    assert [Path(p).name for p in source.sources][:3] == ["img_0.cbf", "img_1.cbf", "img_2.cbf"]
    assert source.sources[-1].endswith("img_9.cbf")
    frames, src, index, _ = _read_all(source, 4)
    np.testing.assert_array_equal(frames, data[:10])
    np.testing.assert_array_equal(src, np.arange(10))
    np.testing.assert_array_equal(index, 0)
    with pytest.raises(InputError, match="dtype"):
        open_frames([str(tmp_path / "img_0.cbf"), str(tmp_path / "single.edf")])


def test_multiframe_edf(tmp_path):
    data = _frames(3, dtype=np.float32)
    edf = fabio.edfimage.EdfImage(data=data[0])
    for frame in data[1:]:
        edf.append_frame(data=frame)
    edf.write(str(tmp_path / "multi.edf"))
    source = open_frames(str(tmp_path / "multi.edf"), frames="1:")
    frames, _, index, _ = _read_all(source, 5)
    np.testing.assert_array_equal(frames, data[1:])
    np.testing.assert_array_equal(index, [1, 2])


def test_shape_mismatch_between_files_names_the_second(tmp_path):
    first = _h5(tmp_path / "first.h5", _frames(2))
    second = _h5(tmp_path / "second.h5", _frames(2, shape=(9, 12)))
    with pytest.raises(InputError, match=r"second\.h5.*shape"):
        open_frames([first, second])


def test_truncated_hdf5_is_an_input_error(tmp_path):
    path = _h5(tmp_path / "cut.h5", _frames(20, shape=(64, 64)))
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(InputError, match=r"cut\.h5"):
        open_frames(path)


def test_corrupt_compressed_chunk_is_an_input_error_naming_the_file(tmp_path):
    data = RNG.integers(0, 60000, size=(6, 64, 64)).astype(np.uint32)
    path = _h5(tmp_path / "bad.h5", data, chunks=(1, 64, 64), compression="gzip")
    with h5py.File(path, "r") as handle:
        offset = handle["/entry/data/data"].id.get_chunk_info(4).byte_offset
    with open(path, "r+b") as handle:
        handle.seek(offset + 10)
        handle.write(b"\x00" * 200)
    source = open_frames(path)  # frame 0 is fine
    with pytest.raises(InputError, match=r"bad\.h5.*frames 4:"):
        for _ in source.iter_batches(1):
            pass


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_wrong_dimensionality(tmp_path, shape):
    path = _h5(tmp_path / "dims.h5", np.zeros(shape, np.float32))
    with pytest.raises(InputError, match="expected 2-D"):
        open_frames(path)


def test_missing_dataset_missing_file_empty_glob_and_range(tmp_path):
    path = _h5(tmp_path / "x.h5", _frames(3))
    with pytest.raises(InputError, match="no dataset /other"):
        open_frames(path, h5path="/other")
    with pytest.raises(InputError, match="no such file"):
        open_frames(str(tmp_path / "absent.h5"))
    with pytest.raises(InputError, match="matches"):
        expand_paths(str(tmp_path / "none_*.h5"))
    with pytest.raises(ParameterError, match="selects no frame"):
        open_frames(path, frames="5:9")
    (tmp_path / "garbage.cbf").write_bytes(b"this is not an image")
    with pytest.raises(InputError, match=r"garbage\.cbf"):
        open_frames(str(tmp_path / "garbage.cbf"))


@pytest.mark.realdata
def test_pilatus_cbf_bz2_stills_against_fabio():
    files = sorted((REAL / "grid_stills_pilatus3_6m").glob("thau_3_2_000[12].cbf.bz2"))
    if len(files) < 2:
        pytest.skip("real Pilatus 6M stills not present")
    source = open_frames([str(f) for f in files])
    frames, *_ = _read_all(source, 2)
    for frame, path in zip(frames, files):
        np.testing.assert_array_equal(frame, fabio.open(str(path)).data)
    gaps = source.metadata.pixel_mask
    assert gaps.sum() == 526101 + 625  # -1 (module gaps) and -2 (bad pixels), README of the data


def test_prefetch_threads_and_early_stop_give_the_same_frames(tmp_path):
    data = _frames(9, dtype=np.int32)
    for i, frame in enumerate(data):
        fabio.cbfimage.CbfImage(data=frame).write(str(tmp_path / f"f{i:02d}.cbf"))
    pattern = str(tmp_path / "f*.cbf")
    serial = open_frames(pattern, workers=1)
    frames, *_ = zip(*serial.iter_batches(4, prefetch=False))
    np.testing.assert_array_equal(np.concatenate(frames), data)
    parallel = open_frames(pattern, workers=3)
    frames, *_ = zip(*parallel.iter_batches(4))
    np.testing.assert_array_equal(np.concatenate(frames), data)
    batches = parallel.iter_batches(2)
    first, ids = next(batches)
    batches.close()  # stopping early joins the prefetch thread and closes the files
    np.testing.assert_array_equal(first, data[:2])
    assert parallel._pool is None


def test_virtual_dataset_reads_through_and_a_missing_source_is_an_error(tmp_path):
    parts = [_frames(2), _frames(3)]
    for i, part in enumerate(parts):
        _h5(tmp_path / f"part{i}.h5", part)
    layout = h5py.VirtualLayout(shape=(5, 12, 9), dtype=np.uint32)
    layout[0:2] = h5py.VirtualSource("part0.h5", "/entry/data/data", shape=(2, 12, 9))
    layout[2:5] = h5py.VirtualSource("part1.h5", "/entry/data/data", shape=(3, 12, 9))
    with h5py.File(tmp_path / "vds.h5", "w") as handle:
        handle.create_virtual_dataset("/entry/data/data", layout, fillvalue=0)
    cwd = os.getcwd()
    os.chdir(tmp_path.parent)  # source names are relative to the virtual file, not the working directory
    try:
        np.testing.assert_array_equal(_read_all(open_frames(str(tmp_path / "vds.h5")), 2)[0], np.concatenate(parts))
        os.remove(tmp_path / "part1.h5")
        with pytest.raises(InputError, match=r"vds\.h5.*part1\.h5"):
            open_frames(str(tmp_path / "vds.h5"))
    finally:
        os.chdir(cwd)


def _deferred_consumer(source, batch_size, buffers, in_flight, prefetch=True):
    """Consume batches the way the CUDA engine's process_many does: a batch's content is only read when it is
    collected, ``in_flight`` batches later (or at the end).  Returns the frames as read at collection."""
    pending, collected = [], []
    for frames, _ in source.iter_batches(batch_size, buffers=buffers, prefetch=prefetch):
        if len(pending) == in_flight:
            collected.append(pending.pop(0).copy())
        pending.append(frames)
    collected.extend(p.copy() for p in pending)
    return np.concatenate(collected)


def test_batches_decoded_into_caller_buffers(tmp_path):
    """``buffers`` (a GPU engine's pinned buffers): the same frames and ids as fresh arrays, decoded in place,
    and enough buffers (batches in flight + 2) that none is overwritten before the consumer is done with it."""
    data = _frames(23)
    source = open_frames([_h5(tmp_path / "a.h5", data[:10]), _h5(tmp_path / "b.h5", data[10:])])
    buffers = [np.empty((4, 12, 9), np.uint32) for _ in range(5)]
    got = list(source.iter_batches(4, buffers=buffers))
    want = list(source.iter_batches(4))
    assert len(got) == len(want) == 6
    for k, ((frames, ids), (fresh, fresh_ids)) in enumerate(zip(got, want)):
        assert np.shares_memory(frames, buffers[k % 5])
        np.testing.assert_array_equal(ids.position, fresh_ids.position)
    np.testing.assert_array_equal(_deferred_consumer(source, 4, buffers, in_flight=3), data)
    np.testing.assert_array_equal(_deferred_consumer(source, 4, buffers[:4], in_flight=3, prefetch=False), data)
    # as many buffers as batches in flight (no prefetch): the next read overwrites a batch still in flight
    assert not np.array_equal(_deferred_consumer(source, 4, buffers[:3], in_flight=3, prefetch=False), data)
    with pytest.raises(ValueError, match="buffers"):
        next(source.iter_batches(4, buffers=[np.empty((3, 12, 9), np.uint32)] * 2))
