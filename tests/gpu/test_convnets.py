"""Generated convnets through the farm: FP32 and FP16 with a dynamic batch profile, checked twice.

1. The farm's own record: engine.validation (the worker ran the engine against ONNX Runtime at the
   profile's opt/min/max shapes) and its latency.
2. Our own check on the FETCHED file: SDK fetch for this host's runtime (sha256 verified), the plan
   header's version, then the TensorRT runner's `run` at a batch that is none of min/opt/max, against
   ONNX Runtime. Error = the farm's relative error (workers.validation.errors: |a-r| / max|r|);
   tolerance FP32 1e-3, FP16 1e-2.

"FP32" here is real FP32: tf32=false. TensorRT's default (TF32 allowed) is built too and recorded, with
the farm's verdict on it (TF32 keeps FP16's 10 mantissa bits, so the farm holds it to 1e-2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, wait_all

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "convnets"
SIZES = {"small": (32, (1, 4, 16)), "medium": (64, (1, 4, 8))}
PRECISIONS = {"fp32": {"tf32": False}, "fp16": {"precision": ["fp16"]}, "fp32_tf32": {}}
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}
CASES = [("small", "fp32"), ("small", "fp16"), ("medium", "fp32"), ("medium", "fp16")]
CHECK_BATCH = 3


def spec_for(size: str, precision: str) -> dict:
    side, (lo, opt, hi) = SIZES[size]
    return {"profiles": [profile(lo, opt, hi, side)], "tactic_sources": TACTICS, **PRECISIONS[precision]}


@pytest.fixture(scope="module")
def builds(farm, small_model: Path, medium_model: Path) -> dict:  # noqa: ANN001
    """Every convnet build submitted at once (the fleet's workers share them), then waited for."""
    client = farm.client()
    models = {"small": small_model, "medium": medium_model}
    wanted = [*CASES, ("medium", "fp32_tf32")]
    submitted = [client.submit(models[s], "tensorrt", spec_for(s, p), wait=False) for s, p in wanted]
    return dict(zip(wanted, wait_all(client, submitted)))


@pytest.mark.parametrize("size,precision", CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_convnet_matches_onnxruntime(farm, builds: dict, size: str, precision: str, small_model: Path,  # noqa: ANN001
                                     medium_model: Path, trt_probe: dict, results, tmp_path: Path) -> None:
    client = farm.client(f"cache-{size}-{precision}")
    info = builds[(size, precision)]
    summary = build_summary(client, info)
    results.record(SECTION, f"{size}-{precision}", summary)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    tol = TOLERANCE[precision]
    model = small_model if size == "small" else medium_model
    gpu = trt_probe["devices"][0]
    runtime = f"tensorrt=={trt_probe['version']}@{gpu['sku']}/{gpu['cc']}"
    if engine.validation_passed:  # resolve serves only engines that passed the farm's validation
        path = client.fetch(model, runtime=runtime, spec=spec_for(size, precision))
    else:
        path = client.download(engine, tmp_path / "engine.plan")
    header = support.plan_header_version(path)
    side = SIZES[size][0]
    x = np.random.default_rng(7).uniform(-1, 1, (CHECK_BATCH, 3, side, side)).astype(np.float32)
    ours = support.run_engine(path, {"input": x}, tmp_path)
    ref = support.ort_reference(model, {"input": x})
    figures = support.error_figures(ref, ours)
    results.record(SECTION, f"{size}-{precision}", {**summary, "fetched_plan_header": header, "runtime": runtime,
                                                   "own_check_batch": CHECK_BATCH, "own_check": figures,
                                                   "tolerance": tol})
    assert engine.validation_passed, f"the farm's validation failed: {engine.validation}"
    assert engine.validation["max_rel_error"] <= tol
    assert header.startswith(trt_probe["version"]), f"plan header {header} vs toolchain {trt_probe['version']}"
    assert figures["max_rel_error"] <= tol, f"fetched engine vs ONNX Runtime: {figures} (tolerance {tol})"


def test_fp32_with_tensorrt_default_tf32_is_recorded(farm, builds: dict, medium_model: Path, results,  # noqa: ANN001
                                                     tmp_path: Path) -> None:
    """TensorRT's default FP32 build (TF32 allowed): recorded with the farm's verdict; must build."""
    client = farm.client("cache-tf32")
    info = builds[("medium", "fp32_tf32")]
    summary = build_summary(client, info)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    path = client.download(engine, tmp_path / "tf32.plan")
    x = np.random.default_rng(7).uniform(-1, 1, (CHECK_BATCH, 3, 64, 64)).astype(np.float32)
    figures = support.error_figures(support.ort_reference(medium_model, {"input": x}),
                                    support.run_engine(path, {"input": x}, tmp_path))
    results.record(SECTION, "medium-fp32_tf32", {**summary, "own_check": figures,
                                                 "note": "tf32 allowed (TensorRT default); farm tolerance 1e-2"})
