"""The ONNX Runtime runner, driven as the worker drives it: a subprocess speaking protocol version 1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from registry.keys import spec_canonical
from registry.spec import ShapeRange, parse_spec
from registry.targets import cpu_device
from tests.models import convnet, external_data_model
from workers.toolchains import RUNNERS_DIR, runner_argv
from workers.validation import compare, input_specs, random_inputs, reference_outputs

RUNNER_PACKAGE = RUNNERS_DIR / "onnxruntime_runner"
LEVELS = ("disable", "basic", "extended", "layout", "all")
ort = pytest.importorskip("onnxruntime")


def runner(*args: str | Path) -> subprocess.CompletedProcess:
    command = [*runner_argv("onnxruntime", sys.executable), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def call(tmp: Path, command: str, *args: str | Path) -> tuple[int, dict, str]:
    result = tmp / f"{command}-result.json"
    result.unlink(missing_ok=True)
    proc = runner(command, *args, "--result", result)
    return proc.returncode, json.loads(result.read_text()), proc.stderr


def build(tmp: Path, model: Path, spec: dict | None = None, out: str = "engine") -> tuple[int, dict, Path, str]:
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec_canonical(parse_spec(spec or {}))))
    engine = tmp / out
    rc, result, stderr = call(tmp, "build", "--model", model, "--spec", spec_path, "--out", engine)
    return rc, result, engine, stderr


def ort_spec(level: str, fmt: str = "ort") -> dict:
    return {"onnxruntime": {"graph_optimization_level": level, "optimized_model_format": fmt}}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return convnet(tmp_path_factory.mktemp("model") / "convnet.onnx", channels=8, layers=3)


def feeds_for(model: Path, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    return random_inputs(input_specs(model), {"input": (batch, 3, 16, 16)}, seed=seed)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def run_engine(tmp: Path, engine: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inputs, outputs = save_npz(tmp / "in.npz", feeds), tmp / "out.npz"
    rc, result, stderr = call(tmp, "run", "--engine", engine, "--inputs", inputs, "--outputs", outputs)
    assert rc == 0 and result["ok"], (result, stderr)
    with np.load(outputs) as npz:
        return {k: npz[k] for k in npz.files}


# -------------------------------------------------------------------------------------------- probe


def test_probe():
    proc = runner("--probe")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["kind"] == "onnxruntime"
    assert info["version"] == ort.__version__
    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    for level in LEVELS:
        member = {"disable": "ORT_DISABLE_ALL", "layout": "ORT_ENABLE_LAYOUT"}.get(level, f"ORT_ENABLE_{level.upper()}")
        expected = hasattr(ort.GraphOptimizationLevel, member)
        assert (f"onnxruntime.graph_optimization_level={level}" in info["features"]) == expected
    assert {"onnxruntime.optimized_model_format=ort", "onnxruntime.optimized_model_format=onnx", "profiles"} <= set(
        info["features"])
    (device,) = info["devices"]
    assert device["device"] == cpu_device() == f"{device['arch']}-{device['isa']}"
    assert device["cores"] >= 1 and device["name"]


# -------------------------------------------------------------------------------------------- build


@pytest.mark.parametrize("level", LEVELS)
def test_build_each_level_ort_format(tmp_path, model, level):
    if level == "layout" and not hasattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT"):
        pytest.skip("this ONNX Runtime has no layout level")
    rc, result, engine, stderr = build(tmp_path, model, ort_spec(level))
    assert rc == 0 and result["ok"], (result, stderr)
    assert engine.read_bytes()[4:8] == b"ORTM"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left
    meta = result["metadata"]
    assert meta["toolchain"] == "onnxruntime" and meta["version"] == ort.__version__
    assert meta["optimization_level"] == level and meta["format"] == "ort" and meta["nodes"] is None
    assert meta["size"] == engine.stat().st_size
    assert meta["device"]["device"] == cpu_device()
    assert meta["build_seconds"] >= 0
    assert meta["io"] == [
        {"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 16, 16]},
        {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 10]},
    ]
    assert meta["dim_params"] == {"input": ["N", None, None, None]}
    if level in ("layout", "all"):
        assert any("hardware specific" in w for w in meta["warnings"]), meta["warnings"]
        assert "hardware specific" in stderr  # ORT's log still reaches the build log
    feeds = feeds_for(model)
    np.testing.assert_allclose(run_engine(tmp_path, engine, feeds)["logits"], reference_outputs(model, feeds)["logits"],
                               rtol=1e-5, atol=1e-5)


def test_build_onnx_format_counts_nodes(tmp_path, model):
    rc, result, engine, _ = build(tmp_path, model, ort_spec("disable", "onnx"))
    assert rc == 0 and result["metadata"]["format"] == "onnx"
    assert engine.read_bytes()[4:8] != b"ORTM"
    assert result["metadata"]["nodes"] == 3 * 2 + 2  # (Conv, Relu) x 3, Flatten, Gemm
    rc, fused, engine2, _ = build(tmp_path, model, ort_spec("extended", "onnx"), out="fused")
    assert rc == 0 and fused["metadata"]["nodes"] < 8  # Conv+Relu fused
    feeds = feeds_for(model, batch=3)
    np.testing.assert_allclose(run_engine(tmp_path, engine2, feeds)["logits"],
                               reference_outputs(model, feeds)["logits"], rtol=1e-5, atol=1e-5)


def test_default_spec_builds_ort_at_extended(tmp_path, model):
    rc, result, engine, _ = build(tmp_path, model)
    assert rc == 0
    assert (result["metadata"]["optimization_level"], result["metadata"]["format"]) == ("extended", "ort")


def test_run_matches_reference_and_validation_passes(tmp_path, model):
    rc, _, engine, _ = build(tmp_path, model, ort_spec("all"))
    assert rc == 0
    for batch, seed in ((1, 0), (4, 1)):
        feeds = feeds_for(model, batch, seed)
        actual, reference = run_engine(tmp_path, engine, feeds), reference_outputs(model, feeds)
        assert actual["logits"].shape == (batch, 10)
        np.testing.assert_allclose(actual["logits"], reference["logits"], rtol=1e-5, atol=1e-5)
        assert compare(reference, actual).passed


def test_profiles_are_checked_against_the_model(tmp_path, model):
    good = {"profiles": [{"input": ShapeRange.parse("1x3x16x16,2x3x16x16,8x3x16x16")}]}
    assert build(tmp_path, model, good)[0] == 0
    bad = {"profiles": [{"nope": ShapeRange.parse("1x3x16x16")}]}
    rc, result, _, _ = build(tmp_path, model, bad)
    assert rc == 2 and result["error"]["code"] == "invalid_input" and "nope" in result["error"]["message"]


def test_bench(tmp_path, model):
    rc, _, engine, _ = build(tmp_path, model)
    inputs = save_npz(tmp_path / "in.npz", feeds_for(model))
    rc, result, stderr = call(tmp_path, "bench", "--engine", engine, "--inputs", inputs, "--iterations", "20",
                              "--warmup", "2")
    assert rc == 0 and result["ok"], (result, stderr)
    lat = result["latency_ms"]
    assert lat["iterations"] == 20
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"]
    assert lat["min"] <= lat["mean"]


# -------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("option, value, shown", [
    ("precision", ["fp16"], "precision=fp16"),
    ("strongly_typed", True, "strongly_typed=true"),
    ("workspace_mib", 1024, "workspace_mib=1024"),
    ("hardware_compatibility", "ampere_plus", "hardware_compatibility=ampere_plus"),
    ("dla_core", 0, "dla_core=0"),
])
def test_tensorrt_only_options_are_unsupported(tmp_path, model, option, value, shown):
    rc, result, engine, _ = build(tmp_path, model, {option: value})
    assert rc == 2 and not result["ok"]
    assert result["error"]["code"] == "unsupported_option"
    assert result["error"]["message"].startswith(f"{shown} is a TensorRT option")
    assert not engine.exists()


def test_precision_message(tmp_path, model):
    _, result, _, _ = build(tmp_path, model, {"precision": ["fp16"]})
    assert result["error"]["message"] == ("precision=fp16 is a TensorRT option; "
                                          "onnxruntime builds keep the model's precision")


def test_not_an_onnx_file_is_a_parse_error(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    rc, result, engine, _ = build(tmp_path, bogus)
    assert rc == 1 and result["ok"] is False
    assert result["error"]["code"] == "parse_error"
    assert "ONNXRuntimeError" in result["error"]["message"]
    assert not engine.exists()


def test_missing_model_is_invalid_input(tmp_path):
    rc, result, _, _ = build(tmp_path, tmp_path / "absent.onnx")
    assert rc == 2 and result["error"]["code"] == "invalid_input"


def test_merge_is_tensorrt_only(tmp_path):
    rc, result, _ = call(tmp_path, "merge", "--cache", "a", "--cache", "b", "--out", tmp_path / "c")
    assert rc == 2 and result["error"] == {"code": "invalid_input", "message": "merge is a TensorRT command",
                                           "hint": "onnxruntime builds have no timing cache"}


def test_run_with_wrong_inputs_is_invalid_input(tmp_path, model):
    _, _, engine, _ = build(tmp_path, model)
    inputs = save_npz(tmp_path / "in.npz", {"wrong": np.zeros((1, 3, 16, 16), np.float32)})
    rc, result, _ = call(tmp_path, "run", "--engine", engine, "--inputs", inputs, "--outputs", tmp_path / "o.npz")
    assert rc == 2 and result["error"]["code"] == "invalid_input" and "input" in result["error"]["message"]
    inputs = save_npz(tmp_path / "in.npz", {"input": np.zeros((1, 4, 16, 16), np.float32)})
    rc, result, _ = call(tmp_path, "run", "--engine", engine, "--inputs", inputs, "--outputs", tmp_path / "o.npz")
    assert rc == 2 and result["error"]["code"] == "invalid_input"


def test_bad_arguments_still_write_a_result(tmp_path):
    rc, result, _ = call(tmp_path, "build", "--model", "m.onnx")
    assert rc == 2 and result["error"]["code"] == "invalid_input" and "--spec" in result["error"]["message"]


# -------------------------------------------------------------------------------------------- external data


@pytest.mark.parametrize("fmt", ["ort", "onnx"])
def test_external_data_model_builds_and_runs(tmp_path, fmt):
    model = external_data_model(tmp_path / "upload")
    assert (tmp_path / "upload" / "weights.bin").stat().st_size > 0
    rc, result, engine, stderr = build(tmp_path, model, ort_spec("extended", fmt))
    assert rc == 0 and result["ok"], (result, stderr)
    feeds = feeds_for(model, batch=2)
    # the engine stands alone: it runs with the model's folder gone
    for p in (tmp_path / "upload").iterdir():
        p.rename(tmp_path / f"moved-{p.name}")
    actual = run_engine(tmp_path, engine, feeds)
    assert actual["logits"].shape == (2, 10)
    assert b"weights.bin" not in engine.read_bytes()
    for p in tmp_path.glob("moved-*"):
        p.rename(tmp_path / "upload" / p.name.removeprefix("moved-"))
    reference = reference_outputs(model, feeds)
    np.testing.assert_allclose(actual["logits"], reference["logits"], rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------- in-process pieces


@pytest.fixture
def old_ort(monkeypatch):
    """An onnxruntime without ORT_ENABLE_LAYOUT (as before 1.23), seen by the runner's lazy imports."""
    from types import SimpleNamespace

    levels = SimpleNamespace(ORT_DISABLE_ALL=0, ORT_ENABLE_BASIC=1, ORT_ENABLE_EXTENDED=2, ORT_ENABLE_ALL=99)
    fake = SimpleNamespace(__version__="1.22.0", GraphOptimizationLevel=levels)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake)


