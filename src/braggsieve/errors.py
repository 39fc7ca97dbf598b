"""Errors that reach the user as one line (file and problem), never as a traceback."""
from __future__ import annotations

import os


class BraggsieveError(Exception):
    """A problem with the user's input or parameters.

    The command-line front end prints ``braggsieve: error: <message>`` and exits with status 2.
    Messages name the file (when there is one) and say what is wrong with it.
    """

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(BraggsieveError):
    """An input file is unreadable, truncated, lacks a dataset or has the wrong shape."""


class ParameterError(BraggsieveError):
    """A parameter has an unknown or inconsistent value (unit, error model, ranges, ...)."""
