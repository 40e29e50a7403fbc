"""workers/sanitize.py on real models: ONNX's own backend cases (shipped inside the onnx wheel with their
inputs and expected outputs) and the models of tests/models.py, each checked in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from registry import onnxinfo
from registry.errors import InvalidModel, InvalidSpec
from tests.models import external_data_model, opset6_broadcast_model, sanitizable_model, sanitizable_proto
from workers.sanitize import FOLD_LIMIT_BYTES, default_opset, sanitize, sanitize_file, shape_tensor_inputs

DATA = Path(onnx.__file__).resolve().parent / "backend" / "test" / "data"
GROUPS = ("pytorch-converted", "pytorch-operator", "simple", "node")
# onnx's version converter leaves opset 6's per-channel PRelu slope [C] as it is, which opset 7 broadcasts on
# the last axis: the step gives it the shape [C, 1, ...] first (workers.sanitize._channel_slopes).
CHANNEL_SLOPES = {"test_PReLU_1d_multiparam", "test_PReLU_2d_multiparam", "test_PReLU_3d_multiparam"}


def _cases(below: int | None = None, names: tuple[str, ...] = ()) -> list[Path]:
    found = []
    for group in GROUPS:
        for folder in sorted((DATA / group).glob("*")) if (DATA / group).is_dir() else []:
            if not (folder / "model.onnx").is_file() or (names and folder.name not in names):
                continue
            if below is None or (default_opset(onnx.load(str(folder / "model.onnx"))) or 99) < below:
                found.append(folder)
    return found


PRE_OPSET_7 = _cases(below=7)


def _tensor(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _shipped(folder: Path, model: onnx.ModelProto) -> tuple[dict, list]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v.name for v in model.graph.input if v.name not in initializers]
    data = folder / "test_data_set_0"
    return ({n: _tensor(data / f"input_{k}.pb") for k, n in enumerate(inputs)},
            [_tensor(data / f"output_{k}.pb") for k in range(len(model.graph.output))])


def _ort(model: onnx.ModelProto | Path, feeds: dict) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def _as_worker_has_it(folder: Path, tmp_path: Path) -> Path:
    """The case's model as the worker hands it to sanitizing: without initializers among its graph inputs."""
    dest = tmp_path / "inputs.onnx"
    return dest if onnxinfo.without_initializer_inputs(folder / "model.onnx", dest) else folder / "model.onnx"


def _same(got: list, expected: list) -> bool:
    return all(g.shape == e.shape and np.allclose(g, e, rtol=1e-3, atol=1e-5, equal_nan=True)
               for g, e in zip(got, expected))


# ------------------------------------------------------------------------------------------------- opset


def test_the_onnx_wheel_ships_pre_opset_7_cases() -> None:
    assert len(PRE_OPSET_7) >= 50, "onnx's backend test data changed: pick other pre-opset-7 cases"


@pytest.mark.parametrize("folder", [pytest.param(f, id=f"{f.parent.name}/{f.name}") for f in PRE_OPSET_7])
def test_a_pre_opset_7_case_is_converted_and_gives_the_shipped_outputs_in_onnx_runtime(folder: Path,
                                                                                      tmp_path: Path) -> None:
    source = _as_worker_has_it(folder, tmp_path)
    feeds, expected = _shipped(folder, onnx.load(str(source)))
    notes = sanitize_file(source, tmp_path / "sanitized.onnx")
    model = onnx.load(str(tmp_path / "sanitized.onnx"))
    assert f"converted opset {default_opset(onnx.load(str(source)))} -> 7 (onnx.version_converter)" in notes
    assert default_opset(model) == 7
    assert any(n.startswith("PRelu ") and "per-channel slopes take the shape [3, 1" in n for n in notes) is (
        folder.name in CHANNEL_SLOPES)
    assert _same(_ort(model, feeds), expected)


def test_onnx_runtime_cannot_run_some_of_them_before() -> None:
    """Why the step exists for ONNX Runtime too: no kernels for Add(6), Mul(6)..."""
    folder = _cases(names=("test_operator_add_broadcast",))[0]
    model = onnx.load(str(folder / "model.onnx"))
    feeds, expected = _shipped(folder, model)
    with pytest.raises(Exception, match="Could not find an implementation for Add\\(6\\)"):
        _ort(model, feeds)
    assert _same(_ort(sanitize(model)[0], feeds), expected)


