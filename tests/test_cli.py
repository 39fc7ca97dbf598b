"""The command-line front end: version, help, and one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import braggsieve
from braggsieve.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert braggsieve.__version__ in capsys.readouterr().out


def test_console_script_help_runs():
    script = Path(sys.executable).with_name("braggsieve")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "braggsieve" in out.stdout and "commands" in out.stdout
