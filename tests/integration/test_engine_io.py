"""What a client binds: an engine's I/O (name, shape with -1 where it is set at run time, dtype, layout) in
the resolve answer, the engine listing and `trtfarm engines show` -- here with an ONNX Runtime engine (linear
fp32 I/O); the TensorRT side (fp16 and vectorized I/O) is in tests/gpu/test_precisions.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from registry.errors import InvalidSpec
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet

EXPECTED_IO = [
    {"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16], "format": "linear"},
    {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10], "format": "linear"},
]


def test_resolve_listing_and_engines_show_name_the_buffers_to_bind(farm: RunningFarm, ort_runtime: str,
                                                                    tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "net.onnx", channels=4, layers=1))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    assert build.status == "succeeded", build.error
    answer = sdk.resolve(model.id, runtime=ort_runtime)
    assert [t.model_dump() for t in answer.engine.io] == EXPECTED_IO
    assert [t.model_dump() for t in sdk.engines(model.id)[0].io] == EXPECTED_IO
    raw = httpx.get(f"{farm.url}/v1/engines/{answer.engine.id}",
                    headers={"Authorization": f"Bearer {farm.token}"} if farm.token else {}).json()
    assert raw["io"] == EXPECTED_IO  # in the API's answer itself, for clients without the SDK

    env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(tmp_path)}
    if farm.token:
        env["TRTFARM_TOKEN"] = farm.token
    done = subprocess.run([sys.executable, "-m", "registry.cli", "engines", "show", answer.engine.id[:12]],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "input" in done.stdout and "?x3x16x16" in done.stdout and "linear" in done.stdout, done.stdout
    shown = subprocess.run([sys.executable, "-m", "registry.cli", "engines", "show", answer.engine.id, "--json"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(shown.stdout)["io"] == EXPECTED_IO


def test_io_formats_are_a_tensorrt_option(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "net.onnx", channels=4, layers=1))
    with pytest.raises(InvalidSpec, match="io_formats: TensorRT options, but the target is onnxruntime"):
        sdk.submit(model.id, ort_runtime, {**batch_profile(), "io_formats": {"input": {"dtype": "fp16"}}})
