"""spec.sanitize through a real farm with the ONNX Runtime toolchain: what was done is on the build (its
warnings, `trtfarm build`), in its log and on the engine; the engine validates against the original model,
or the sanitized one where ONNX Runtime cannot load the original (opset 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from registry.errors import InvalidSpec
from tests.integration.conftest import RunningFarm
from tests.models import opset6_broadcast_model, sanitizable_model

ROWS = {"min": [1, 4], "opt": [2, 4], "max": [4, 4]}


def test_a_sanitized_build_says_what_was_done_and_validates(farm: RunningFarm, ort_runtime: str,
                                                            tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(sanitizable_model(tmp_path / "s.onnx"))
    profiles = {"profiles": [{"a": ROWS, "b": ROWS}]}
    build = sdk.submit(model.id, ort_runtime, {**profiles, "sanitize": True}, wait=True)
    assert build.status == "succeeded", build.error
    (warning,) = [w for w in build.warnings if w.code == "sanitized"]
    assert warning.message.startswith("built from the sanitized model: folded 2 constant node(s) into "
                                      "initializers (Mul, Reshape)")
    assert "named dim: input a axis 0 '?' -> 'a_dim0'; named dim: input b axis 0 '?' -> 'b_dim0'" in warning.message
    assert build.spec["sanitize"] == {"fold_constants": True, "opset": 7, "symbolic_dims": True, "shape_values": {}}
    assert "sanitize_s" in build.timings
    engine = sdk.engine(build.engine_id)
    assert engine.validation_passed is True and len(engine.validation["cases"]) == 3
    assert engine.metadata["sanitize"]["validation_reference"] == "original"
    assert engine.metadata["sanitize"]["notes"][0] == "folded 2 constant node(s) into initializers (Mul, Reshape)"
    log = sdk.log(build.id)
    for line in ("sanitize: folded 2 constant node(s) into initializers (Mul, Reshape)",
                 "sanitize: named dim: input b axis 0 '?' -> 'b_dim0'",
                 "validation reference: ONNX Runtime running the original model"):
        assert line in log, line

    plain = sdk.submit(model.id, ort_runtime, profiles, wait=True)  # another key: the engine computes another graph
    assert plain.key != build.key and plain.warnings == [] and "sanitize" not in sdk.engine(plain.engine_id).metadata

    env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "registry.cli"]
    again = subprocess.run([*cli, "submit", model.id, "--target", ort_runtime, "--sanitize", "--shape", "a:1x4,2x4,4x4",
                            "--shape", "b:1x4,2x4,4x4", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["id"] == build.id  # --sanitize is `sanitize: true`: the same key
    shown = subprocess.run([*cli, "build", build.id], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())  # rich wraps long lines
    assert "warning sanitized: built from the sanitized model: folded 2 constant node(s)" in text

    with pytest.raises(InvalidSpec, match="spec.sanitize.fold: unknown field"):  # the SDK checks before sending
        sdk.submit(model.id, ort_runtime, {**profiles, "sanitize": {"fold": True}})
    for spec, message in (({**profiles, "sanitize": {"fold": True}}, "spec.sanitize.fold: unknown field"),
                          ({"profiles": [{"b": ROWS}], "sanitize": {"shape_values": {"a": [1]}}},
                           "spec.sanitize.shape_values.a: input a is float32")):
        answer = httpx.post(f"{farm.url}/v1/builds", json={"model": model.id, "target": ort_runtime, "spec": spec},
                            timeout=30)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_spec", answer.text
        assert message in answer.json()["message"]


def test_a_pre_opset_7_model_builds_sanitized_and_is_checked_against_the_sanitized_model(
        farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(opset6_broadcast_model(tmp_path / "o6.onnx"))
    build = sdk.submit(model.id, ort_runtime, {"sanitize": {"fold_constants": False}}, wait=True)
    assert build.status == "succeeded", build.error
    assert [w.message for w in build.warnings if w.code == "sanitized"] == [
        "built from the sanitized model: converted opset 6 -> 7 (onnx.version_converter)"]
    engine = sdk.engine(build.engine_id)
    assert engine.validation_passed is True and engine.metadata["sanitize"]["validation_reference"] == "sanitized"
    assert ("validation reference: ONNX Runtime running the sanitized model (it cannot load the original: "
            in sdk.log(build.id))
