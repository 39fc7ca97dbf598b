"""What the tests that need CuPy and a CUDA GPU import: CuPy itself (the importing test module is skipped where
CuPy is not installed) and ``GPU_ONLY``, their ``pytestmark`` (skipped where no GPU is seen: CI has none)."""
from __future__ import annotations

import pytest

cupy = pytest.importorskip("cupy")
try:
    HAVE_GPU = cupy.cuda.runtime.getDeviceCount() > 0
except cupy.cuda.runtime.CUDARuntimeError:
    HAVE_GPU = False
GPU_ONLY = [pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA GPU")]
