"""Models as published models come, through a real farm: IR 3 models that list their weights among the
graph inputs, batch dimensions written as -1, dynamic inputs given no range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import expanding_model, fully_convolutional, ir3_convnet


def test_an_ir3_model_with_initializer_inputs_builds_validates_and_runs_on_its_one_input(
        farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(ir3_convnet(tmp_path / "zoo.onnx", seed=3))
    assert [i.name for i in model.inputs] == ["input"]  # the weights listed as inputs are no inputs to give
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    assert build.status == "succeeded", build.error
    engine = sdk.engine(build.engine_id)
    assert engine.validation_passed is True
    log = sdk.log(build.id)
    assert "lists 7 initializer(s) among its graph inputs" in log and "building from a copy without them" in log
    path = sdk.fetch(model.id, runtime=ort_runtime, dest=tmp_path / "zoo.ort")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]  # not 5 required inputs
    (logits,) = session.run(None, {"input": np.ones((2, 3, 16, 16), np.float32)})
    assert logits.shape == (2, 10)


def test_a_batch_dimension_written_as_minus_one_is_dynamic_everywhere(farm: RunningFarm, ort_runtime: str,
                                                                       tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(fully_convolutional(tmp_path / "fcn.onnx", batch=-1, spatial="?", seed=4))
    assert model.inputs[0].shape == [None, 3, None, None]  # -1 and an unnamed dim: both "any"
    profile = {"profiles": [{"input": {"min": [1, 3, 8, 8], "opt": [8, 3, 48, 48], "max": [16, 3, 64, 64]}}]}
    build = sdk.submit(model.id, ort_runtime, profile, wait=True)
    assert build.status == "succeeded", build.error
    engine = sdk.engine(build.engine_id)
    assert engine.validation_passed is True
    assert [case["shapes"]["input"] for case in engine.validation["cases"]] == [[8, 3, 48, 48], [1, 3, 8, 8],
                                                                                 [16, 3, 64, 64]]


def test_an_engine_ten_times_the_model_carries_a_warning(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(expanding_model(tmp_path / "grow.onnx", width=300_000))  # 176 bytes; 1.2 MB folded
    profile = {"profiles": [{"x": {"min": [1, 1], "opt": [2, 1], "max": [4, 1]}}]}
    build = sdk.submit(model.id, ort_runtime, profile, wait=True)
    engine = sdk.engine(build.engine_id)
    (warning,) = build.warnings
    assert warning.code == "engine_size" and f"x the model ({engine.size / 2**20:.1f} MiB from" in warning.message
    assert "--ort-level disable" in warning.message and engine.size > 10 * model.size
    assert f"warning engine_size: {warning.message}" in sdk.log(build.id)
    small = sdk.submit(model.id, ort_runtime, {**profile, "onnxruntime": {"graph_optimization_level": "disable",
                                                                          "optimized_model_format": "ort"}}, wait=True)
    assert small.warnings == []


def test_onnxruntime_engines_of_hardware_independent_levels_load_on_any_isa(farm: RunningFarm, ort_runtime: str,
                                                                             tmp_path: Path) -> None:
    import pytest

    from registry.errors import NoCompatibleEngine

    sdk = farm.client()
    model = sdk.upload(ir3_convnet(tmp_path / "isa.onnx", seed=9))
    version, cpu = ort_runtime.split("==")[1].split("@")
    other = f"onnxruntime=={version}@{'x86_64-avx2' if cpu != 'x86_64-avx2' else 'x86_64-avx512'}"
    portable = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    engine = sdk.engine(portable.engine_id)
    assert engine.hardware_compatibility == "any_isa" and engine.metadata["hardware_specific"] is False
    answer = sdk.resolve(model.id, runtime=other)
    assert answer.engine.id == engine.id and answer.match_class == "any_isa"
    assert sdk.resolve(model.id, runtime=ort_runtime).match_class == "exact"
    with pytest.raises(NoCompatibleEngine, match="aarch64"):
        sdk.resolve(model.id, runtime=f"onnxruntime=={version}@aarch64-neon")

    pinned = sdk.upload(ir3_convnet(tmp_path / "isa-all.onnx", seed=10))
    level_all = {**batch_profile(), "onnxruntime": {"graph_optimization_level": "all", "optimized_model_format": "ort"}}
    built = sdk.submit(pinned.id, ort_runtime, level_all, wait=True)
    assert sdk.engine(built.engine_id).hardware_compatibility == "none"
    with pytest.raises(NoCompatibleEngine, match="hardware-specific level"):
        sdk.resolve(pinned.id, runtime=other)


def test_fetch_by_shape_picks_the_engine_whose_profile_holds_it(farm: RunningFarm, ort_runtime: str,
                                                               tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    import pytest

    from registry.errors import InvalidInput

    sdk = farm.client()
    model = sdk.upload(fully_convolutional(tmp_path / "s.onnx", batch="N", spatial=16, seed=11))
    wide = sdk.submit(model.id, ort_runtime, batch_profile(hi=16), wait=True)
    basic = {"onnxruntime": {"graph_optimization_level": "basic", "optimized_model_format": "ort"}}
    narrow = sdk.submit(model.id, ort_runtime, {**batch_profile(hi=4), **basic}, wait=True)  # newer, batches 1-4
    engines = {e.id: e for e in sdk.engines(model.id)}
    assert engines[wide.engine_id].digest != engines[narrow.engine_id].digest  # told apart by their bytes
    path = sdk.fetch(model.id, runtime=ort_runtime, shapes={"input": [12, 3, 16, 16]})
    assert path.name.startswith(engines[wide.engine_id].digest.removeprefix("sha256:"))
    path = sdk.fetch(model.id, runtime=ort_runtime, shapes={"input": [2, 3, 16, 16]})  # both hold it: the wider
    assert path.name.startswith(engines[wide.engine_id].digest.removeprefix("sha256:"))
    path = sdk.fetch(model.id, runtime=ort_runtime, refresh=True)  # no shapes: the widest, not the newest
    assert path.name.startswith(engines[wide.engine_id].digest.removeprefix("sha256:"))
    with pytest.raises(InvalidInput, match="outside every profile"):
        sdk.fetch(model.id, runtime=ort_runtime, shapes={"input": [32, 3, 16, 16]})

    env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(tmp_path), "TRTFARM_CACHE": str(tmp_path / "cli")}
    for _ in range(2):  # the second answer comes from the CLI's own record, for the same question
        done = subprocess.run([sys.executable, "-m", "registry.cli", "fetch", model.id, "--runtime", ort_runtime,
                               "--shape", "input:12x3x16x16", "--json"], capture_output=True, text=True, env=env,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["path"].endswith(engines[wide.engine_id].digest.removeprefix("sha256:") + ".ort")


def test_a_local_answer_is_checked_with_the_farm_once_it_is_old(farm: RunningFarm, ort_runtime: str,
                                                               tmp_path: Path) -> None:
    import os
    import time

    sdk = farm.client(cache_dir=tmp_path / "cache")
    model = sdk.upload(fully_convolutional(tmp_path / "r.onnx", batch="N", spatial=16, seed=12))
    first = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    path = sdk.fetch(model.id, runtime=ort_runtime)
    basic = {"onnxruntime": {"graph_optimization_level": "basic", "optimized_model_format": "ort"}}
    newer = sdk.submit(model.id, ort_runtime, {**batch_profile(), **basic}, wait=True)  # the farm's answer now
    digests = {e.id: e.digest.removeprefix("sha256:") for e in sdk.engines(model.id)}
    assert digests[first.engine_id] != digests[newer.engine_id] and path.name.startswith(digests[first.engine_id])
    assert sdk.fetch(model.id, runtime=ort_runtime) == path  # a fresh local answer: no question asked
    for index in (tmp_path / "cache" / "index").glob("*.json"):  # the answer is now older than the limit
        os.utime(index, (time.time() - 3600, time.time() - 3600))
    again = sdk.fetch(model.id, runtime=ort_runtime)
    assert again.name.startswith(digests[newer.engine_id])
    farm.stop_api()  # offline: an old local answer still serves
    for index in (tmp_path / "cache" / "index").glob("*.json"):
        os.utime(index, (time.time() - 3600, time.time() - 3600))
    assert sdk.fetch(model.id, runtime=ort_runtime) == again
