"""`trtfarm inspect` (registry/cliinspect.py): an engine's target, precision, profiles, I/O and layer table, as
`polygraphy inspect model` shows them -- from TensorRT's engine inspector (detailed, layer_names_only), from the
layer-precision report, or a note saying why there is none -- and an ONNX model (local file, model id)."""

from __future__ import annotations

import json
import types
from datetime import datetime, timezone

import pytest
from typer.testing import CliRunner

from registry import cli, cliinspect
from registry.schemas import EngineInfo

IO = [{"name": "input", "mode": "input", "dtype": "float16", "shape": [-1, 3, 16, 16], "format": "hwc8",
       "profiles": [{"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]},
                    {"min": [5, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [16, 3, 16, 16]}]},
      {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10], "format": "linear"}]
DETAILED = {"Layers": [
    {"Name": "Reformatting CopyNode for Input Tensor 0 to conv0 + relu0", "LayerType": "Reformat",
     "Inputs": [{"Name": "input", "Location": "Device", "Dimensions": [1, 3, 16, 16],
                 "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
     "Outputs": [{"Name": "Reformatted Input Tensor 0 to conv0 + relu0", "Dimensions": [1, 3, 16, 16],
                  "Format/Datatype": "Row major linear FP32"}], "TacticName": "", "TacticValue": "0x0"},
    {"Name": "conv0 + relu0", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "Reformatted Input Tensor 0 to conv0 + relu0", "Dimensions": [1, 3, 16, 16],
                 "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "relu0_out", "Dimensions": [1, 4, 16, 16], "Format/Datatype": "Row major linear FP32"}],
     "TacticName": "sm80_xmma_fprop_implicit_gemm_f32f32", "TacticValue": "0x1"}],
    "Bindings": ["input", "logits"]}


def engine(metadata: dict, toolchain: str = "tensorrt", spec: dict | None = None) -> EngineInfo:
    return EngineInfo(id="e" * 32, build_id="b" * 32, build_key="k", model="sha256:" + "0" * 64,
                      toolchain=toolchain, version="8.6.1" if toolchain == "tensorrt" else "1.23.2",
                      device="h100-80gb-hbm3" if toolchain == "tensorrt" else "x86_64-avx2",
                      hardware_compatibility="none", version_compatible=False, refittable=False,
                      spec=spec if spec is not None else {"precision": ["fp16"], "profiling_verbosity": "detailed"},
                      digest="sha256:" + "1" * 64, size=12345, filename="f.plan", metadata=metadata,
                      created_at=datetime.now(timezone.utc))


def invoke(monkeypatch, info, *args: str):  # noqa: ANN001, ANN201
    farm = types.SimpleNamespace(engine=lambda engine_id: info, model=lambda model_id: info)
    monkeypatch.setattr(cli, "_farm", lambda: farm)
    monkeypatch.setattr(cli.out, "width", 250)  # the console was made at import, with whatever width was there
    done = CliRunner().invoke(cli.app, ["inspect", *args], env={"COLUMNS": "250"})
    assert done.exit_code == 0, done.output
    return done.output


def test_the_engine_inspectors_layer_table(monkeypatch) -> None:  # noqa: ANN001
    info = engine({"io": IO, "inspector": DETAILED, "layers": 2, "device_memory_bytes": 4096})
    view = cliinspect.engine_view(info)
    assert view["target"] == "tensorrt==8.6.1@h100-80gb-hbm3" and view["precision"] == "fp16+tf32"
    assert view["profiles_from"] == "engine" and len(view["profiles"]) == 2
    assert view["profiles"][1] == {"input": {"min": [5, 3, 16, 16], "opt": [8, 3, 16, 16], "max": [16, 3, 16, 16]}}
    assert view["layers_from"] == "inspector" and view["layers"][1] == {
        "name": "conv0 + relu0", "type": "CaskConvolution",
        "inputs": ["Reformatted Input Tensor 0 to conv0 + relu0 (1x3x16x16, Row major linear FP32)"],
        "outputs": ["relu0_out (1x4x16x16, Row major linear FP32)"], "tactic": "sm80_xmma_fprop_implicit_gemm_f32f32"}
    text = invoke(monkeypatch, info, "e" * 12)
    for part in ("==== TensorRT Engine ====", "Target: tensorrt==8.6.1@h100-80gb-hbm3", "Precision: fp16+tf32",
                 "---- 1 Engine Input(s), 1 Engine Output(s) ----", "?x3x16x16", "hwc8", "Device Memory: 4096 bytes",
                 "---- 2 Profile(s) (from the engine) ----",
                 "Tensor: input (Input) | Shapes: min=(5, 3, 16, 16), opt=(8, 3, 16, 16), max=(16, 3, 16, 16)",
                 "---- 2 Layer(s) ----", "CaskConvolution", "sm80_xmma_fprop_implicit_gemm_f32f32", "relu0_out"):
        assert part in text, part
    shown = json.loads(invoke(monkeypatch, info, "e" * 12, "--json"))
    assert shown == json.loads(json.dumps(view))


def test_layer_names_only(monkeypatch) -> None:  # noqa: ANN001
    info = engine({"io": IO, "inspector": {"Layers": ["conv0 + relu0", "gemm"], "Bindings": ["input", "logits"]}})
    assert cliinspect.engine_view(info)["layers"] == [{"name": "conv0 + relu0"}, {"name": "gemm"}]
    text = invoke(monkeypatch, info, "e" * 12)
    assert "Layer 0    | conv0 + relu0" in text and "Layer 1    | gemm" in text


def test_the_layer_precision_reports_table_when_there_is_no_inspector(monkeypatch) -> None:  # noqa: ANN001
    report = {"rules": [], "engine_layers": [{"name": "conv0", "type": "CaskConvolution", "outputs": [
        "Row major linear FP32"], "output_types": ["fp32"], "constrained_by": ["conv0"]}], "note": None}
    info = engine({"io": IO, "layer_precisions": report})
    view = cliinspect.engine_view(info)
    assert view["layers_from"] == "layer_precisions"
    assert view["layers"] == [{"name": "conv0", "type": "CaskConvolution", "outputs": ["Row major linear FP32"],
                               "constrained_by": ["conv0"]}]
    assert "rule" in invoke(monkeypatch, info, "e" * 12)


@pytest.mark.parametrize(("metadata", "spec", "note"), [
    ({"layers": 7}, {"profiling_verbosity": "layer_names_only"},
     "built with profiling_verbosity=layer_names_only: the farm records TensorRT's layer table for detailed only"),
    ({"inspector": {"error": "RuntimeError: boom"}}, {"profiling_verbosity": "detailed"},
     "TensorRT's engine inspector failed: RuntimeError: boom"),
    ({}, {"profiling_verbosity": "detailed"}, "the build recorded no layer table"),
])
def test_no_layer_table_says_why(monkeypatch, metadata: dict, spec: dict, note: str) -> None:  # noqa: ANN001
    info = engine({"io": IO, **metadata}, spec=spec)
    view = cliinspect.engine_view(info)
    assert view["layers"] is None and view["layers_note"].startswith(note)
    text = invoke(monkeypatch, info, "e" * 12)
    assert note in text
    assert ("---- 7 Layer(s) ----" if metadata.get("layers") else "---- Layers ----") in text


def test_an_onnxruntime_engine_has_no_layer_table(monkeypatch) -> None:  # noqa: ANN001
    io = [{"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16]},
          {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10]}]
    spec = {"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}],
            "onnxruntime": {"graph_optimization_level": "extended"}}
    info = engine({"io": io}, toolchain="onnxruntime", spec=spec)
    view = cliinspect.engine_view(info)
    assert view["profiles_from"] == "spec" and view["profiles"] == spec["profiles"]
    assert view["layers"] is None and view["layers_note"] == cliinspect.NO_LAYERS_ORT
    text = invoke(monkeypatch, info, "e" * 12)
    assert "==== ONNX Runtime Engine ====" in text and "Precision: fp32 | extended" in text
    assert "have no layer table" in text and "---- 1 Profile(s) (from the spec) ----" in text


def test_engines_show_prints_the_same_io_table(monkeypatch) -> None:  # noqa: ANN001
    info = engine({"io": IO})
    monkeypatch.setattr(cli, "_farm", lambda: types.SimpleNamespace(engine=lambda engine_id: info))
    done = CliRunner().invoke(cli.app, ["engines", "show", "e" * 12], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "?x3x16x16" in done.output and "hwc8" in done.output


def test_a_local_onnx_file(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("onnx")
    from tests.models import convnet

    path = convnet(tmp_path / "net.onnx", channels=4, layers=2)
    done = CliRunner().invoke(cli.app, ["inspect", str(path)], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    for part in ("==== ONNX Model ====", "ONNX Opset: ai.onnx", "---- 1 Graph Input(s) ----", "N x 3 x 16 x 16",
                 "---- 1 Graph Output(s) ----", "Conv", "Relu", "Gemm"):
        assert part in done.output, part
    view = json.loads(CliRunner().invoke(cli.app, ["inspect", str(path), "--json"]).output)
    assert view["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["N", 3, 16, 16]}]
    assert view["op_types"]["Conv"] == 2 and view["op_types"]["Relu"] == 2
    assert view["nodes"] == sum(view["op_types"].values())
    missing = CliRunner().invoke(cli.app, ["inspect", str(tmp_path / "nope.onnx")])
    assert missing.exit_code != 0 and "no such file" in str(missing.exception)


def test_a_model_the_farm_holds(monkeypatch) -> None:  # noqa: ANN001
    from registry.schemas import ModelInfo

    info = ModelInfo(id="sha256:" + "0" * 64, name="net.onnx", size=10, ir_version=8, producer="pytorch 2.1",
                     opsets={"ai.onnx": 17}, inputs=[{"name": "input", "dtype": "float32", "shape": ["N", 3, None]}],
                     outputs=[{"name": "logits", "dtype": "float32", "shape": ["N", 10]}],
                     op_types={"Conv": 2, "Relu": 2}, created_at=datetime.now(timezone.utc))
    text = invoke(monkeypatch, info, info.id)
    for part in ("==== ONNX Model ====", "ONNX Opset: ai.onnx 17", "Producer: pytorch 2.1", "N x 3 x ?",
                 "---- 4 Node(s)"):
        assert part in text, part