def test_opset_null_leaves_the_opset_and_a_higher_opset_converts_further(tmp_path: Path) -> None:
    model = onnx.load(str(opset6_broadcast_model(tmp_path / "o6.onnx")))
    kept, notes = sanitize(model, {"opset": None, "fold_constants": False, "symbolic_dims": False})
    assert default_opset(kept) == 6 and not any("opset" in n for n in notes)
    newer, notes = sanitize(model, {"opset": 13})
    assert default_opset(newer) == 13 and "converted opset 6 -> 13 (onnx.version_converter)" in notes
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.allclose(_ort(newer, {"x": x})[0], x + np.array([1.0, -2.0, 0.5], np.float32))


# ------------------------------------------------------------------------------------------ shape values


@pytest.mark.parametrize("folder", [pytest.param(f, id=f.name) for f in _cases(names=tuple(
    f"test_expand_shape_model{k}" for k in range(1, 5)))])
def test_a_shape_tensor_input_given_its_shipped_values_becomes_a_constant(folder: Path) -> None:
    model = onnx.load(str(folder / "model.onnx"))
    feeds, expected = _shipped(folder, model)
    assert shape_tensor_inputs(model) == ["shape"]
    values = {"shape": [int(v) for v in feeds["shape"]]}
    sanitized, notes = sanitize(model, {"shape_values": values})
    assert f"input shape replaced by the constant {values['shape']} (shape_values)" in notes
    assert [v.name for v in sanitized.graph.input] == ["X"]
    assert _same(_ort(sanitized, {"X": feeds["X"]}), expected)


def test_integer_data_inputs_are_no_shape_tensors() -> None:
    (embedding,) = _cases(names=("test_Embedding",))
    assert shape_tensor_inputs(onnx.load(str(embedding / "model.onnx"))) == []  # Gather's indices: data


@pytest.mark.parametrize(("values", "message"), [
    ({"nope": [1]}, "the model has no input 'nope'"),
    ({"a": [1, 4]}, "input a is not an integer tensor"),
])
def test_shape_values_the_model_cannot_take_are_refused(values: dict, message: str) -> None:
    with pytest.raises(InvalidSpec, match=message):
        sanitize(sanitizable_proto(), {"shape_values": values})


# ---------------------------------------------------------------------------------------- symbolic dims


def test_two_inputs_whose_dims_are_both_question_marks_get_distinct_names() -> None:
    model = sanitizable_proto()
    assert [d.dim_param for v in model.graph.input for d in v.type.tensor_type.shape.dim][::2] == ["?", "?"]
    sanitized, notes = sanitize(model, {"fold_constants": False})
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in sanitized.graph.input}
    assert dims == {"a": ["a_dim0", 4], "b": ["b_dim0", 4]}
    assert "named dim: input a axis 0 '?' -> 'a_dim0'" in notes and "named dim: input b axis 0 '?' -> 'b_dim0'" in notes
    a, b = np.ones((2, 4), np.float32), np.ones((5, 4), np.float32)  # now two symbols: two batch sizes run
    assert [o.shape for o in _ort(sanitized, {"a": a, "b": b})] == [(2, 4), (5, 4)]


def test_unnamed_and_minus_one_dims_are_named_and_real_names_kept() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", -1, None, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sanitized, notes = sanitize(model)
    dims = [d.dim_param or d.dim_value for d in sanitized.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", "x_dim1", "x_dim2", 3]
    assert notes == ["named dim: input x axis 1 -1 -> 'x_dim1'", "named dim: input x axis 2 unnamed -> 'x_dim2'"]


# ------------------------------------------------------------------------------------- constant folding


def test_constant_folding_removes_nodes_and_keeps_the_outputs() -> None:
    model = sanitizable_proto()
    sanitized, notes = sanitize(model, {"symbolic_dims": False})
    assert [n.op_type for n in model.graph.node] == ["Constant", "Mul", "Reshape", "Add", "Mul"]
    assert [n.op_type for n in sanitized.graph.node] == ["Add", "Mul"]
    assert "folded 2 constant node(s) into initializers (Mul, Reshape)" in notes
    assert [t.name for t in sanitized.graph.initializer] == ["k"]
    rng = np.random.default_rng(0)
    feeds = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal((3, 4)).astype(np.float32)}
    for got, want in zip(_ort(sanitized, feeds), _ort(model, feeds)):
        assert np.array_equal(got, want)


