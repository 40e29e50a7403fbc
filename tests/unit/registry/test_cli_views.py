"""What the CLI shows: an engine's spec as table columns, and which log lines `log -f` has shown."""

from __future__ import annotations

import pytest

from registry.cli import _overlap, spec_columns
from registry.keys import spec_canonical
from registry.spec import parse_spec


def test_spec_columns_of_a_tensorrt_and_an_onnxruntime_engine() -> None:
    trt = spec_canonical(parse_spec({"precision": ["int8", "fp16"], "optimization_level": 5, "profiles": [
        {"x": {"min": [1, 3], "opt": [4, 3], "max": [8, 3]}}, {"x": {"min": [9, 3], "opt": [9, 3], "max": [16, 3]}}]}))
    assert spec_columns(trt, "tensorrt") == ("x:1x3..8x3\nx:9x3..16x3", "fp16,int8+tf32", "opt 5")
    assert spec_columns(spec_canonical(parse_spec({"tf32": False})), "tensorrt") == ("static", "fp32", "opt 3")
    ort = spec_canonical(parse_spec({"onnxruntime": {"graph_optimization_level": "all"}}))
    assert spec_columns(ort, "onnxruntime") == ("static", "fp32", "all")


@pytest.mark.parametrize(("shown", "now", "expected"), [
    ([], ["a", "b"], 0),
    (["a", "b"], ["a", "b", "c"], 2),            # the log grew
    (["a", "b", "c"], ["b", "c", "d"], 2),       # the tail window moved on
    (["a", "b"], ["x", "y"], 0),                 # nothing in common: all new
    (["a", "x", "a"], ["x", "a", "b"], 2),       # a repeated line: the longest consistent overlap
    (["a", "a"], ["a", "a", "a"], 2),
    (["c", "d", "e"], ["a", "b", "c", "d", "e", "f"], 5),  # the whole log after a tail that had rotated
])
def test_follow_prints_only_what_it_has_not_shown(shown, now, expected) -> None:  # noqa: ANN001
    assert _overlap(shown, now) == expected


def test_one_range_per_input_on_the_command_line() -> None:
    from registry.cli import _spec_from_flags
    from registry.errors import InvalidSpec

    flags = {"precision": [], "optimization_level": None, "hardware_compatibility": None, "version_compatible": False,
             "refit": None, "workspace_mib": None, "ort_level": None, "bench": {}}
    spec = _spec_from_flags(None, shape=["x:1x3,2x3,4x3", "y:1,1,1"], **flags)
    assert set(spec["profiles"][0]) == {"x", "y"}
    with pytest.raises(InvalidSpec, match="--shape gives input 'x' two ranges; one range per input"):
        _spec_from_flags(None, shape=["x:1x3,2x3,4x3", "x:8x3"], **flags)
