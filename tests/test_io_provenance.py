"""io.provenance: what every output records, written to HDF5 and read back, and as JSON."""
from __future__ import annotations

import json

import h5py
import pytest

import braggsieve
from braggsieve.engine.params import ClipParams, IntegrationParams
from braggsieve.errors import InputError
from braggsieve.io.provenance import Provenance, read_provenance, write_provenance


def test_round_trip_through_hdf5_and_json(tmp_path):
    started = Provenance.start([IntegrationParams(bins=500, radial_range=(1.0, 2.0)), ClipParams(cycles=3)],
                               geometry={"dist": 0.1, "poni1": 0.02}, inputs=["a.h5", "b.h5"],
                               argv=["braggsieve", "sparsify", "a.h5"])
    done = started.finish()
    assert done.end_time >= done.start_time and started.end_time is None
    with h5py.File(tmp_path / "p.h5", "w") as handle:
        write_provenance(handle.create_group("entry/process"), done)
    with h5py.File(tmp_path / "p.h5") as handle:
        group = handle["entry/process"]
        assert group.attrs["NX_class"] == "NXprocess"
        assert group["program"].asstr()[()] == "braggsieve"
        assert group["version"].asstr()[()] == braggsieve.__version__
        config = json.loads(group["configuration/data"].asstr()[()])
        assert config["parameters"]["IntegrationParams"]["radial_range"] == [1.0, 2.0]
        assert config["parameters"]["ClipParams"]["cycles"] == 3
        back = read_provenance(group)
    assert back == done
    assert back.inputs[0].endswith("a.h5") and back.argv[1] == "sparsify"
    as_json = json.loads(done.to_json())
    assert as_json["geometry"]["poni1"] == 0.02 and as_json["host"] == done.host


def test_reading_a_group_without_provenance_is_an_input_error(tmp_path):
    with h5py.File(tmp_path / "e.h5", "w") as handle:
        handle.create_group("nothing")
    with h5py.File(tmp_path / "e.h5") as handle, pytest.raises(InputError, match="no braggsieve provenance"):
        read_provenance(handle["nothing"])