def _expanding(width: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["wide"], ["big"], value=numpy_helper.from_array(np.ones(1, np.float32))),
         helper.make_node("Add", ["x", "big"], ["y"])], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializer=[numpy_helper.from_array(np.array([1, width], np.int64), "wide")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_a_fold_whose_output_is_too_large_is_left_computed() -> None:
    width = FOLD_LIMIT_BYTES // 4 + 1
    sanitized, notes = sanitize(_expanding(width))
    assert [n.op_type for n in sanitized.graph.node] == ["ConstantOfShape", "Add"]
    assert "left 1 constant node(s) unfolded: output over 16 MiB" in notes
    small, notes = sanitize(_expanding(8))
    assert [n.op_type for n in small.graph.node] == ["Add"] and "(ConstantOfShape)" in notes[0]


def test_a_node_that_does_not_evaluate_is_left_as_it_is() -> None:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["w", "bad"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])], "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        initializer=[numpy_helper.from_array(np.ones(4, np.float32), "w"),
                     numpy_helper.from_array(np.array([3], np.int64), "bad")])  # 4 values do not make 3
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sanitized, notes = sanitize(model, check=False)
    assert [n.op_type for n in sanitized.graph.node] == ["Reshape", "Add"]
    assert any(n.startswith("left 1 constant node(s) unfolded: Reshape does not evaluate") for n in notes)


def test_initializers_that_are_graph_inputs_are_no_constants() -> None:
    """A caller may feed an initializer that is also a graph input (IR 3): folding it would ignore them."""
    model = sanitizable_proto()
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    sanitized, _ = sanitize(model)
    assert [n.op_type for n in sanitized.graph.node] == ["Constant", "Mul", "Reshape", "Add", "Mul"]  # all kept


def test_an_ir3_model_gets_ir4_when_folding_adds_initializers_that_are_no_graph_inputs() -> None:
    three = numpy_helper.from_array(np.arange(3, dtype=np.float32), "three")
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c1"], value=three), helper.make_node("Constant", [], ["c2"], value=three),
         helper.make_node("Add", ["c1", "c2"], ["k"]), helper.make_node("Add", ["x", "k"], ["y"])], "ir3",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3  # IR 3 wants every initializer among the graph inputs
    sanitized, notes = sanitize(model)
    assert sanitized.ir_version == 4 and "IR version 3 -> 4 (initializers that are no graph inputs)" in notes
    x = np.ones(3, np.float32)
    assert np.array_equal(_ort(sanitized, {"x": x})[0], x + 2 * np.arange(3, dtype=np.float32))


def test_an_external_data_model_is_folded_from_its_weights_and_still_loads(tmp_path: Path) -> None:
    source = external_data_model(tmp_path / "m")
    graph = onnx.load(str(source), load_external_data=False)
    # fold something that reads an external weight: Identity(conv0.b) feeding a second use
    graph.graph.node.insert(0, helper.make_node("Identity", ["conv0.b"], ["bias_copy"]))
    for node in graph.graph.node:
        if node.op_type == "Conv" and node.input[2] == "conv0.b":
            node.input[2] = "bias_copy"
    onnx.save_model(graph, str(source))
    notes = sanitize_file(source, source.with_name(".sanitized-model.onnx"), {"symbolic_dims": False})
    assert "folded 1 constant node(s) into initializers (Identity)" in notes
    sanitized = onnx.load(str(source.with_name(".sanitized-model.onnx")), load_external_data=False)
    assert any(onnx.external_data_helper.uses_external_data(t) for t in sanitized.graph.initializer)  # kept there
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    (got,), (want,) = _ort(source.with_name(".sanitized-model.onnx"), {"input": x}), _ort(source, {"input": x})
    assert np.allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_result_the_checker_refuses_is_an_invalid_model() -> None:
    model = sanitizable_proto()
    model.graph.node[3].input[0] = "missing"  # reads a name nothing defines
    with pytest.raises(InvalidModel, match="the sanitized model fails the ONNX checker"):
        sanitize(model)


def test_the_input_model_is_left_untouched() -> None:
    model = sanitizable_proto()
    before = model.SerializeToString()
    sanitize(model)
    assert model.SerializeToString() == before


# ------------------------------------------------------------------- the GPU backend harness's CPU side


def test_the_gpu_backend_harness_sanitizes_a_case_as_a_build_would(tmp_path: Path) -> None:
    from tests.gpu.test_onnx_backend import case_data, sanitized_case

    (folder,) = _cases(names=("test_expand_shape_model3",))
    model, feeds, expected = case_data(folder)
    path, prepared = sanitized_case(folder, tmp_path, feeds)
    assert prepared["shape_values"] == {"shape": [int(v) for v in feeds["shape"]]}
    assert prepared["sanitized"] == [f"input shape replaced by the constant {prepared['shape_values']['shape']} "
                                     "(shape_values)"]
    sanitized = onnx.load(str(path))
    assert [v.name for v in sanitized.graph.input] == ["X"]
    assert _same(_ort(sanitized, {"X": feeds["X"]}), list(expected.values()))


