"""Fixtures of the GPU suite (`pytest -m gpu tests/gpu`): see tests/gpu/support.py and scripts/gpu-suite.sh.

Without a TensorRT interpreter in TRTFARM_TOOLCHAINS every test here is skipped (tests/gpu/__init__ says
why); with one, a session farm (`registry.cli up --gpus auto`) is started on first use.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import pytest

from tests.gpu import support

_RESULTS: support.Results | None = None


def results_singleton() -> support.Results:
    global _RESULTS
    if _RESULTS is None:
        _RESULTS = support.Results(Path(os.environ.get("GPU_RESULTS", "/tmp/gpu-results.json")))
    return _RESULTS


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if support.TRT_PYTHON is None or "tests/gpu" not in report.nodeid:
        return
    if report.when == "call" or report.outcome != "passed":
        detail = None
        if report.outcome != "passed":
            detail = str(report.longrepr)[-2500:]
        results_singleton().record("tests", report.nodeid.split("::", 1)[-1] + ("" if report.when == "call" else
                                                                                  f" [{report.when}]"),
                                   {"outcome": report.outcome, "seconds": round(report.duration, 2),
                                    "detail": detail})


@pytest.fixture(scope="session")
def results() -> support.Results:
    return results_singleton()


@pytest.fixture(scope="session")
def trt_probe(results: support.Results) -> dict:
    if support.TRT_PYTHON is None:
        pytest.skip(support.SKIP_REASON)
    info = support.probe()
    gpus = info.get("devices", [])
    if not gpus:
        pytest.skip(f"the TensorRT toolchain ({support.TRT_PYTHON}) sees no GPU")
    results.record("host", tensorrt=info["version"], tensorrt_python=info.get("python"), features=info["features"],
                   gpus=[{k: d.get(k) for k in ("index", "name", "sku", "cc", "memory_mib", "driver")} for d in gpus],
                   driver=gpus[0].get("driver"), worker_python=platform.python_version(),
                   started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   cuda_cache_disable=os.environ.get("CUDA_CACHE_DISABLE"))
    try:
        import onnxruntime

        results.record("host", onnxruntime=onnxruntime.__version__)
    except ImportError:
        pass
    return info


@pytest.fixture(scope="session")
def logs_dir() -> Path:
    return Path(os.environ.get("GPU_RESULTS", "/tmp/gpu-results.json")).parent


@pytest.fixture(scope="session")
def farm(trt_probe: dict, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path):  # noqa: ANN201
    """The session's embedded farm: one TensorRT worker per GPU the toolchain sees."""
    gpus = len(trt_probe["devices"])
    started = time.monotonic()
    instance = support.gpu_farm(tmp_path_factory.mktemp("farm-session"), "auto", expected_workers=gpus)
    try:
        instance.start()
    except Exception:
        instance.stop()
        instance.save_logs(logs_dir / "farm-logs.txt")
        raise
    results_singleton().record("farm", start_seconds=round(time.monotonic() - started, 2), workers=[
        {"name": w.name, "queues": w.queues} for w in instance.live])
    yield instance
    instance.stop()
    instance.save_logs(logs_dir / "farm-logs.txt", chars=150_000)


@pytest.fixture(scope="session")
def sku(trt_probe: dict) -> str:
    return trt_probe["devices"][0]["sku"]


@pytest.fixture(scope="session")
def trt_version(trt_probe: dict) -> str:
    return trt_probe["version"]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


# ------------------------------------------------------------------------------------------ models
# small: 4 conv layers, 16 channels, 32x32; medium: 12 layers, 64 channels, 64x64 (both dynamic batch N)
SMALL = {"channels": 16, "layers": 4, "size": 32}
MEDIUM = {"channels": 64, "layers": 12, "size": 64}


@pytest.fixture(scope="session")
def small_model(models_dir: Path) -> Path:
    from tests.models import convnet

    return convnet(models_dir / "convnet-small.onnx", **SMALL)


@pytest.fixture(scope="session")
def medium_model(models_dir: Path) -> Path:
    from tests.models import convnet

    return convnet(models_dir / "convnet-medium.onnx", **MEDIUM)
