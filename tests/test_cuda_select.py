"""Backend choice: ``select_engine("cpu" | "cuda" | "auto")`` -- runs everywhere (the GPU itself is not needed)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from braggsieve.engine import device
from braggsieve.engine.corrections import prepare_corrections
from braggsieve.engine.cpu import CpuEngine
from braggsieve.engine.csr import build_binning
from braggsieve.engine.params import CorrectionParams, IntegrationParams
from braggsieve.errors import ParameterError


@pytest.fixture()
def setup():
    shape = (40, 50)
    rows, cols = np.mgrid[:shape[0], :shape[1]]
    binning = build_binning(np.hypot(rows - 20.0, cols - 25.0), IntegrationParams(bins=20, unit="r_mm"))
    corrections = prepare_corrections(shape, CorrectionParams(solid_angle=False))
    return binning, corrections


def test_cpu_is_the_cpu_engine(setup):
    assert isinstance(device.select_engine("cpu", *setup), CpuEngine)


def test_auto_falls_back_to_cpu_with_one_log_line(setup, monkeypatch, caplog):
    monkeypatch.setattr(device, "cuda_unavailable_reason", lambda: "CuPy is not installed")
    with caplog.at_level(logging.INFO, logger="braggsieve"):
        engine = device.select_engine("auto", *setup)
    assert isinstance(engine, CpuEngine)
    lines = [r.getMessage() for r in caplog.records if r.name == "braggsieve"]
    assert len(lines) == 1 and "CuPy is not installed" in lines[0] and "CPU" in lines[0]


def test_cuda_without_gpu_is_an_error(setup, monkeypatch):
    monkeypatch.setattr(device, "cuda_unavailable_reason", lambda: "no CUDA device found")
    with pytest.raises(ParameterError, match="no CUDA device"):
        device.select_engine("cuda", *setup)


def test_unknown_device_is_an_error(setup):
    with pytest.raises(ParameterError, match="unknown device"):
        device.select_engine("tpu", *setup)


def test_reason_is_a_line_or_none():
    reason = device.cuda_unavailable_reason()
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)
