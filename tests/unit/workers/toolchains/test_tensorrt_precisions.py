"""Per-layer precision rules, precision constraints and I/O formats in the TensorRT runner, against the recording
fake `tensorrt` of test_tensorrt_options (8.6-like and 10.x-like, with different enum values); the run/bench
session's dtype and layout handling against a fake CUDA driver; and the registry's feature names against the
runner's."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

from registry.services import fleet
from registry.spec import parse_spec
from tests.unit.workers.toolchains.test_tensorrt_options import (
    STATIC_X,
    canonical,
    configured,
    error_of,
    make_fake_trt,
    run_build,
    write_model,
)
from workers.toolchains import layouts
from workers.toolchains.tensorrt_runner import options, runtime, session

LAYERS = [
    {"name": "conv0"}, {"name": "relu0"},
    {"name": "conv1", "engine_name": "conv1 + relu1"}, {"name": "relu1", "engine_name": "conv1 + relu1"},
    {"name": "shape0", "precision": "INT32", "output_dtype": "INT32"},
    {"name": "gather0", "shape_input": True},
    {"name": "split0", "outputs": 2},
    {"name": "fc"},
]


def model_with_layers(tmp_path, layers=LAYERS, outputs=({"name": "y", "shape": [1, 10]},)):
    return write_model(tmp_path, [STATIC_X], outputs, layers=list(layers))


def built_layers(trt) -> dict:
    network, _ = trt.last_build
    return {layer.name: layer for layer in network.layers}


def names(dtypes) -> list:
    return [getattr(d, "name", d) for d in dtypes]


# ---------------------------------------------------------------------------------------------------------
# precision_constraints
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["8.6", "10"])
@pytest.mark.parametrize("value,flag", [("obey", "OBEY_PRECISION_CONSTRAINTS"),
                                        ("prefer", "PREFER_PRECISION_CONSTRAINTS")])
def test_precision_constraints_set_their_builder_flag(flavor, value, flag):
    assert configured(make_fake_trt(flavor), precision_constraints=value) == [("set_flag", flag)]


def test_precision_constraints_need_82():
    trt = make_fake_trt("8.6", version="8.0.3")
    error = error_of(options.check_options, trt, canonical(precision_constraints="obey"))
    assert error.code == "unsupported_option"
    assert error.message == "precision_constraints=obey needs TensorRT >= 8.2; this toolchain has 8.0.3"


# ---------------------------------------------------------------------------------------------------------
# layer_precisions
# ---------------------------------------------------------------------------------------------------------
RULES = [
    {"pattern": "conv0", "precision": "fp32", "output_types": ["fp32"]},  # first match wins over conv*
    {"pattern": "conv*", "precision": "fp16"},
    {"pattern": "split0", "output_types": ["fp16", "fp32"]},  # one type per output
    {"pattern": "*", "output_types": ["fp16"]},  # wildcard: skips shape0 (INT32) and gather0 (shape input)
]


@pytest.mark.parametrize("flavor", ["8.6", "10"])
def test_layer_rules_set_precision_and_output_types_on_the_matching_layers(tmp_path, install, flavor):
    trt = install(make_fake_trt(flavor))
    code, result = run_build(tmp_path, model_with_layers(tmp_path),
                             canonical(precision=["fp16"], layer_precisions=RULES, precision_constraints="obey"))
    assert code == 0, result
    layers = built_layers(trt)
    assert layers["conv0"].precision is trt.DataType.FLOAT and layers["conv0"].precision_set
    assert names(layers["conv0"].output_types.values()) == ["FLOAT"]
    assert layers["conv1"].precision is trt.DataType.HALF and layers["conv1"].output_types == {}
    assert names(layers["split0"].output_types[i] for i in (0, 1)) == ["HALF", "FLOAT"]
    for name in ("relu0", "relu1", "fc"):
        assert names(layers[name].output_types.values()) == ["HALF"] and not layers[name].precision_set
    for name in ("shape0", "gather0"):  # not floating-point: a wildcard leaves them alone
        assert layers[name].output_types == {} and not layers[name].precision_set
    _, config = trt.last_build
    assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= config.flags
    rules = result["metadata"]["layer_precisions"]["rules"]
    assert [(r["pattern"], r["layers"], r["names"], r["skipped"]) for r in rules] == [
        ("conv0", 1, ["conv0"], 0), ("conv*", 1, ["conv1"], 0), ("split0", 1, ["split0"], 0),
        ("*", 3, ["relu0", "relu1", "fc"], 2)]


def test_an_exact_name_applies_even_to_a_non_float_layer(tmp_path, install):
    trt = install(make_fake_trt("10"))
    rules = [{"pattern": "shape0", "precision": "int32"}]
    code, result = run_build(tmp_path, model_with_layers(tmp_path),
                             canonical(layer_precisions=rules, precision_constraints="prefer"))
    assert code == 0, result
    assert built_layers(trt)["shape0"].precision_set


def test_a_rule_that_matches_no_layer_lists_the_layers(tmp_path, install):
    install(make_fake_trt("8.6"))
    rules = [{"pattern": "conv0", "precision": "fp32"}, {"pattern": "Conv_9", "precision": "fp32"}]
    code, result = run_build(tmp_path, model_with_layers(tmp_path),
                             canonical(layer_precisions=rules, precision_constraints="obey"))
    assert code == 2
    error = result["error"]
    assert error["code"] == "invalid_input"
    assert error["message"] == ("layer rule 'Conv_9' matches no layer. The network's layers: conv0, relu0, conv1, "
                                "relu1, shape0, gather0, split0, fc")
    assert "fnmatch" in error["hint"]


@pytest.mark.parametrize("rules,why", [
    ([{"pattern": "conv*", "precision": "fp32"}, {"pattern": "conv1", "precision": "fp16"}],
     "layer rule 'conv1' matches only layers an earlier rule already takes (1; the first match wins)"),
    ([{"pattern": "shape*", "precision": "fp16"}],
     "layer rule 'shape*' matches only layers that do not compute floating-point values (1 skipped)"),
])
def test_a_rule_that_applies_to_no_layer_is_an_error(tmp_path, install, rules, why):
    install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, model_with_layers(tmp_path),
                             canonical(layer_precisions=rules, precision_constraints="obey"))
    assert (code, result["error"]["code"]) == (2, "invalid_input")
    assert result["error"]["message"].startswith(why + ". The network's layers: ")


def test_an_output_type_count_that_fits_neither_form_names_the_layer(tmp_path, install):
    install(make_fake_trt("8.6"))
    rules = [{"pattern": "split0", "output_types": ["fp16", "fp16", "fp32"]}]
    code, result = run_build(tmp_path, model_with_layers(tmp_path),
                             canonical(layer_precisions=rules, precision_constraints="obey"))
    assert code == 2
    assert result["error"] == {"code": "invalid_input", "hint": None, "message": (
        "layer rule 'split0': layer 'split0' has 2 output(s) but the rule gives 3 output types (fp16+fp16+fp32); "
        "give one type for every output or one per output")}


def test_the_inspector_layer_table_shows_what_the_constrained_layers_got(tmp_path, install):
    install(make_fake_trt("10"))
    rules = [{"pattern": "conv0", "precision": "fp32"}, {"pattern": "conv1", "precision": "fp32"}]
    spec = canonical(precision=["fp16"], layer_precisions=rules, precision_constraints="obey",
                     profiling_verbosity="detailed")
    reformat = {"name": "reformat0", "engine_name": "Reformatting CopyNode for Input Tensor 0 to conv0"}
    code, result = run_build(tmp_path, model_with_layers(tmp_path, [*LAYERS, reformat]), spec)
    assert code == 0, result
    report = result["metadata"]["layer_precisions"]
    assert report["note"] is None
    rows = {row["name"]: row for row in report["engine_layers"]}
    assert rows["conv0"] == {"name": "conv0", "type": "CaskConvolution", "outputs": ["Row major linear FP32 format"],
                             "output_types": ["fp32"], "constrained_by": ["conv0"]}
    assert rows["conv1 + relu1"]["constrained_by"] == ["conv1"]  # a fused layer holds the constrained one
    assert rows["relu0"]["output_types"] == ["fp16"] and rows["relu0"]["constrained_by"] == []
    assert rows[reformat["engine_name"]]["constrained_by"] == []  # it converts for conv0; it is not conv0


def test_without_detailed_verbosity_the_metadata_says_why_there_is_no_layer_table(tmp_path, install):
    install(make_fake_trt("8.6"))
    spec = canonical(layer_precisions=[{"pattern": "conv0", "precision": "fp32"}], precision_constraints="obey")
    code, result = run_build(tmp_path, model_with_layers(tmp_path), spec)
    assert code == 0, result
    report = result["metadata"]["layer_precisions"]
    assert report["engine_layers"] is None
    assert report["note"].startswith("profiling_verbosity is layer_names_only: TensorRT's engine inspector reports "
                                     "no layer types; build with profiling_verbosity=detailed")
    assert [r["names"] for r in report["rules"]] == [["conv0"]]


@pytest.mark.parametrize("given,message", [
    ({"layer_precisions": [{"pattern": "conv0", "precision": "bf16"}]},
     "layer_precisions.dtype=bf16 needs TensorRT >= 9.0; this toolchain has 8.6.0"),
    ({"layer_precisions": [{"pattern": "conv0", "output_types": ["int64"]}]},
     "layer_precisions.dtype=int64 needs TensorRT >= 10.0; this toolchain has 8.6.0"),
    ({"layer_precisions": [{"pattern": "conv0", "precision": "fp8"}]},  # FP8 is in 8.6's enum, builds need 9
     "layer_precisions.dtype=fp8 needs TensorRT >= 9.0; this toolchain has 8.6.0"),
])
def test_a_layer_type_this_tensorrt_lacks_is_unsupported_before_the_build(tmp_path, install, given, message):
    trt = install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, model_with_layers(tmp_path), canonical(**given, precision_constraints="obey"))
    assert code == 2
    assert result["error"] == {"code": "unsupported_option", "hint": None, "message": message}
    assert trt.builders_created == 0


def test_layer_precisions_need_82(tmp_path):
    trt = make_fake_trt("8.6", version="8.0.3")
    spec = canonical(layer_precisions=[{"pattern": "conv0", "precision": "fp32"}], precision_constraints="obey")
    messages = error_of(options.check_options, trt, spec).message.split(" | ")
    assert "layer_precisions needs TensorRT >= 8.2; this toolchain has 8.0.3" in messages


# ---------------------------------------------------------------------------------------------------------
# io_formats
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flavor", ["8.6", "10"])
def test_io_formats_set_the_tensor_type_and_allowed_formats(tmp_path, install, flavor):
    trt = install(make_fake_trt(flavor))
    io = {"x": {"dtype": "fp16", "formats": ["hwc8", "chw2"]}, "y": {"dtype": "fp16"}}
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(io_formats=io))
    assert code == 0, result
    network, _ = trt.last_build
    x, y = network.inputs[0], network.outputs[0]
    assert x.dtype is trt.DataType.HALF and y.dtype is trt.DataType.HALF
    fmt = trt.TensorFormat
    assert x.allowed_formats == (1 << int(fmt.HWC8)) | (1 << int(fmt.CHW2))  # this release's numbering
    assert y.allowed_formats == 1 << int(fmt.LINEAR)
    chosen = "chw2" if flavor == "8.6" else "hwc8"  # the fake picks the lowest-numbered allowed format
    io_meta = {t["name"]: (t["dtype"], t["format"]) for t in result["metadata"]["io"]}
    assert io_meta == {"x": ("float16", chosen), "y": ("float16", "linear")}


def test_io_formats_naming_no_network_tensor_list_the_io(tmp_path, install):
    install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]),
                             canonical(io_formats={"images": {"dtype": "fp16"}}))
    assert code == 2
    assert result["error"]["code"] == "invalid_input"
    assert result["error"]["message"] == ("io_formats names 'images', which the network has no input or output of; "
                                          "its inputs: x; its outputs: y")


@pytest.mark.parametrize("flavor,version,given,message", [
    ("8.6", None, {"dtype": "bf16"}, "io_formats.dtype=bf16 needs TensorRT >= 9.0; this toolchain has 8.6.0"),
    ("8.6", "8.4.3", {"dtype": "uint8"}, "io_formats.dtype=uint8 needs TensorRT >= 8.5; this toolchain has 8.4.3"),
    ("8.6", "8.5.3", {"dtype": "fp32", "formats": ["dhwc"]},
     "io_formats.format=dhwc needs TensorRT >= 8.6; this toolchain has 8.5.3"),
])
def test_an_io_type_or_format_this_tensorrt_lacks_is_unsupported(tmp_path, install, flavor, version, given, message):
    trt = install(make_fake_trt(flavor, version=version))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(io_formats={"x": given}))
    assert code == 2
    assert result["error"] == {"code": "unsupported_option", "hint": None, "message": message}
    assert trt.builders_created == 0


def test_a_format_missing_from_the_enum_is_reported_by_name():
    trt = make_fake_trt("10")
    delattr(trt.TensorFormat, "HWC16")
    error = error_of(options.check_options, trt, canonical(io_formats={"x": {"dtype": "fp16", "formats": ["hwc16"]}}))
    assert error.code == "unsupported_option"
    assert error.message == ("io_formats.format=hwc16 is not available in this toolchain's TensorRT 10.9.0 "
                             "(TensorFormat.HWC16 is missing)")
    assert "io_formats.format=hwc16" not in options.supported_features(trt)


def test_a_build_failure_with_io_formats_gets_a_hint(tmp_path, install):
    install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [STATIC_X], build_errors=["no implementation obeys reformatting rules for x"])
    code, result = run_build(tmp_path, model, canonical(io_formats={"x": {"dtype": "fp32", "formats": ["hwc8"]}}))
    assert (code, result["error"]["code"]) == (1, "build_error")
    assert result["error"]["hint"].startswith("io_formats: each vectorized format is bound to some data types")


# ---------------------------------------------------------------------------------------------------------
# The registry asks for the features the runner names
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("given", [
    {"precision_constraints": "prefer"},
    {"layer_precisions": [{"pattern": "a", "precision": "fp32", "output_types": ["fp16"]},
                          {"pattern": "b*", "output_types": ["int8", "fp32"]}], "precision_constraints": "obey"},
    {"io_formats": {"x": {"dtype": "fp16", "formats": ["hwc8", "chw2"]}, "y": {"dtype": "uint8"}}},
])
def test_the_registry_asks_for_the_features_the_runner_advertises(given):
    wanted = options.requested_options(canonical(**given))
    assert fleet.spec_features(parse_spec(given)) == wanted
    assert set(wanted) <= set(options.OPTIONS)


# ---------------------------------------------------------------------------------------------------------
# run/bench: inputs in the engine's types and formats, outputs back in logical order
# ---------------------------------------------------------------------------------------------------------
class FakeCuda:
    """Device memory as bytes per allocation."""

    def __init__(self):
        self.memory, self.next = {}, 1

    def stream(self):
        return types.SimpleNamespace(value=7)

    def alloc(self, nbytes):
        self.next += 1
        self.memory[self.next] = bytearray(nbytes)
        return self.next

    def to_device(self, pointer, host):
        self.memory[pointer][:] = np.ascontiguousarray(host).tobytes()

    def to_host(self, host, pointer):
        host[...] = np.frombuffer(bytes(self.memory[pointer]), dtype=host.dtype).reshape(host.shape)

    def synchronize(self, stream):
        pass

    def free(self, pointer):
        del self.memory[pointer]


class FakeContext:
    """Doubles x into y, reading and writing the buffers in the engine's types and formats."""

    def __init__(self, engine, cuda):
        self.engine, self.cuda, self.addresses, self.shapes = engine, cuda, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes.get(name) or self.engine.get_tensor_shape(name)

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def execute_async_v3(self, stream):
        x_fmt = self.engine.get_tensor_format("x").name.lower()
        y_fmt = self.engine.get_tensor_format("y").name.lower()
        x_type = self.engine.trt.nptype(self.engine.get_tensor_dtype("x"))
        y_type = self.engine.trt.nptype(self.engine.get_tensor_dtype("y"))
        raw = np.frombuffer(bytes(self.cuda.memory[self.addresses["x"]]), dtype=x_type)
        x = layouts.unpack(raw, x_fmt, self.shapes["x"])
        y = layouts.pack((2 * x.astype(np.float32)).astype(y_type), y_fmt)
        self.cuda.memory[self.addresses["y"]][:] = y.tobytes()
        return True


