#!/usr/bin/env python3
"""One-file bootstrap for braggsieve: set up a private environment, then run the demo or the tests.

    python3 dev.py demo     # builds .venv/ (first time only), runs `braggsieve demo`
    python3 dev.py test     # builds .venv/ with the test extras, runs the default test suite

Only Python >= 3.10 and pip are needed: the virtual environment is created in ``.venv`` next to this
file and the package is installed there in editable mode.  The environment is rebuilt when
``pyproject.toml`` changes.  Extra arguments are passed on (``python3 dev.py test -k geometry``).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / "braggsieve-install.stamp"


def _wanted_stamp(extras: str) -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{extras}:{digest}"


def ensure_environment(extras: str) -> None:
    """Create ``.venv`` and install braggsieve with ``extras`` unless already done for this pyproject."""
    if not PYTHON.exists():
        print(f"[dev.py] creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    installed = STAMP.read_text().split("\n") if STAMP.exists() else []
    stamp = _wanted_stamp(extras)
    if stamp in installed:
        return
    print(f"[dev.py] installing braggsieve[{extras}] into {VENV} (first run takes a few minutes)", flush=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "-e", target], check=True)
    STAMP.write_text("\n".join([*installed, stamp]))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "demo":
        ensure_environment("")
        return subprocess.call([str(BIN / "braggsieve"), "demo", *rest])
    ensure_environment("test")
    workers = ["-n", "auto"] if not any(a.startswith("-n") for a in rest) else []
    return subprocess.call([str(PYTHON), "-m", "pytest", *workers, *rest], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
