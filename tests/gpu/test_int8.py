"""INT8 through the farm (docs/design.md "INT8 calibration"): the small convnet calibrated from an uploaded data
set, and the same network written with Q/DQ nodes (tests/models.qdq_convnet) built without calibration; both
within the farm's INT8 tolerances of ONNX Runtime, with latency recorded against the FP32 and FP16 builds. A
second build of the same model and data set on the same TensorRT reuses the first one's calibration cache.

Tolerances (workers/validation.py): calibrated 0.1 of max|ref| against the FP32 model; Q/DQ 0.05 against ONNX
Runtime running the Q/DQ model itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.gpu import support
from tests.gpu.conftest import SMALL
from tests.gpu.support import TACTICS, build_summary, profile, wait_all

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "int8"
SIDE = SMALL["size"]
PROFILE = profile(1, 8, 16, SIDE)
BASE = {"profiles": [PROFILE], "tactic_sources": TACTICS}
SPECS = {"fp32": {**BASE, "tf32": False}, "fp16": {**BASE, "precision": ["fp16"]},
         "int8": {**BASE, "precision": ["int8"]}, "int8_fp16": {**BASE, "precision": ["int8", "fp16"]},
         "qdq": {**BASE, "precision": ["int8"]}}
TOLERANCE = {"int8": 0.1, "int8_fp16": 0.1, "qdq": 0.05}
CHECK_BATCH = 3


@pytest.fixture(scope="module")
def qdq_model(models_dir: Path) -> Path:
    from tests.models import qdq_convnet

    return qdq_convnet(models_dir / "qdq-convnet-small.onnx", **SMALL)


@pytest.fixture(scope="module")
def data_set(models_dir: Path) -> Path:
    from tests.models import calibration_set

    return calibration_set(models_dir / "calibration-small.npz", samples=256, size=SIDE, seed=11)


@pytest.fixture(scope="module")
def builds(farm, small_model: Path, qdq_model: Path, data_set: Path) -> dict:  # noqa: ANN001
    """FP32, FP16, INT8 calibrated and the Q/DQ model at once; the second INT8 build after the first ended."""
    client = farm.client()
    submitted = {name: client.submit(qdq_model if name == "qdq" else small_model, "tensorrt", SPECS[name],
                                     calibration=data_set if name == "int8" else None, wait=False)
                 for name in ("fp32", "fp16", "int8", "qdq")}
    done = dict(zip(submitted, wait_all(client, list(submitted.values()), timeout=600)))
    second = client.submit(small_model, "tensorrt", SPECS["int8_fp16"], calibration=data_set, wait=False)
    done["int8_fp16"] = wait_all(client, [second], timeout=600)[0]
    return done


def own_check(client, info, model: Path, data_set: Path, tmp_path: Path) -> dict:  # noqa: ANN001
    """The engine downloaded and run at a batch that is none of min/opt/max, on calibration samples, against
    ONNX Runtime running `model`."""
    path = client.download(client.engine(info.engine_id), tmp_path / f"{info.id}.plan")
    x = np.load(data_set)["input"][100:100 + CHECK_BATCH]
    return support.error_figures(support.ort_reference(model, {"input": x}),
                                 support.run_engine(path, {"input": x}, tmp_path))


@pytest.mark.parametrize("name", ["int8", "qdq"])
def test_int8_engines_match_onnxruntime_within_tolerance(farm, builds: dict, name: str, small_model: Path,  # noqa: ANN001
                                                         qdq_model: Path, data_set: Path, results, tmp_path: Path):
    client = farm.client(f"cache-int8-{name}")
    info = builds[name]
    summary = build_summary(client, info)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    model = qdq_model if name == "qdq" else small_model
    figures = own_check(client, info, model, data_set, tmp_path)
    latency = {k: client.engine(builds[k].engine_id).latency_p50_ms for k in ("fp32", "fp16") if builds[k].engine_id}
    cases = (engine.validation or {}).get("cases") or [{}]
    results.record(SECTION, name, {**summary, "calibration": engine.metadata.get("calibration"),
                                   "validation_tolerance": cases[0].get("tolerance"), "own_check": figures,
                                   "tolerance": TOLERANCE[name], "latency_p50_ms": engine.latency_p50_ms,
                                   "fp32_fp16_p50_ms": latency})
    calibration = engine.metadata.get("calibration") or {}
    if name == "qdq":
        assert calibration.get("mode") == "explicit" and calibration.get("qdq_layers", 0) > 0
    else:
        assert calibration.get("mode") == "calibrated" and calibration.get("cache", "").startswith("sha256:")
        assert calibration.get("batches") == 32  # 256 samples in batches of profile 0's opt batch, 8
    assert engine.validation_passed, f"the farm's validation failed: {engine.validation}"
    assert engine.validation["max_rel_error"] <= TOLERANCE[name]
    assert figures["max_rel_error"] <= TOLERANCE[name], f"fetched engine vs ONNX Runtime: {figures}"


def test_a_second_build_of_the_same_data_set_reuses_the_calibration_cache(farm, builds: dict, results):  # noqa: ANN001
    client = farm.client("cache-int8-reuse")
    first, second = builds["int8"], builds["int8_fp16"]
    assert first.status == second.status == "succeeded", second.error
    made = client.engine(first.engine_id).metadata["calibration"]
    reused = client.engine(second.engine_id).metadata["calibration"]
    log = client.log(second.id)
    results.record(SECTION, "reuse", {"first": made, "second": reused, "second_build_s": second.timings.get("build_s"),
                                      "first_build_s": first.timings.get("build_s"),
                                      "log": [ln for ln in log.splitlines() if "calibration" in ln][:6]})
    assert reused["mode"] == "reused" and reused["cache"] == made["cache"] and reused["made_by_build"] == first.id
    assert "reusing cache" in log and "not calibrating again" in log


def test_int8_latency_is_recorded_against_fp16_and_fp32(farm, builds: dict, results):  # noqa: ANN001
    client = farm.client("cache-int8-latency")
    p50 = {name: client.engine(info.engine_id).latency_p50_ms for name, info in builds.items() if info.engine_id}
    results.record(SECTION, "latency_p50_ms", p50)
    assert {"fp32", "fp16", "int8", "qdq"} <= set(p50), p50