def test_the_gpu_backend_harness_drops_initializer_inputs_before_sanitizing(tmp_path: Path) -> None:
    from tests.gpu.test_onnx_backend import case_data, sanitized_case

    (folder,) = _cases(names=("test_operator_add_broadcast",))
    model, feeds, expected = case_data(folder)
    path, prepared = sanitized_case(folder, tmp_path, feeds)
    assert prepared == {"sanitized": ["converted opset 6 -> 7 (onnx.version_converter)"], "shape_values": {}}
    assert _same(_ort(path, feeds), list(expected.values()))


# ---------------------------------------------------------------------- the worker's validation reference


def _reference(tmp_path: Path, original: Path, steps: dict | None = None):  # noqa: ANN202
    from workers.launcher import BuildLog
    from workers.verify import EngineUnderTest, reference_for

    sanitized = original.with_name(f".sanitized-{original.name}")
    sanitize_file(original, sanitized, steps)
    log = BuildLog(tmp_path / "build.log")
    eut = EngineUnderTest(None, sanitized, tmp_path / "engine", tmp_path)  # type: ignore[arg-type]
    checked, which = reference_for(eut, original, (steps or {}).get("shape_values", {}), log)
    return checked, which, (tmp_path / "build.log").read_text()


def test_the_engine_is_checked_against_the_original_model_when_onnx_runtime_loads_it(tmp_path: Path) -> None:
    original = sanitizable_model(tmp_path / "m.onnx")
    checked, which, log = _reference(tmp_path, original)
    assert which == "original" and checked.reference == original and checked.reference_feeds == {}
    assert checked.model_path.name == ".sanitized-m.onnx"  # the engine's inputs come from what it was built from
    assert "validation reference: ONNX Runtime running the original model" in log


def test_the_sanitized_model_is_the_reference_when_onnx_runtime_cannot_load_the_original(tmp_path: Path) -> None:
    original = opset6_broadcast_model(tmp_path / "o6.onnx")
    checked, which, log = _reference(tmp_path, original)
    assert which == "sanitized" and checked.reference == checked.model_path
    assert ("validation reference: ONNX Runtime running the sanitized model (it cannot load the original: "
            "NotImplemented: [ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
            "Add(6)") in log


def test_the_original_reference_gets_the_shape_values_as_its_inputs(tmp_path: Path) -> None:
    from workers.validation import reference_outputs

    (folder,) = _cases(names=("test_expand_shape_model2",))
    original = tmp_path / "model.onnx"
    original.write_bytes((folder / "model.onnx").read_bytes())
    feeds, expected = _shipped(folder, onnx.load(str(original)))
    values = {"shape": [int(v) for v in feeds["shape"]]}
    checked, which, log = _reference(tmp_path, original, {"shape_values": values})
    assert which == "original" and "(inputs shape given their shape_values)" in log
    assert checked.reference_feeds["shape"].dtype == np.int64 and checked.reference_feeds["shape"].tolist() == \
        values["shape"]
    got = reference_outputs(checked.reference, {"X": feeds["X"], **checked.reference_feeds})
    assert _same(list(got.values()), expected)


def test_a_model_with_tensorrt_plugin_ops_is_sanitized_and_checked_like_at_intake(tmp_path: Path) -> None:
    """The checker refuses ops ONNX lacks (EfficientNMS_TRT, built by TensorRT's plugin library): sanitizing shows
    it them in a domain of their own, as the intake does, and leaves the plugin nodes as they were; a broken graph
    around them is still refused."""
    from tests.models import efficient_nms_model

    path = efficient_nms_model(tmp_path / "nms.onnx", batch=1, boxes=8, classes=2, max_output_boxes=4,
                               score_threshold=0.2, iou_threshold=0.5)
    sanitize_file(path, tmp_path / "s.onnx")
    out = onnx.load(str(tmp_path / "s.onnx"))
    assert [(n.op_type, n.domain) for n in out.graph.node] == [("EfficientNMS_TRT", "")]
    assert onnxinfo.plugin_ops(out) == ["EfficientNMS_TRT"] and onnxinfo.PLUGIN_DOMAIN not in {
        o.domain for o in out.opset_import}
    model, _ = sanitize(onnx.load(str(path)))  # in memory too
    assert onnxinfo.plugin_ops(model) == ["EfficientNMS_TRT"]
    broken = onnx.load(str(path))
    broken.graph.node[0].input[0] = "nowhere"
    with pytest.raises(InvalidModel, match="the sanitized model fails the ONNX checker"):
        sanitize(broken)
