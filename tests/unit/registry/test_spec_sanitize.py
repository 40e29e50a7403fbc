"""spec.sanitize: its forms, its key (frozen, like test_spec_and_keys' golden keys), its errors, the checks
at submit (registry.services.builds / shapes) and the CLI flag."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from registry.errors import InvalidSpec
from registry.keys import build_key, spec_canonical, spec_family
from registry.services.builds import _check_profiles, _check_shape_values
from registry.services.shapes import normalized
from registry.spec import SanitizeSteps, parse_spec

MODEL = "sha256:" + "ab" * 32
H100 = "tensorrt==8.6.0@h100-80gb-hbm3"
DEFAULT_KEY = "e9094f8b1e7e7a066fc1061c762f1959298b8880d26759f80cd3375d47c99ca8"  # test_spec_and_keys' GOLDEN
SANITIZED_KEY = "db83b9028d7059c220196bc91b84a1fc42084010af94a330765ac917697b9d23"  # frozen: see that file


def key(spec: dict) -> str:
    return build_key(model=MODEL, target=H100, spec=parse_spec(spec))


@pytest.mark.parametrize("spec", [{}, {"sanitize": False}, {"sanitize": None},
                                  {"sanitize": {"fold_constants": False, "opset": None, "symbolic_dims": False}}])
def test_no_sanitizing_keeps_every_key_it_had(spec: dict) -> None:
    assert parse_spec(spec).sanitize is None
    assert key(spec) == DEFAULT_KEY


@pytest.mark.parametrize("spec", [
    {"sanitize": True}, {"sanitize": {}},
    {"sanitize": {"fold_constants": True, "opset": 7, "symbolic_dims": True, "shape_values": {}}},
])
def test_true_and_the_standard_object_are_one_key(spec: dict) -> None:
    assert parse_spec(spec).sanitize == SanitizeSteps()
    assert key(spec) == SANITIZED_KEY


def test_sanitizing_changes_the_key_and_the_spec_family() -> None:
    assert key({"sanitize": True}) != key({})
    assert spec_family(parse_spec({"sanitize": True})) != spec_family(parse_spec({}))
    variants = [{"sanitize": {"fold_constants": False}}, {"sanitize": {"opset": 13}},
                {"sanitize": {"symbolic_dims": False}}, {"sanitize": {"shape_values": {"s": [1, 4]}}},
                {"sanitize": {"shape_values": {"s": [4, 1]}}}]
    assert len({key(v) for v in [*variants, {"sanitize": True}, {}]}) == len(variants) + 2


def test_the_canonical_form_has_every_step_and_round_trips() -> None:
    spec = parse_spec({"sanitize": {"shape_values": {"shape": [3, 1]}}})
    assert spec_canonical(spec)["sanitize"] == {"fold_constants": True, "opset": 7, "symbolic_dims": True,
                                                "shape_values": {"shape": [3, 1]}}
    assert parse_spec(spec_canonical(spec)) == spec
    assert spec_canonical(parse_spec({}))["sanitize"] is None


@pytest.mark.parametrize(("data", "expected"), [
    ({"sanitize": "yes"}, ["spec.sanitize: give true (the standard steps), false, or an object naming steps",
                           "fold_constants, opset, symbolic_dims, shape_values"]),
    ({"sanitize": {"fold": True}}, ["spec.sanitize.fold: unknown field",
                                    "fold_constants, opset, shape_values, symbolic_dims"]),
    ({"sanitize": {"opset": 6}}, ["spec.sanitize.opset", "greater than or equal to 7"]),
    ({"sanitize": {"shape_values": {"s": ["a"]}}}, ["spec.sanitize.shape_values.s.0", "valid integer"]),
    ({"sanitize": {"shape_values": {"s": [2**63]}}}, ["spec.sanitize.shape_values", "fit in int64"]),
    ({"sanitize": {"shape_values": {"s": [1]}}, "profiles": [{"s": {"min": [1], "opt": [1], "max": [1]}}]},
     ["sanitize.shape_values makes input(s) s constants; drop their ranges from the profiles"]),
])
def test_bad_sanitize_objects_name_the_field(data: dict, expected: list[str]) -> None:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(data)
    for part in expected:
        assert part in str(info.value), (part, str(info.value))


# ------------------------------------------------------------------------------------ checks at submit

SHAPED = SimpleNamespace(inputs=[{"name": "x", "dtype": "float32", "shape": ["N", 3]},
                                 {"name": "shape", "dtype": "int64", "shape": [2]},
                                 {"name": "dims", "dtype": "int64", "shape": ["?"]},
                                 {"name": "grid", "dtype": "int64", "shape": [2, 2]}])
X = {"min": [1, 3], "opt": [2, 3], "max": [4, 3]}


@pytest.mark.parametrize(("values", "message"), [
    ({"nope": [1]}, "spec.sanitize.shape_values.nope: the model has no input 'nope'"),
    ({"x": [1, 2]}, "input x is float32; only integer inputs (shape tensors) take values"),
    ({"grid": [1, 2, 3, 4]}, "input grid has rank 2"),
    ({"shape": [1, 2, 3]}, "input shape holds 2 value(s) (shape [2]); got 3"),
])
def test_shape_values_are_checked_against_the_model(values: dict, message: str) -> None:
    with pytest.raises(InvalidSpec, match=re.escape(message)):
        _check_shape_values(parse_spec({"sanitize": {"shape_values": values}}), SHAPED)


def test_inputs_given_shape_values_need_no_range() -> None:
    spec = parse_spec({"sanitize": {"shape_values": {"shape": [1, 3], "dims": [2, 2, 2]}},
                       "profiles": [{"x": X}]})
    _check_shape_values(spec, SHAPED)
    normal, warnings = normalized(spec, SHAPED, "tensorrt")
    assert set(normal.profiles[0]) == {"x"} and warnings == []  # 'dims' ('?') became a constant: no default
    _check_profiles(normal, SHAPED)
    without, warnings = normalized(parse_spec({"profiles": [{"x": X}]}), SHAPED, "tensorrt")
    assert "dims" in without.profiles[0] and [w["code"] for w in warnings] == ["default_shape"]


def test_the_cli_flag_turns_the_standard_steps_on_and_leaves_spec_steps_alone() -> None:
    from registry.cli import _spec_from_flags

    flags = {"precision": [], "shape": [], "optimization_level": None, "hardware_compatibility": None,
             "version_compatible": False, "refit": None, "workspace_mib": None, "ort_level": None, "bench": {}}
    assert "sanitize" not in _spec_from_flags(None, sanitize=False, **flags)
    assert _spec_from_flags(None, sanitize=True, **flags)["sanitize"] is True
    given = _spec_from_flags('{"sanitize": {"opset": 11}}', sanitize=True, **flags)
    assert given["sanitize"] == {"opset": 11}
