"""BuildSpec validation, canonical JSON and build keys (docs/design.md "Digests and keys"), table-driven.

The golden keys below were computed once and frozen. A change to any of them means every build key
in every farm changes: that needs KEY_VERSION bumped and a migration note, never an edit of this table.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from registry.digests import canonical_json
from registry.errors import InvalidSpec
from registry.keys import KEY_VERSION, build_key, spec_canonical, spec_family
from registry.spec import ADDED_OPTIONS, BuildSpec, OnnxRuntimeOptions, ShapeRange, parse_spec

MODEL = "sha256:" + "ab" * 32
OTHER_MODEL = "sha256:" + "cd" * 32
H100 = "tensorrt==8.6.0@h100-80gb-hbm3"
ORT = "onnxruntime==1.23.2@x86_64-avx2"
PLUGIN_A = "sha256:" + "01" * 32
PLUGIN_B = "sha256:" + "02" * 32
CALIB = "sha256:" + "0c" * 32
PROFILE = {"input": {"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [32, 3, 224, 224]}}

# (case id, model, target, spec, plugins, calibration, frozen key)
GOLDEN = [
    ("default-tensorrt", MODEL, H100, {}, (), None,
     "e9094f8b1e7e7a066fc1061c762f1959298b8880d26759f80cd3375d47c99ca8"),
    ("bench settings (same key)", MODEL, H100, {"bench": {"iterations": 5, "warmup": 0, "max_seconds": 1.5}}, (),
     None, "e9094f8b1e7e7a066fc1061c762f1959298b8880d26759f80cd3375d47c99ca8"),
    ("bench off (same key)", MODEL, H100, {"bench": {"enabled": False}}, (), None,
     "e9094f8b1e7e7a066fc1061c762f1959298b8880d26759f80cd3375d47c99ca8"),
    ("default-onnxruntime", MODEL, ORT, {}, (), None,
     "e0a068efa44c81154451e3955f45c6892c5cdffcb7d727ae1d11faae738c1985"),
    ("fp16+int8", MODEL, H100, {"precision": ["fp16", "int8"]}, (), None,
     "8625f2f902af3426fdb466644ae5c4f9f58823709443cd5d55bd6c645c1cd1cd"),
    ("int8+fp16 (same key)", MODEL, H100, {"precision": ["int8", "fp16", "int8"]}, (), None,
     "8625f2f902af3426fdb466644ae5c4f9f58823709443cd5d55bd6c645c1cd1cd"),
    ("profile", MODEL, H100, {"profiles": [PROFILE]}, (), None,
     "96052d6fe47afad99b376a915a66d6a362b7df5bb609110c5636059764ac56e1"),
    ("ort-options", MODEL, ORT, {"onnxruntime": {"graph_optimization_level": "all", "optimized_model_format": "onnx"}},
     (), None, "537099e5fb13af2176b3333e173aa81f7ee93b7e3961b12cee4642582fb40624"),
    ("plugins a,b", MODEL, H100, {}, (PLUGIN_A, PLUGIN_B), None,
     "36d98bce5edf6f56bec761e5e8a3e8aaf0115ba67fa3e96aff9cdb16676ad3ec"),
    ("plugins b,a (same key)", MODEL, H100, {}, (PLUGIN_B, PLUGIN_A), None,
     "36d98bce5edf6f56bec761e5e8a3e8aaf0115ba67fa3e96aff9cdb16676ad3ec"),
    ("calibration", MODEL, H100, {"precision": ["int8"]}, (), CALIB,
     "94fad7e47a4f1e118ae023e2013135235c337e4d035d5c9ce7630a8883d9680d"),
    ("same_compute_capability", MODEL, "tensorrt==8.6.0@sm_90", {"hardware_compatibility": "same_compute_capability"},
     (), None, "9a6af353604c8e19f997fa974c0e196f09e94937278a842a1fa97e88929057c7"),
    ("full-tensorrt", MODEL, "tensorrt==10.3.0@ampere_plus",
     {"precision": ["fp16"], "profiles": [PROFILE, PROFILE], "workspace_mib": 4096, "optimization_level": 5,
      "tactic_sources": ["jit_convolutions", "edge_mask_convolutions"], "hardware_compatibility": "ampere_plus",
      "version_compatible": True, "exclude_lean_runtime": True, "refit": "refit", "strip_weights": True,
      "profiling_verbosity": "detailed"},
     (), None, "1c60d9e4320f97e3c4d7db03a20541eb9294b976495bc7950efb92f535e42ef3"),
]


@pytest.mark.parametrize(("model", "target", "spec", "plugins", "calibration", "key"),
                         [pytest.param(*row[1:], id=row[0]) for row in GOLDEN])
def test_golden_keys(model, target, spec, plugins, calibration, key):
    assert KEY_VERSION == 1
    assert build_key(model=model, target=target, spec=parse_spec(spec), plugins=plugins, calibration=calibration) == key


def test_golden_keys_are_all_different_where_the_inputs_differ():
    """Only the rows documented as '(same key)' may share a key with another row."""
    keys = [row[-1] for row in GOLDEN if "(same key)" not in row[0]]
    assert len(set(keys)) == len(keys)


def test_key_is_sha256_of_the_documented_document():
    spec = parse_spec({"precision": ["fp16"]})
    # the measurement is not the recipe; options added after key version 1 are left out at their default
    recipe = {k: v for k, v in spec_canonical(spec).items() if k != "bench" and k not in ADDED_OPTIONS}
    doc = {"key_version": KEY_VERSION, "model": MODEL, "target": H100, "spec": recipe,
           "plugins": [], "calibration": None}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    assert build_key(model=MODEL, target=H100, spec=spec) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("field", "a", "b"), [
    ("model", {"model": MODEL}, {"model": OTHER_MODEL}),
    ("target", {"target": H100}, {"target": "tensorrt==8.6.0@sm_90"}),
    ("version", {"target": H100}, {"target": "tensorrt==10.3.0@h100-80gb-hbm3"}),
    ("spec", {"spec": {}}, {"spec": {"tf32": False}}),
    ("plugins", {"plugins": ()}, {"plugins": (PLUGIN_A,)}),
    ("calibration", {"calibration": None}, {"calibration": CALIB}),
])
def test_every_component_changes_the_key(field, a, b):
    base = {"model": MODEL, "target": H100, "spec": {}, "plugins": (), "calibration": None}

    def key(over):
        args = {**base, **over}
        return build_key(model=args["model"], target=args["target"], spec=parse_spec(args["spec"]),
                         plugins=args["plugins"], calibration=args["calibration"])

    assert key(a) != key(b), field


@pytest.mark.parametrize(("a", "b"), [
    ({}, {"precision": [], "tf32": True, "optimization_level": 3, "hardware_compatibility": "none"}),  # defaults filled
    ({"precision": ["fp16", "int8"]}, {"precision": ["int8", "fp16"]}),
    ({"precision": ["fp16"]}, {"precision": ["fp16", "fp16"]}),
    ({"tactic_sources": ["cudnn", "cublas"]}, {"tactic_sources": ["cublas", "cudnn"]}),
    ({"onnxruntime": {}}, {"onnxruntime": {"graph_optimization_level": "extended", "optimized_model_format": "ort"}}),
    ({"profiles": [{"x": {"min": [1], "opt": [2], "max": [3]}}]},
     {"profiles": [{"x": {"max": (3,), "opt": (2,), "min": (1,)}}]}),
])
def test_equal_meaning_gives_equal_key(a, b):
    assert (build_key(model=MODEL, target=H100, spec=parse_spec(a))
            == build_key(model=MODEL, target=H100, spec=parse_spec(b)))


def test_profile_order_is_declared_order_and_matters():
    p1 = {"x": {"min": [1], "opt": [2], "max": [4]}}
    p2 = {"x": {"min": [4], "opt": [8], "max": [16]}}
    k12 = build_key(model=MODEL, target=H100, spec=parse_spec({"profiles": [p1, p2]}))
    k21 = build_key(model=MODEL, target=H100, spec=parse_spec({"profiles": [p2, p1]}))
    assert k12 != k21  # profile index k is what a runtime selects: order is meaning


def test_tactic_sources_none_differs_from_empty():
    assert (build_key(model=MODEL, target=H100, spec=parse_spec({}))
            != build_key(model=MODEL, target=H100, spec=parse_spec({"tactic_sources": []})))


# ------------------------------------------------------------------------------------ canonical JSON


def test_canonical_json_is_sorted_and_has_no_whitespace():
    text = canonical_json({"b": 1, "a": {"z": [1, 2], "y": None}, "c": "é"})
    assert text == '{"a":{"y":null,"z":[1,2]},"b":1,"c":"é"}'


def test_canonical_json_rejects_nan():
    with pytest.raises(ValueError, match="not JSON compliant"):
        canonical_json({"x": float("nan")})


def test_spec_canonical_fills_defaults_with_names_not_numbers():
    doc = spec_canonical(parse_spec({}))
    assert doc == {
        "bench": {"enabled": True, "iterations": None, "max_seconds": None, "warmup": None},
        "calibration_algorithm": None, "dla_core": None, "exclude_lean_runtime": False, "gpu_fallback": False,
        "hardware_compatibility": "none",
        "io_formats": {}, "layer_precisions": [], "precision_constraints": "none",
        "onnxruntime": {"graph_optimization_level": "extended", "optimized_model_format": "ort"},
        "optimization_level": 3, "precision": [], "profiles": [], "profiling_verbosity": "layer_names_only",
        "refit": "none", "sanitize": None, "strip_weights": False, "strongly_typed": False, "tactic_sources": None,
        "tf32": True,
        "version_compatible": False, "weight_streaming": False, "workspace_mib": None,
    }
    text = canonical_json(doc)
    assert " " not in text and "\n" not in text
    assert list(json.loads(text)) == sorted(json.loads(text))


def test_spec_canonical_profiles_are_lists_of_ints():
    doc = spec_canonical(parse_spec({"profiles": [PROFILE]}))
    assert doc["profiles"] == [{"input": {"min": [1, 3, 224, 224], "opt": [8, 3, 224, 224], "max": [32, 3, 224, 224]}}]


def test_spec_round_trips_through_its_canonical_form():
    spec = parse_spec({"precision": ["int8", "fp16"], "profiles": [PROFILE], "refit": "refit", "strip_weights": True})
    assert parse_spec(spec_canonical(spec)) == spec


# --------------------------------------------------------------------------------------- spec family


def test_spec_family_ignores_the_options_that_only_decide_who_can_load():
    base = spec_family(parse_spec({"precision": ["fp16"]}))
    for compat in ({"hardware_compatibility": "ampere_plus"}, {"hardware_compatibility": "same_compute_capability"},
                   {"version_compatible": True}, {"version_compatible": True, "exclude_lean_runtime": True}):
        assert spec_family(parse_spec({"precision": ["fp16"], **compat})) == base, compat


@pytest.mark.parametrize("change", [
    {"precision": ["fp16", "int8"]}, {"profiles": [PROFILE]}, {"optimization_level": 5},
    {"onnxruntime": {"graph_optimization_level": "all"}}, {"tf32": False},
])
def test_spec_family_changes_with_what_the_engine_computes(change):
    assert (spec_family(parse_spec({"precision": ["fp16"]}))
            != spec_family(parse_spec({"precision": ["fp16"], **change})))


# ---------------------------------------------------------------------------------------- spec errors


def _error(data) -> str:
    with pytest.raises(InvalidSpec) as info:
        parse_spec(data)
    assert info.value.code == "invalid_spec"
    assert info.value.details["errors"]
    return str(info.value)


@pytest.mark.parametrize(("data", "expected"), [
    ({"precisions": ["fp16"]}, ["spec.precisions: unknown field", "known fields:", "precision", "workspace_mib"]),
    ({"onnxruntime": {"level": "all"}}, ["spec.onnxruntime.level: unknown field",
                                         "graph_optimization_level", "optimized_model_format"]),
    ({"profiles": [{"x": {"min": [1], "opt": [1], "max": [1], "mid": [1]}}]},
     ["spec.profiles.0.x.mid: unknown field", "max, min, opt"]),
    ({"precision": ["fp64"]}, ["spec.precision.0", "'fp16'", "'bf16'", "'fp8'", "'int8'", "'int4'", "'fp64'"]),
    ({"refit": "yes"}, ["spec.refit", "'none', 'refit' or 'refit_identical'", "'yes'"]),
    ({"hardware_compatibility": "hopper_plus"}, ["spec.hardware_compatibility", "'none', 'ampere_plus' or "
                                                 "'same_compute_capability'", "'hopper_plus'"]),
    ({"profiling_verbosity": "all"}, ["spec.profiling_verbosity", "'layer_names_only'", "'detailed'"]),
    ({"tactic_sources": ["cublas", "magic"]}, ["spec.tactic_sources.1", "'edge_mask_convolutions'", "'magic'"]),
    ({"onnxruntime": {"graph_optimization_level": "max"}},
     ["spec.onnxruntime.graph_optimization_level", "'disable', 'basic', 'extended', 'layout' or 'all'", "'max'"]),
    ({"onnxruntime": {"optimized_model_format": "pb"}}, ["spec.onnxruntime.optimized_model_format", "'ort' or 'onnx'"]),
    ({"optimization_level": 9}, ["spec.optimization_level", "less than or equal to 5", "9"]),
    ({"workspace_mib": 0}, ["spec.workspace_mib", "greater than 0"]),
    ({"dla_core": -1}, ["spec.dla_core", "greater than or equal to 0"]),
    ({"profiles": [{"x": {"min": [4, 3], "opt": [2, 3], "max": [8, 3]}}]},
     ["spec.profiles.0.x", "min <= opt <= max", "min=(4, 3) opt=(2, 3) max=(8, 3)"]),
    ({"profiles": [{"x": {"min": [1, 3], "opt": [2, 3], "max": [3, 2]}}]}, ["spec.profiles.0.x", "min <= opt <= max"]),
    ({"profiles": [{"x": {"min": [1, 3], "opt": [2], "max": [4, 3]}}]}, ["spec.profiles.0.x", "same rank"]),
    ({"profiles": [{"x": {"min": [-1], "opt": [1], "max": [1]}}]}, ["spec.profiles.0.x", ">= 0"]),
    ({"profiles": [{"x": {"min": [1], "opt": [1]}}]}, ["spec.profiles.0.x.max", "required"]),
    ({"profiles": [{"x": {"min": [1], "opt": [1], "max": [1]}}, {"y": {"min": [1], "opt": [1], "max": [1]}}]},
     ["every optimization profile must name the same inputs"]),
    ({"strip_weights": True}, ["strip_weights needs refit='refit' or 'refit_identical'"]),
    ({"exclude_lean_runtime": True}, ["exclude_lean_runtime needs version_compatible=true"]),
    ({"gpu_fallback": True}, ["gpu_fallback needs dla_core"]),
    ({"strongly_typed": True, "precision": ["fp16"]}, ["strongly_typed", "leave precision empty"]),
])
def test_spec_errors_name_the_field_and_the_allowed_values(data, expected):
    message = _error(data)
    for part in expected:
        assert part in message, (part, message)


def test_several_problems_are_all_reported():
    message = _error({"bogus": 1, "refit": "yes"})
    assert "spec.bogus: unknown field" in message and "spec.refit" in message


@pytest.mark.parametrize("data", [
    {}, None, {"strip_weights": True, "refit": "refit_identical"}, {"dla_core": 0, "gpu_fallback": True},
    {"version_compatible": True, "exclude_lean_runtime": True}, {"strongly_typed": True},
    {"profiles": [{"x": {"min": [1], "opt": [1], "max": [1]}}]},
    {"profiles": [{"x": {"min": [0], "opt": [0], "max": [4]}}]},  # empty tensors: TensorRT allows 0 <= min
])
def test_valid_specs(data):
    assert isinstance(parse_spec(data), BuildSpec)


def test_spec_is_frozen_and_parse_spec_passes_a_spec_through():
    spec = parse_spec({"precision": ["fp16"]})
    assert parse_spec(spec) is spec
    with pytest.raises(ValidationError, match="frozen"):
        spec.tf32 = False  # type: ignore[misc]


def test_uses_tensorrt_options():
    assert parse_spec({}).uses_tensorrt_options() == []
    assert parse_spec({"onnxruntime": {"graph_optimization_level": "all"}}).uses_tensorrt_options() == []
    assert parse_spec({"precision": ["fp16"], "workspace_mib": 64}).uses_tensorrt_options() == [
        "precision", "workspace_mib"]


# ---------------------------------------------------------------------------------------- ShapeRange


@pytest.mark.parametrize(("text", "expected"), [
    ("1x3x224x224,8x3x224x224,32x3x224x224", ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224))),
    ("1x3x8x8", ((1, 3, 8, 8),) * 3),
    ("4X16", ((4, 16),) * 3),
    ("1,2,3", ((1,), (2,), (3,))),
    ("1x3,2x3,4x3,", ((1, 3), (2, 3), (4, 3))),
])
def test_shape_range_parse(text, expected):
    rng = ShapeRange.parse(text)
    assert (rng.min, rng.opt, rng.max) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("1x3,2x3", "give MIN,OPT,MAX"),
    ("1,2,3,4", "give MIN,OPT,MAX"),
    ("", "give MIN,OPT,MAX"),
    ("1xa", "dimensions must be integers separated by 'x'"),
    ("1x3x-", "dimensions must be integers"),
    ("4x3,2x3,8x3", "shape: need min <= opt <= max"),
    ("-1x3,1x3,1x3", "shape: dimensions must be >= 0"),
    ("1x3,1x3x3,1x3", "same rank"),
])
def test_shape_range_parse_errors(text, expected):
    with pytest.raises(InvalidSpec) as info:
        ShapeRange.parse(text)
    assert expected in str(info.value)


def test_shape_range_contains():
    rng = ShapeRange.parse("1x3,4x3,8x3")
    assert rng.contains((1, 3)) and rng.contains((8, 3)) and rng.contains((5, 3))
    assert not rng.contains((9, 3)) and not rng.contains((1, 4)) and not rng.contains((1, 3, 1))


def test_shape_ranges_by_input():
    spec = parse_spec({"profiles": [{"x": {"min": [1], "opt": [2], "max": [4]}},
                                    {"x": {"min": [4], "opt": [8], "max": [16]}}]})
    assert [r.max for r in spec.shape_ranges("x")] == [(4,), (16,)]
    assert spec.shape_ranges("y") == []


def test_onnxruntime_options_defaults():
    assert OnnxRuntimeOptions() == parse_spec({}).onnxruntime
    assert parse_spec({}).onnxruntime.graph_optimization_level == "extended"
