"""workers.validation: input introspection, validation shapes, random inputs, tolerances, compare math."""

from __future__ import annotations

import json

import numpy as np
import pytest

from registry.errors import InvalidInput, InvalidSpec
from registry.spec import ShapeRange, parse_spec
from tests.models import convnet, external_data_model, matmul_model
from workers.validation import (
    InputSpec,
    allowed_precisions,
    check_shape_in_profiles,
    compare,
    errors,
    input_specs,
    random_inputs,
    reference_outputs,
    tolerance_for,
    validation_shapes,
)

F32 = np.dtype("float32")


def profile_spec(*profiles: dict[str, str]):
    return parse_spec({"profiles": [{name: ShapeRange.parse(text) for name, text in p.items()} for p in profiles]})


# ------------------------------------------------------------------------------------------ input_specs


def test_input_specs_dynamic_batch(tmp_path):
    (spec,) = input_specs(convnet(tmp_path / "c.onnx"))
    assert spec.name == "input"
    assert spec.dtype == F32
    assert spec.shape == (None, 3, 16, 16)
    assert spec.dim_names == ("N", None, None, None)
    assert spec.dynamic and spec.describe() == "(N, 3, 16, 16)"


def test_input_specs_static(tmp_path):
    (spec,) = input_specs(convnet(tmp_path / "c.onnx", dynamic_batch=False))
    assert spec.shape == (1, 3, 16, 16) and not spec.dynamic


def test_input_specs_skip_initializers_listed_as_inputs(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    path = matmul_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input.append(helper.make_tensor_value_info("W", TensorProto.FLOAT, [8, 4]))
    onnx.save_model(model, str(path))
    assert [s.name for s in input_specs(path)] == ["x"]


def test_input_specs_do_not_read_external_data(tmp_path):
    path = external_data_model(tmp_path / "ext")
    (tmp_path / "ext" / "weights.bin").unlink()
    (spec,) = input_specs(path)
    assert spec.name == "input" and spec.shape == (None, 3, 16, 16)


# ------------------------------------------------------------------------------------ validation_shapes

DYN = InputSpec("x", F32, (None, 3, 8), ("N", None, None))
STATIC = InputSpec("s", F32, (2, 2), (None, None))


def test_static_shapes_without_profiles():
    assert validation_shapes([STATIC], parse_spec({})) == [{"s": (2, 2)}]


def test_dynamic_input_without_profile_gets_one_for_each_dynamic_dim():
    """trtexec's default (ONNX Runtime builds keep no profile; the build's warning tells the user)."""
    assert validation_shapes([DYN, STATIC], parse_spec({})) == [{"x": (1, 3, 8), "s": (2, 2)}]


def test_unknown_rank_without_profile_is_an_error():
    with pytest.raises(InvalidSpec, match="unknown rank"):
        validation_shapes([InputSpec("u", F32, None)], parse_spec({}))


def test_profile_gives_opt_then_min_then_max():
    spec = profile_spec({"x": "1x3x8,4x3x8,16x3x8"})
    assert validation_shapes([DYN, STATIC], spec) == [
        {"x": (4, 3, 8), "s": (2, 2)},
        {"x": (1, 3, 8), "s": (2, 2)},
        {"x": (16, 3, 8), "s": (2, 2)},
    ]


def test_equal_shapes_are_validated_once():
    assert validation_shapes([DYN], profile_spec({"x": "2x3x8"})) == [{"x": (2, 3, 8)}]


def test_every_profile_is_covered():
    spec = profile_spec({"x": "1x3x8,2x3x8,4x3x8"}, {"x": "8x3x8,16x3x8,32x3x8"})
    shapes = [s["x"][0] for s in validation_shapes([DYN], spec)]
    assert shapes == [2, 1, 4, 16, 8, 32]


def test_profile_omitting_a_dynamic_input_is_an_error():
    other = InputSpec("y", F32, (None,), ("T",))
    with pytest.raises(InvalidSpec, match=r"profile 0 omits dynamic input y \(T\)"):
        validation_shapes([DYN, other], profile_spec({"x": "1x3x8"}))


def test_profile_naming_an_unknown_input_is_an_error():
    with pytest.raises(InvalidSpec, match="lacks"):
        validation_shapes([DYN], profile_spec({"x": "1x3x8", "nope": "1"}))


def test_profile_that_does_not_fit_the_model_is_an_error():
    with pytest.raises(InvalidSpec, match="does not fit"):
        validation_shapes([DYN], profile_spec({"x": "1x4x8"}))
    with pytest.raises(InvalidSpec, match="does not fit"):
        validation_shapes([DYN], profile_spec({"x": "1x3"}))


def test_check_shape_in_profiles():
    spec = profile_spec({"x": "1x3x8,2x3x8,4x3x8"}, {"x": "8x3x8,16x3x8,32x3x8"})
    check_shape_in_profiles(spec, "x", (3, 3, 8))
    check_shape_in_profiles(spec, "x", (32, 3, 8))
    check_shape_in_profiles(spec, "other", (100,))  # no profile covers it: nothing to check
    with pytest.raises(InvalidSpec) as err:
        check_shape_in_profiles(spec, "x", (6, 3, 8))
    assert "shape (6, 3, 8) of input x is outside every profile" in str(err.value)
    assert "profile 1" in str(err.value)


# -------------------------------------------------------------------------------------------- random


def test_random_inputs_deterministic_and_in_range():
    specs = [InputSpec("f", F32, (4, 5)), InputSpec("h", np.dtype("float16"), (3,)),
             InputSpec("i", np.dtype("int64"), (100,)), InputSpec("b", np.dtype("bool"), (50,))]
    shapes = {"f": (4, 5), "h": (3,), "i": (100,), "b": (50,)}
    a, b = random_inputs(specs, shapes, seed=7), random_inputs(specs, shapes, seed=7)
    c = random_inputs(specs, shapes, seed=8)
    for name in shapes:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].shape == shapes[name]
    assert not np.array_equal(a["f"], c["f"])
    assert a["f"].dtype == np.float32 and a["h"].dtype == np.float16
    assert a["f"].min() >= -1 and a["f"].max() < 1
    assert a["i"].dtype == np.int64 and set(np.unique(a["i"])) <= {0, 1, 2, 3}
    assert a["b"].dtype == np.bool_ and a["b"].any() and not a["b"].all()