def test_missing_level_is_unsupported_with_versions(old_ort):
    from workers.toolchains.common import RunnerError
    from workers.toolchains.onnxruntime_runner import options

    assert "onnxruntime.graph_optimization_level=layout" not in options.features()
    assert "onnxruntime.graph_optimization_level=all" in options.features()
    with pytest.raises(RunnerError) as err:
        options.check_spec(spec_canonical(parse_spec(ort_spec("layout"))))
    assert err.value.code == "unsupported_option"
    assert err.value.message == ("onnxruntime.graph_optimization_level=layout needs ONNX Runtime >= 1.23; "
                                 "this toolchain has 1.22.0")
    assert options.check_spec(spec_canonical(parse_spec(ort_spec("all", "onnx")))) == ("all", "onnx")


@pytest.mark.parametrize("option, value", [
    ("precision", ["fp16"]), ("precision", ["int8", "fp16"]), ("strongly_typed", True), ("workspace_mib", 1),
    ("tactic_sources", []), ("tactic_sources", ["cudnn"]), ("hardware_compatibility", "ampere_plus"),
    ("version_compatible", True), ("refit", "refit"), ("weight_streaming", True), ("dla_core", 0),
])
def test_any_tensorrt_setting_is_refused_and_the_hint_names_the_registry_default(option, value):
    """The runner keeps no spec defaults; what asks TensorRT for nothing must be exactly BuildSpec's default."""
    from registry.spec import TENSORRT_ONLY, BuildSpec
    from workers.toolchains.common import RunnerError
    from workers.toolchains.onnxruntime_runner import options

    assert options.TENSORRT_ONLY == TENSORRT_ONLY
    default = spec_canonical(BuildSpec())
    assert not any(options.asks_tensorrt(name, default[name]) for name in TENSORRT_ONLY)
    spec = {**default, option: value}
    with pytest.raises(RunnerError) as err:
        options.check_spec(spec)
    shown = "[]" if default[option] == [] else "null" if default[option] is None else str(default[option]).lower()
    assert err.value.code == "unsupported_option"
    assert err.value.hint == f"leave {option} at its default ({shown}) for an onnxruntime target"


