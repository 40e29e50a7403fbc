"""Plans that serve more than the GPU that built them, and plans that can be refitted.

- hardware_compatibility=ampere_plus: the farm's resolve serves it to a runtime of ANOTHER SKU with cc
  9.0 (tensorrt==<v>@h200/sm_90) with match_class ampere_plus; the fetched plan runs here and matches
  ONNX Runtime.
- refit=refit: engine metadata says refittable; the plan is actually refitted with trt.Refitter (new
  weights for the first conv) in the toolchain's interpreter and then matches ONNX Runtime on a model
  carrying those same new weights.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, wait_all

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "compat"
BASE = {"tf32": False, "profiles": [profile(1, 4, 16, 32)], "tactic_sources": TACTICS}
AMPERE = {**BASE, "hardware_compatibility": "ampere_plus"}
REFIT = {**BASE, "refit": "refit"}


@pytest.fixture(scope="module")
def builds(farm, small_model: Path) -> dict:  # noqa: ANN001
    client = farm.client()
    names = ("none", "ampere_plus", "refit")
    submitted = [client.submit(small_model, "tensorrt", spec, wait=False) for spec in (BASE, AMPERE, REFIT)]
    return dict(zip(names, wait_all(client, submitted)))


def test_ampere_plus_engine_serves_another_sku_of_cc_90(farm, builds: dict, small_model: Path, trt_probe: dict,  # noqa: ANN001
                                                       results, tmp_path: Path) -> None:
    client = farm.client("cache-ampere")
    info = builds["ampere_plus"]
    summary = build_summary(client, info)
    results.record(SECTION, "ampere_plus_build", summary)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    assert info.device == "ampere_plus", info.device
    here = trt_probe["devices"][0]["sku"]
    other = "h200" if not here.startswith("h200") else "h100-80gb-hbm3"  # another SKU of cc 9.0
    runtime = f"tensorrt=={trt_probe['version']}@{other}/sm_90"
    found = client.resolve(small_model, runtime=runtime, spec=AMPERE)
    path = client.fetch(small_model, runtime=runtime, spec=AMPERE)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    figures = support.error_figures(support.ort_reference(small_model, {"input": x}),
                                    support.run_engine(path, {"input": x}, tmp_path))
    none_engine = builds["none"]
    latency = {}
    if none_engine.status == "succeeded":
        plain = client.engine(none_engine.engine_id)
        amp = client.engine(info.engine_id)
        latency = {"none_p50_ms": plain.latency_p50_ms, "ampere_plus_p50_ms": amp.latency_p50_ms,
                   "ampere_plus_over_none": round(amp.latency_p50_ms / plain.latency_p50_ms, 4)}
    results.record(SECTION, "ampere_plus_resolve", {
        "runtime": runtime, "match_class": found.match_class, "engine": found.engine.id, "reason": found.reason,
        "warning": found.warning, "run_here": figures, "latency_at_opt_batch": latency})
    assert found.match_class == "ampere_plus", found
    assert found.engine.id == info.engine_id
    assert found.engine.hardware_compatibility == "ampere_plus"
    assert figures["max_rel_error"] <= 1e-3, figures


def test_refit_engine_is_refittable_and_refits(farm, builds: dict, small_model: Path, results,  # noqa: ANN001
                                               tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    client = farm.client("cache-refit")
    info = builds["refit"]
    summary = build_summary(client, info)
    results.record(SECTION, "refit_build", summary)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    assert engine.refittable is True and engine.metadata.get("refittable") is True
    plain = builds["none"]
    if plain.status == "succeeded":
        assert client.engine(plain.engine_id).refittable is False
    path = client.fetch(small_model, runtime=f"tensorrt=={engine.version}@{engine.sku}", spec=REFIT)

    # New weights for the first conv; the same weights in a copy of the ONNX model for the reference.
    model = onnx.load(str(small_model))
    originals = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(11)
    new = {name: (rng.standard_normal(originals[name].shape) * 0.2).astype(np.float32)
           for name in ("conv0.w", "conv0.b")}
    for t in model.graph.initializer:
        if t.name in new:
            t.CopyFrom(numpy_helper.from_array(new[t.name], t.name))
    refitted_model = tmp_path / "refitted.onnx"
    onnx.save(model, str(refitted_model))
    np.savez(tmp_path / "new.npz", **new)
    np.savez(tmp_path / "originals.npz", **originals)
    out, result = tmp_path / "refitted.plan", tmp_path / "refit.json"
    done = subprocess.run([support.TRT_PYTHON, str(Path(__file__).with_name("refit_engine.py")), str(path),
                           str(tmp_path / "new.npz"), str(tmp_path / "originals.npz"), str(out), str(result)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": "0"})
    body = json.loads(result.read_text()) if result.exists() else {"ok": False, "stderr": done.stderr[-3000:]}
    x = np.random.default_rng(5).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    figures = None
    if body.get("ok"):
        figures = support.error_figures(support.ort_reference(refitted_model, {"input": x}),
                                        support.run_engine(out, {"input": x}, tmp_path))
        before = support.error_figures(support.ort_reference(small_model, {"input": x}),
                                       support.run_engine(path, {"input": x}, tmp_path))
        body["before_refit_vs_original_model"] = before
    results.record(SECTION, "refit", {"refitter": {k: v for k, v in body.items() if k != "all_weights"},
                                      "weights_in_engine": len(body.get("all_weights", [])),
                                      "after_refit_vs_refitted_model": figures})
    assert body.get("ok"), f"refit failed: {body}\n{done.stderr[-3000:]}"
    assert figures is not None and figures["max_rel_error"] <= 1e-3, figures
