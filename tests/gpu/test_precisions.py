"""Per-layer precision and non-fp32 I/O through the farm (spec.layer_precisions, precision_constraints,
io_formats).

1. An FP16 build of the small convnet whose first conv (and its ReLU, which TensorRT fuses with it) are pinned
   to FP32 with precision_constraints=obey: the engine's layer table (TensorRT's inspector, detailed
   verbosity) must show FP32 outputs on the engine layers that hold them, and the farm's validation passes.
2. Engines with FP16 I/O (input fp16 linear or hwc8, output fp16 linear): the engine's typed `io` says so,
   the SDK fetches it (the farm validated it, inputs rounded through fp16), and the TensorRT runner's `run`
   on fp16 feeds (packed to HWC8 by the runner where asked) matches ONNX Runtime within FP16's tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, submit_and_wait

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "precisions"
SIDE = 32  # the small convnet's input side (tests/gpu/conftest.py SMALL)
BASE = {"precision": ["fp16"], "profiles": [profile(1, 4, 16, SIDE)], "tactic_sources": TACTICS}
PINNED = [{"pattern": "conv0", "precision": "fp32", "output_types": ["fp32"]},
          {"pattern": "relu0", "precision": "fp32", "output_types": ["fp32"]}]
FP16_TOLERANCE = 1e-2


def test_a_layer_pinned_to_fp32_in_an_fp16_build_reports_fp32(farm, small_model: Path, results) -> None:  # noqa: ANN001
    client = farm.client()
    spec = {**BASE, "layer_precisions": PINNED, "precision_constraints": "obey", "profiling_verbosity": "detailed"}
    info = submit_and_wait(client, small_model, spec, timeout=600)
    summary = build_summary(client, info)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    report = engine.metadata.get("layer_precisions") or {}
    rows = report.get("engine_layers") or []
    pinned = [row for row in rows if row.get("constrained_by")]
    results.record(SECTION, "conv0-fp32-in-fp16", {**summary, "rules": report.get("rules"), "note": report.get("note"),
                                                   "pinned_rows": pinned, "engine_layers": len(rows)})
    assert report.get("note") is None, report
    assert [r["layers"] for r in report["rules"]] == [1, 1], report["rules"]
    assert any("conv0" in row["constrained_by"] for row in pinned), rows
    for row in pinned:
        assert row["output_types"] and all(t == "fp32" for t in row["output_types"]), row
    assert engine.validation_passed, engine.validation


@pytest.mark.parametrize("layout", ["linear", "hwc8"])
def test_an_fp16_io_engine_fetched_and_run_on_fp16_feeds(farm, small_model: Path, trt_probe: dict, results,  # noqa: ANN001
                                                         tmp_path: Path, layout: str) -> None:
    client = farm.client(f"cache-fp16-io-{layout}")
    spec = {**BASE, "io_formats": {"input": {"dtype": "fp16", "formats": [layout]}, "logits": {"dtype": "fp16"}}}
    info = submit_and_wait(client, small_model, spec, timeout=600)
    summary = build_summary(client, info)
    results.record(SECTION, f"fp16-io-{layout}", summary)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    io = {t.name: (t.dtype, t.format) for t in engine.io}
    assert io == {"input": ("float16", layout), "logits": ("float16", "linear")}, engine.io
    assert engine.validation_passed, engine.validation
    gpu = trt_probe["devices"][0]
    runtime = f"tensorrt=={trt_probe['version']}@{gpu['sku']}/{gpu['cc']}"
    path = client.fetch(small_model, runtime=runtime, spec=spec)
    x = np.random.default_rng(11).uniform(-1, 1, (3, 3, SIDE, SIDE)).astype(np.float16)
    ours = support.run_engine(path, {"input": x}, tmp_path)
    assert ours["logits"].dtype == np.float16 and ours["logits"].shape == (3, 10)
    figures = support.error_figures(support.ort_reference(small_model, {"input": x.astype(np.float32)}), ours)
    results.record(SECTION, f"fp16-io-{layout}", {**summary, "io": io, "own_check": figures,
                                                  "validation_max_rel": engine.validation.get("max_rel_error")})
    assert figures["max_rel_error"] <= FP16_TOLERANCE, figures