def test_a_spec_missing_a_field_is_invalid_input(tmp_path, model):
    spec = spec_canonical(parse_spec({}))
    del spec["onnxruntime"]["optimized_model_format"]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    rc, result, _ = call(tmp_path, "build", "--model", model, "--spec", tmp_path / "spec.json", "--out", tmp_path / "e")
    assert rc == 2 and result["error"] == {
        "code": "invalid_input", "hint": None,
        "message": "spec.json is not a canonical spec: missing field onnxruntime.optimized_model_format"}


def test_runner_argv_starts_the_package_in_the_interpreter():
    argv = runner_argv("onnxruntime", "/opt/ort/bin/python")
    assert argv[0] == "/opt/ort/bin/python" and argv[-1] == "onnxruntime"
    assert Path(argv[1]) == RUNNERS_DIR / "run.py"


def test_runner_imports_only_stdlib_numpy_onnxruntime_and_its_siblings():
    import ast

    for path in [RUNNERS_DIR / "common.py", *sorted(RUNNER_PACKAGE.glob("*.py"))]:
        tree = ast.parse(path.read_text())
        modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module.split(".")[0] for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        third_party = {m for m in modules if m not in sys.stdlib_module_names}
        assert third_party <= {"numpy", "onnxruntime"}, (path.name, third_party)
        top_level = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        assert not top_level & {"numpy", "onnxruntime"}, path.name  # imported lazily, inside functions
