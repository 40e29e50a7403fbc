"""Models as published models come, through a real farm: IR 3 models that list their weights among the
graph inputs, batch dimensions written as -1, dynamic inputs given no range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import fully_convolutional, ir3_convnet


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