@pytest.mark.parametrize("x_io,y_io", [
    ({"dtype": "fp16", "formats": ["hwc8"]}, {"dtype": "fp16", "formats": ["chw4"]}),
    ({"dtype": "fp16", "formats": ["chw2"]}, {"dtype": "fp32", "formats": ["linear"]}),
    ({"dtype": "fp32", "formats": ["chw32"]}, {"dtype": "fp16", "formats": ["hwc16"]}),
])
def test_a_session_feeds_and_reads_the_engines_types_and_layouts(tmp_path, install, monkeypatch, x_io, y_io):
    trt = install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [{"name": "x", "shape": [1, 3, 4, 5]}], [{"name": "y", "shape": [1, 3, 4, 5]}])
    code, result = run_build(tmp_path, model, canonical(io_formats={"x": x_io, "y": y_io}))
    assert code == 0, result
    from tests.unit.workers.toolchains.test_tensorrt_options import FakeEngine

    cuda = FakeCuda()
    monkeypatch.setattr(FakeEngine, "create_execution_context", lambda engine: FakeContext(engine, cuda),
                        raising=False)
    s = session.EngineSession(trt, np, cuda, runtime.make_logger(trt), str(tmp_path / "plan"), 0)
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 4, 5)).astype(np.float32)
    s.bind({"x": x})
    x_pointer, x_host = s.buffers["x"]
    assert x_host.shape == layouts.packed_shape(x_io["formats"][0], x.shape)  # laid out for the engine
    assert x_host.dtype == {"fp16": np.float16, "fp32": np.float32}[x_io["dtype"]]
    s.execute()
    y = s.fetch()["y"]
    assert y.shape == x.shape  # back in logical order
    assert y.dtype == {"fp16": np.float16, "fp32": np.float32}[y_io["dtype"]]
    np.testing.assert_allclose(y.astype(np.float32), 2 * x, rtol=2e-3, atol=2e-3)
    s.close()
    assert cuda.memory == {}


