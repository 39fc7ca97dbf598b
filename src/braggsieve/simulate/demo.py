"""The built-in demo dataset: 100 simulated stills on a PILATUS 1M, 40 % hits, made on first use and cached.

``demo_dataset()`` returns the paths of the run (frames ``demo.h5``, ``demo.poni``, ``demo_truth.h5``) in
``$BRAGGSIEVE_CACHE`` or ``$XDG_CACHE_HOME/braggsieve`` (default ``~/.cache/braggsieve``), under a folder
named after a hash of the braggsieve version and the parameters, so that a version that changes the
simulation makes a new dataset instead of reusing a stale one.  Generation takes about 7 s on two cores.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import __version__
from ..io.provenance import Provenance
from ..params import as_dict
from .files import RunFiles, run_files, write_run
from .params import BackgroundParams, BadPixelParams, NoiseParams, SetupParams, SsxParams

DEMO_PARAMS = {
    "setup": SetupParams(detector="pilatus1m", distance=150.0, wavelength=1.0, frames=100, seed=1),
    "ssx": SsxParams(hit_fraction=0.4),
    "background": BackgroundParams(),
    "noise": NoiseParams(),
    "bad_pixels": BadPixelParams(),
}


def default_cache_dir() -> Path:
    """$BRAGGSIEVE_CACHE, else $XDG_CACHE_HOME/braggsieve, else ~/.cache/braggsieve."""
    if os.environ.get("BRAGGSIEVE_CACHE"):
        return Path(os.environ["BRAGGSIEVE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "braggsieve"


def demo_dataset(cache_dir: str | os.PathLike | None = None, progress: bool | None = None) -> RunFiles:
    """Paths of the demo run, generating it first if it is not in ``cache_dir`` (see module docstring)."""
    from .ssx import SsxSimulator, run_geometry  # numerical modules: only when the data must be made

    described = {name: as_dict(p) for name, p in DEMO_PARAMS.items()}
    digest = hashlib.sha256(json.dumps([__version__, described], sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    files = run_files(folder / f"demo-{digest}" / "demo.h5")
    if all(path.exists() for path in (files.data, files.poni, files.truth)):
        return files
    setup = DEMO_PARAMS["setup"]
    poni = run_geometry(setup)
    simulator = SsxSimulator(poni, DEMO_PARAMS["ssx"], DEMO_PARAMS["background"], DEMO_PARAMS["noise"],
                             DEMO_PARAMS["bad_pixels"], seed=setup.seed)
    provenance = Provenance.start(parameters=DEMO_PARAMS, geometry=poni.as_dict(),
                                  argv=["braggsieve.simulate.demo.demo_dataset", f"version {__version__}"])
    return write_run(simulator, files.data, setup.frames, provenance, progress=progress)