def test_random_inputs_need_every_shape():
    with pytest.raises(InvalidInput, match="no shape given for input f"):
        random_inputs([InputSpec("f", F32, (1,))], {}, seed=0)


def test_reference_outputs_match_numpy(tmp_path):
    import onnx
    from onnx import numpy_helper

    path = matmul_model(tmp_path / "m.onnx")
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    feeds = random_inputs(input_specs(path), {"x": (3, 8)}, seed=1)
    out = reference_outputs(path, feeds)
    assert list(out) == ["y"]
    np.testing.assert_allclose(out["y"], feeds["x"] @ weights["W"] + weights["b"], rtol=1e-5, atol=1e-6)


def test_reference_outputs_with_external_data(tmp_path):
    path = external_data_model(tmp_path / "ext")
    feeds = random_inputs(input_specs(path), {"input": (2, 3, 16, 16)}, seed=0)
    assert reference_outputs(path, feeds)["logits"].shape == (2, 10)


# ------------------------------------------------------------------------------------ tolerance, compare


@pytest.mark.parametrize("precision, tol", [
    ((), 1e-3), (("fp16",), 1e-2), (("bf16",), 1e-2), (("int8",), 1e-1), (("fp8",), 1e-1),
    (("int4",), 1e-1), (("fp16", "int8"), 1e-1), (("tf32",), 1e-2),
])
def test_tolerance_by_precision(precision, tol):
    assert tolerance_for(precision) == tol