def test_a_session_refuses_a_layout_it_cannot_unpack(tmp_path, install, monkeypatch):
    trt = install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [{"name": "x", "shape": [1, 3, 4, 5]}], [{"name": "y", "shape": [1, 3, 4, 5]}])
    assert run_build(tmp_path, model, canonical())[0] == 0
    from tests.unit.workers.toolchains.test_tensorrt_options import FakeEngine

    monkeypatch.setattr(FakeEngine, "get_tensor_format", lambda engine, name: trt.TensorFormat.DLA_HWC4)
    monkeypatch.setattr(FakeEngine, "create_execution_context", lambda engine: FakeContext(engine, FakeCuda()),
                        raising=False)
    s = session.EngineSession(trt, np, FakeCuda(), runtime.make_logger(trt), str(tmp_path / "plan"), 0)
    with pytest.raises(session.RunnerError) as caught:
        s.bind({"x": np.zeros((1, 3, 4, 5), np.float32)})
    assert caught.value.code == "run_error"
    assert caught.value.message.startswith("tensor x: format 'dla_hwc4' has no known memory layout")


def test_io_metadata_is_json(tmp_path, install):
    install(make_fake_trt("10"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]),
                             canonical(io_formats={"x": {"dtype": "fp16", "formats": ["hwc8"]}}))
    assert code == 0
    assert json.loads(json.dumps(result["metadata"]["io"]))[0]["format"] == "hwc8"


