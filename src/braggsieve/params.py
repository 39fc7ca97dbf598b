"""Parameters as frozen dataclasses, shared by the command line, TOML config files and output provenance.

Each tool declares its parameters once::

    @dataclass(frozen=True)
    class ClipParams:
        cutoff_clip: float = option(0.0, "clip at k sigma; 0 = Chauvenet's criterion")
        cycles: int = option(5, "maximum number of clipping iterations")

and gets from this module, without repeating itself:

* ``add_options(parser, ClipParams)`` -- ``--cutoff-clip``/``--cycles`` on an argparse parser, with the
  default and help text taken from the dataclass (booleans become ``--flag/--no-flag``);
* ``from_sources(ClipParams, namespace, config)`` -- an instance where an option given on the command line
  wins over the config file (TOML table), which wins over the dataclass default;
* ``as_dict(params)`` -- a JSON-ready dict written into every output file, so that a run can be
  reproduced from its own output.

Validation belongs in each class's ``__post_init__`` and raises :class:`~braggsieve.errors.ParameterError`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Mapping, TypeVar

from .errors import InputError, ParameterError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

P = TypeVar("P")
_META = "braggsieve"


def option(default: Any, help: str, *, choices=None, metavar: str | None = None, nargs=None,
           type=None, flag: str | None = None):
    """Declare a dataclass field that is also a command-line option and a config-file key.

    ``type`` is the converter for command-line strings (default: the type of ``default``); ``nargs=2``
    makes a pair such as a radial range; ``flag`` overrides the option name (default ``--field-name``).
    """
    meta = {"help": help, "choices": choices, "metavar": metavar, "nargs": nargs, "type": type, "flag": flag}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in parameter dataclasses")
    return dataclasses.field(default=default, metadata={_META: meta})


def _flag(field: dataclasses.Field) -> str:
    return field.metadata[_META]["flag"] or "--" + field.name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (),
                title: str | None = None) -> None:
    """Add one command-line option per field of the parameter dataclass ``cls`` to ``parser``."""
    group = parser.add_argument_group(title or cls.__doc__.strip().splitlines()[0] if cls.__doc__ else None)
    for field in dataclasses.fields(cls):
        if field.name in skip or _META not in field.metadata:
            continue
        meta = field.metadata[_META]
        default = field.default
        help_text = f"{meta['help']} (default: {default if default is not None else 'none'})"
        kwargs: dict[str, Any] = {"dest": field.name, "default": None, "help": help_text}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = meta["type"] or (type(default) if default is not None else str)
            for key in ("choices", "metavar", "nargs"):
                if meta[key] is not None:
                    kwargs[key] = meta[key]
        group.add_argument(_flag(field), **kwargs)


def load_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a TOML config file (``--config``); returns ``{}`` for ``None``."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise InputError(f"cannot read config file: {exc.strerror}", path) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not a valid TOML file: {exc}", path) from None


def from_sources(cls: type[P], namespace: argparse.Namespace | Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None) -> P:
    """Build ``cls`` from command-line values (not None) over config values over defaults.

    ``config`` is the table for this tool (e.g. ``load_config(path).get("sparsify", {})``); unknown keys
    in it are an error so that typos do not pass silently.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    config = dict(config or {})
    unknown = sorted(set(config) - names)
    if unknown:
        raise ParameterError(f"unknown {cls.__name__} key(s) in config: {', '.join(unknown)}")
    given = vars(namespace) if isinstance(namespace, argparse.Namespace) else dict(namespace or {})
    values = {k: v for k, v in config.items()}
    values.update({k: v for k, v in given.items() if k in names and v is not None})
    for field in dataclasses.fields(cls):
        if field.metadata.get(_META, {}).get("nargs") and isinstance(values.get(field.name), list):
            values[field.name] = tuple(values[field.name])
    return cls(**values)


def as_dict(params: Any) -> dict[str, Any]:
    """JSON-ready dict of a parameter dataclass (tuples become lists), for provenance."""
    return json.loads(json.dumps(dataclasses.asdict(params)))
