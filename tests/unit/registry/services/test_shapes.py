"""registry.services.shapes: the profiles a build key sees, for one model's inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from registry.keys import build_key
from registry.services.shapes import normalized
from registry.spec import parse_spec

MODEL = SimpleNamespace(inputs=[{"name": "x", "shape": ["N", 3, None, -1]}, {"name": "s", "shape": [2, 2]},
                                {"name": "k", "shape": []}])
X = {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [8, 3, 8, 8]}


def key(spec: dict, toolchain: str = "tensorrt") -> str:
    spec_, _ = normalized(parse_spec(spec), MODEL, toolchain)
    return build_key(model="sha256:" + "a" * 64, target=f"{toolchain}==1.0.0@d", spec=spec_)


def test_static_inputs_named_with_their_shape_or_left_out_give_one_key() -> None:
    named = {"profiles": [{"x": X, "s": {"min": [2, 2], "opt": [2, 2], "max": [2, 2]}}]}
    assert key(named) == key({"profiles": [{"x": X}]})
    assert key(named, "onnxruntime") == key({"profiles": [{"x": X}]}, "onnxruntime")


def test_a_static_input_given_another_range_is_kept_for_the_checks_to_refuse() -> None:
    spec, _ = normalized(parse_spec({"profiles": [{"x": X, "s": {"min": [1, 2], "opt": [2, 2], "max": [2, 2]}}]}),
                         MODEL, "tensorrt")
    assert set(spec.profiles[0]) == {"x", "s"}


@pytest.mark.parametrize("toolchain", ["tensorrt", "onnxruntime"])
def test_a_dynamic_input_without_a_range_gets_ones_and_a_warning(toolchain: str) -> None:
    spec, warnings = normalized(parse_spec({}), MODEL, toolchain)
    (warning,) = warnings
    assert warning["code"] == "default_shape" and "x (N, 3, ?, ?)" in warning["message"]
    assert "--shape x:MIN,OPT,MAX" in warning["message"]
    if toolchain == "tensorrt":  # TensorRT needs a profile for it: the key says which
        assert [{n: (r.min, r.opt, r.max) for n, r in p.items()} for p in spec.profiles] == \
            [{"x": ((1, 3, 1, 1),) * 3}]
        assert "built for 1x3x1x1" in warning["message"]
    else:  # ONNX Runtime takes any shape: no profile; validation uses the same default
        assert spec.profiles == () and "validated at 1x3x1x1" in warning["message"]


def test_given_ranges_get_no_warning() -> None:
    spec, warnings = normalized(parse_spec({"profiles": [{"x": X}]}), MODEL, "tensorrt")
    assert warnings == [] and spec.profiles[0]["x"].max == (8, 3, 8, 8)