def test_the_inspector_json_of_tensorrt_86_with_raw_control_characters_is_read():
    """TensorRT 8.6 writes raw control characters inside the inspector's JSON strings (NVIDIA/TensorRT#2779):
    strict JSON refuses them, and the H100 run of 2026-12-05 lost its layer table that way."""
    import types

    from workers.toolchains.tensorrt_runner.describe import inspect_engine, layer_report

    trt = types.SimpleNamespace(LayerInformationFormat=types.SimpleNamespace(JSON="json"))
    text = '{"Layers": [{"Name": "conv0\tfused", "LayerType": "CaskConvolution", "Outputs": []}]}'
    engine = types.SimpleNamespace(create_engine_inspector=lambda: types.SimpleNamespace(
        get_engine_information=lambda fmt: text))
    found = inspect_engine(trt, engine)
    assert found["Layers"][0]["Name"] == "conv0\tfused"
    broken = types.SimpleNamespace(create_engine_inspector=lambda: types.SimpleNamespace(
        get_engine_information=lambda fmt: "{not json"))
    error = inspect_engine(trt, broken)
    spec = {"layer_precisions": [{"pattern": "conv0"}], "profiling_verbosity": "detailed"}
    report = layer_report(spec, [], error)
    assert "JSONDecodeError" in report["note"] and "{not json" in report["note"]


