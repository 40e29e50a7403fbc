"""`trtfarm submit --trtexec` and `trtfarm inspect` against a real farm, with an ONNX Runtime engine: trtexec's
shape and benchmark flags build it (TensorRT-only flags would be refused for this target), and inspect shows its
target, profile and I/O, and says it has no layer table. The TensorRT side of the rendering (the engine
inspector's layers) is in tests/unit/registry/test_cli_inspect.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import RunningFarm
from tests.models import convnet

SHAPES = "--minShapes=input:1x3x16x16 --optShapes=input:2x3x16x16 --maxShapes=input:4x3x16x16"


def trtfarm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def test_submit_with_trtexec_flags_then_inspect_the_engine(farm: RunningFarm, ort_runtime: str,
                                                            tmp_path: Path) -> None:
    model = convnet(tmp_path / "net.onnx", channels=4, layers=1)
    env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(tmp_path), "COLUMNS": "200"}
    if farm.token:
        env["TRTFARM_TOKEN"] = farm.token
    built = trtfarm("submit", str(model), "-t", ort_runtime, "--trtexec",
                    f"{SHAPES} --iterations=3 --timingCacheFile=/tmp/t.cache", "--wait", "--json", env=env)
    assert built.returncode == 0, built.stderr
    build = json.loads(built.stdout)
    assert build["status"] == "succeeded", build["error"]
    assert build["spec"]["profiles"] == [{"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16],
                                                    "max": [4, 3, 16, 16]}}]
    assert "note: --trtexec --timingCacheFile ignored" in built.stderr

    shown = trtfarm("inspect", build["engine_id"][:12], env=env)
    assert shown.returncode == 0, shown.stderr
    for part in ("==== ONNX Runtime Engine ====", f"Target: {ort_runtime}", "?x3x16x16", "linear",
                 "---- 1 Profile(s) (from the spec) ----", "min=(1, 3, 16, 16), opt=(2, 3, 16, 16), max=(4, 3, 16, 16)",
                 "ONNX Runtime engines have no layer table"):
        assert part in shown.stdout, (part, shown.stdout)
    view = json.loads(trtfarm("inspect", build["engine_id"], "--json", env=env).stdout)
    assert view["io"][0] == {"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16],
                             "format": "linear"}
    assert view["layers"] is None and view["target"] == ort_runtime

    refused = trtfarm("submit", str(model), "-t", ort_runtime, "--trtexec", f"{SHAPES} --fp16", env=env)
    assert refused.returncode == 1
    assert "precision: TensorRT options, but the target is onnxruntime" in refused.stderr, refused.stderr
    unknown = trtfarm("submit", str(model), "-t", ort_runtime, "--trtexec", "--useCudaGraph --fp61", env=env)
    assert unknown.returncode == 1
    assert "--useCudaGraph is not supported" in unknown.stderr and "unknown trtexec flag --fp61" in unknown.stderr