@pytest.mark.parametrize("toolchain, fields, allowed", [
    ("tensorrt", {}, ("tf32",)),  # TensorRT's default: FP32 layers may run in TF32
    ("tensorrt", {"tf32": False}, ()),
    ("tensorrt", {"precision": ["fp16"]}, ("fp16", "tf32")),
    ("onnxruntime", {}, ()),  # the CPU never uses TF32
    ("onnxruntime", {"precision": ["fp16"]}, ("fp16",)),
])
def test_allowed_precisions_count_tf32_only_for_tensorrt(toolchain, fields, allowed):
    assert allowed_precisions(parse_spec(fields), toolchain) == allowed


def test_compare_identical():
    ref = {"y": np.arange(6, dtype=np.float32).reshape(2, 3)}
    result = compare(ref, {"y": ref["y"].copy()})
    assert result.passed and result.max_abs_error == 0 and result.max_rel_error == 0
    assert result.tolerance == 1e-3 and result.reason is None
    assert result.outputs[0].name == "y" and result.outputs[0].shape == [2, 3]


def test_relative_error_definition():
    ref = np.array([10.0, -2.0, 0.0, 1e-9])
    act = np.array([10.0001, -2.0, 1e-4, 1e-9])
    abs_err, rel_err = errors(ref, act)
    assert abs_err == pytest.approx(1e-4)
    # the denominator is the output's largest magnitude, max|ref| = 10, for every element
    assert rel_err == pytest.approx(1e-4 / 10)


def test_relative_error_absolute_floor_for_all_zero_reference():
    abs_err, rel_err = errors(np.zeros(4), np.full(4, 1e-9))
    assert abs_err == pytest.approx(1e-9) and rel_err == pytest.approx(1e-3)


def test_compare_tolerance_follows_precision():
    ref = {"y": np.ones(10, dtype=np.float32)}
    act = {"y": np.full(10, 1.005, dtype=np.float32)}
    fp32 = compare(ref, act)
    assert not fp32.passed and fp32.max_rel_error == pytest.approx(5e-3, rel=1e-3)
    assert "y: max relative error" in fp32.reason and "tolerance 0.001" in fp32.reason
    assert compare(ref, act, ("fp16",)).passed


def test_compare_missing_output_and_shape_mismatch():
    ref = {"a": np.zeros((2, 3)), "b": np.zeros(4)}
    result = compare(ref, {"a": np.zeros((3, 2))})
    assert not result.passed
    by_name = {o.name: o for o in result.outputs}
    assert "missing" in by_name["b"].reason
    assert "shape (3, 2) differs from the reference (2, 3)" in by_name["a"].reason
    assert "a:" in result.reason and "b:" in result.reason


def test_compare_extra_outputs_are_ignored():
    assert compare({"a": np.ones(2)}, {"a": np.ones(2), "extra": np.zeros(1)}).passed


def test_compare_nan_handling_and_json():
    ref = {"y": np.array([1.0, np.nan, 2.0])}
    assert compare(ref, {"y": np.array([1.0, np.nan, 2.0])}).passed
    bad = compare(ref, {"y": np.array([np.nan, np.nan, 2.0])})
    assert not bad.passed and bad.max_abs_error == float("inf")
    body = bad.to_dict()
    json.dumps(body, allow_nan=False)
    assert body["max_abs_error"] is None and body["outputs"][0]["passed"] is False
    assert body["passed"] is False and body["tolerance"] == 1e-3 and body["precision"] == []


def test_compare_integer_outputs_exact():
    ref = {"idx": np.array([1, 2, 3], dtype=np.int64)}
    assert compare(ref, {"idx": ref["idx"].copy()}).passed
    assert not compare(ref, {"idx": np.array([1, 2, 4], dtype=np.int64)}, ("int8",)).passed


def test_input_spec_to_dict():
    assert DYN.to_dict() == {"name": "x", "dtype": "float32", "shape": [None, 3, 8], "dim_names": ["N", None, None]}