def test_the_inspector_of_a_dynamic_engine_gets_a_context_at_the_opt_shapes_with_shapes_inferred():
    """Without a context whose shapes are set and inferred, TensorRT's inspector prints every format of a
    dynamic-shape engine as "N/A due to dynamic shapes" (8.5 and 8.6, the H100 run of 2026-12-05); a static
    engine gets none."""
    import types

    from workers.toolchains.tensorrt_runner.describe import inspect_engine

    calls: list = []
    context = types.SimpleNamespace(set_input_shape=lambda n, s: calls.append(("shape", n, s)),
                                    infer_shapes=lambda: calls.append(("infer",)) or [])
    inspector = types.SimpleNamespace(get_engine_information=lambda fmt: json.dumps(
        {"Layers": [], "context": inspector.execution_context is context}))
    inspector.execution_context = None
    trt = types.SimpleNamespace(LayerInformationFormat=types.SimpleNamespace(JSON="json"),
                                TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))

    def engine(shape):
        return types.SimpleNamespace(
            num_io_tensors=2, get_tensor_name=["x", "y"].__getitem__,
            get_tensor_mode=lambda n: "in" if n == "x" else "out", get_tensor_shape=lambda n: shape,
            is_shape_inference_io=lambda n: False, create_engine_inspector=lambda: inspector,
            get_tensor_profile_shape=lambda n, k: [(1, 3), (4, 3), (8, 3)], create_execution_context=lambda: context)

    assert inspect_engine(trt, engine((-1, 3)))["context"] is True
    assert calls == [("shape", "x", (4, 3)), ("infer",)]
    inspector.execution_context, calls[:] = None, []
    assert inspect_engine(trt, engine((2, 3)))["context"] is False and calls == []
