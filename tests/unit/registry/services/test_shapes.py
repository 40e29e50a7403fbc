"""registry.services.shapes: the profiles a build key sees, for one model's inputs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from registry.keys import build_key
from registry.services.shapes import ANY_SHAPE_WIDTH, normalized, profile_width, width_of
from registry.spec import BuildSpec, parse_spec

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


def test_profile_width_is_log2_of_the_shapes_the_profiles_hold() -> None:
    def spec(*ranges: tuple[int, int]) -> BuildSpec:
        return parse_spec({"profiles": [{"x": {"min": [lo, 3, 8], "opt": [lo, 3, 8], "max": [hi, 3, 8]}}
                                        for lo, hi in ranges]})

    assert profile_width(spec((1, 16)), "tensorrt") == 4.0 and profile_width(spec((1, 4)), "tensorrt") == 2.0
    assert profile_width(spec((1, 1)), "tensorrt") == 0.0  # one shape
    assert profile_width(spec((1, 8), (4, 12)), "tensorrt") == profile_width(spec((1, 12)), "tensorrt")  # once
    assert profile_width(spec((1, 4), (9, 12)), "tensorrt") == 3.0  # 8 shapes apart
    assert profile_width(BuildSpec(), "onnxruntime") == ANY_SHAPE_WIDTH > profile_width(spec((1, 2**20)), "onnxruntime")
    assert profile_width(BuildSpec(), "tensorrt") == 0.0  # a static model's engine: its one shape


def test_width_of_counts_the_union_of_the_profiles() -> None:
    """Against enumerating every shape, on random profiles of two inputs (their ranks differ at times)."""
    import itertools
    import math
    import random

    rng = random.Random(3)
    for _ in range(200):
        profiles, held = [], set()
        rank_y = rng.choice((1, 2))
        for _ in range(rng.randint(1, 4)):
            x = [(lo, rng.randint(lo, 6)) for lo in (rng.randint(0, 5), rng.randint(1, 3))]
            y = [(lo, rng.randint(lo, 4)) for lo in [rng.randint(1, 4) for _ in range(rank_y)]]
            profiles.append({"x": tuple(zip(*x)), "y": tuple(zip(*y))})
            held |= {(rank_y, p) for p in itertools.product(*(range(lo, hi + 1) for lo, hi in x + y))}
            rank_y = rng.choice((rank_y, rank_y, 3 - rank_y))
        assert width_of(profiles) == (round(math.log2(len(held)), 9) if len(held) > 1 else 0.0)
