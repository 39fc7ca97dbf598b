"""Provenance: what every braggsieve output file records so that the run can be understood and reproduced.

A :class:`Provenance` holds the program and version, the command line, the working directory and host, the
parameters (one JSON-ready dict per parameter dataclass, as :func:`braggsieve.params.as_dict` gives), the
geometry (the PONI as a dict), the input files and the start/end times (ISO 8601, local time with offset).

``write_provenance(group, provenance)`` stores it in an HDF5 group as a NeXus ``NXprocess``: string datasets
``program``, ``version``, ``date`` (end time), ``start_time``, ``end_time``, ``cwd``, ``host``, ``argv`` (array
of strings), ``inputs`` (array of strings), and ``configuration`` (``NXnote``, type ``text/json``, holding
``{"parameters": ..., "geometry": ...}``).  ``read_provenance(group)`` reads it back; ``to_json()`` gives the same
content for JSON run summaries.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from .. import __version__
from ..errors import InputError
from ..params import as_dict


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class Provenance:
    """How an output file was made (see the module docstring)."""

    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    geometry: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    argv: tuple[str, ...] = field(default_factory=lambda: tuple(sys.argv))
    cwd: str = field(default_factory=os.getcwd)
    host: str = field(default_factory=socket.gethostname)
    start_time: str = field(default_factory=_now)
    end_time: str | None = None
    program: str = "braggsieve"
    version: str = __version__

    @classmethod
    def start(cls, parameters: Mapping[str, Any] | Sequence[Any] = (), geometry: Mapping[str, Any] | None = None,
              inputs: Sequence[str | os.PathLike] = (), argv: Sequence[str] | None = None) -> "Provenance":
        """A record started now.  ``parameters`` is a mapping name -> dataclass (or dict), or a sequence of
        parameter dataclasses (keyed by class name)."""
        if not isinstance(parameters, Mapping):
            parameters = {type(p).__name__: p for p in parameters}
        params = {name: as_dict(value) if dataclasses.is_dataclass(value) else dict(value)
                  for name, value in parameters.items()}
        extra = {"argv": tuple(argv)} if argv is not None else {}
        return cls(parameters=params, geometry=dict(geometry or {}),
                   inputs=tuple(os.path.abspath(os.fspath(p)) for p in inputs), **extra)

    def finish(self) -> "Provenance":
        """The same record with ``end_time`` set to now."""
        return dataclasses.replace(self, end_time=_now())

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


_STRINGS = ("program", "version", "start_time", "end_time", "cwd", "host")


def write_provenance(group: h5py.Group, provenance: Provenance) -> None:
    """Store ``provenance`` in ``group`` (an empty group of an open HDF5 file) as an NXprocess."""
    text = h5py.string_dtype()
    group.attrs["NX_class"] = "NXprocess"
    for name in _STRINGS:
        group.create_dataset(name, data=getattr(provenance, name) or "", dtype=text)
    group.create_dataset("date", data=provenance.end_time or provenance.start_time, dtype=text)
    group.create_dataset("argv", data=np.array(provenance.argv, dtype=object), dtype=text)
    group.create_dataset("inputs", data=np.array(provenance.inputs, dtype=object), dtype=text)
    note = group.create_group("configuration")
    note.attrs["NX_class"] = "NXnote"
    note.create_dataset("type", data="text/json", dtype=text)
    note.create_dataset("data", data=json.dumps({"parameters": provenance.parameters,
                                                 "geometry": provenance.geometry}, indent=1), dtype=text)


def read_provenance(group: h5py.Group) -> Provenance:
    """The Provenance stored by :func:`write_provenance` in ``group``."""
    def text(name):
        return group[name].asstr()[()]

    try:
        config = json.loads(group["configuration/data"].asstr()[()])
        return Provenance(parameters=config["parameters"], geometry=config["geometry"],
                          inputs=tuple(group["inputs"].asstr()[()]), argv=tuple(group["argv"].asstr()[()]),
                          end_time=text("end_time") or None,
                          **{name: text(name) for name in _STRINGS if name != "end_time"})
    except (KeyError, ValueError) as exc:
        raise InputError(f"no braggsieve provenance in {group.name} ({exc})", group.file.filename) from None
