"""The fake `tensorrt` install fixture shared by the runner tests (the fakes: test_tensorrt_options.py)."""

from __future__ import annotations

import sys

import pytest

from workers.toolchains.tensorrt_runner import cuda


@pytest.fixture
def install(monkeypatch):  # noqa: ANN001, ANN201
    """Install a fake as `tensorrt` for code that imports it (the build/merge/probe commands)."""

    def _install(trt):  # noqa: ANN001, ANN202
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(cuda, "cuda_device_info",
                            lambda: {"name": "NVIDIA H100 80GB HBM3", "sku": "h100-80gb-hbm3", "cc": "sm_90"})
        return trt

    return _install
