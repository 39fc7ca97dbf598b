"""Atomic output: write to a temporary name next to the target, rename when complete.

A command that fails or is interrupted leaves no partial output behind::

    with atomic_output("out.h5") as tmp:       # tmp = "out.h5.part-<pid>" in the same folder
        write_everything(tmp)
    # renamed to out.h5 only if the block finished without an exception

``atomic_outputs`` does the same for several files that belong together (e.g. an Eiger-like master file and
its data files): all are renamed at the end, none if anything failed.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Sequence


def _temporary_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.part-{os.getpid()}")


@contextlib.contextmanager
def atomic_outputs(paths: Sequence[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield temporary paths for ``paths``; rename all of them when the block succeeds, delete otherwise."""
    finals = [Path(p) for p in paths]
    temps = [_temporary_name(p) for p in finals]
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
    except BaseException:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise
    for temp, final in zip(temps, finals):
        if temp.exists():
            os.replace(temp, final)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield one temporary path for ``path``; rename it to ``path`` when the block succeeds."""
    with atomic_outputs([path]) as (temp,):
        yield temp
