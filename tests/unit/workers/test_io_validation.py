"""Validation of engines with non-fp32 I/O (spec.io_formats) and layer rules: inputs rounded through the
engine's I/O types for both sides, tolerances of the reduced types, int8/fp8 I/O not checkable."""

from __future__ import annotations

import numpy as np

from registry.spec import parse_spec
from workers import validation


def feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.uniform(-1, 1, (2, 3, 4, 4)).astype(np.float32), "ids": rng.integers(0, 4, (2, 5))}


def test_fp32_io_leaves_the_inputs_alone():
    given = feeds()
    rounded, why = validation.io_feeds(given, parse_spec({"io_formats": {"x": {"dtype": "fp32", "formats": ["hwc"]}}}))
    assert why is None and rounded["x"] is given["x"]


def test_fp16_and_bf16_inputs_are_rounded_through_their_type():
    given = feeds()
    spec = parse_spec({"io_formats": {"x": {"dtype": "fp16", "formats": ["hwc8"]}}})
    rounded, why = validation.io_feeds(given, spec)
    assert why is None and rounded["x"].dtype == np.float32
    np.testing.assert_array_equal(rounded["x"], given["x"].astype(np.float16).astype(np.float32))
    assert not np.array_equal(rounded["x"], given["x"])  # really rounded
    assert rounded["ids"] is given["ids"]
    bf16, _ = validation.io_feeds(given, parse_spec({"io_formats": {"x": {"dtype": "bf16"}}}))
    bits = bf16["x"].view(np.uint32)
    assert not (bits & 0xFFFF).any()  # only bf16's upper 16 bits left
    assert np.max(np.abs(bf16["x"] - given["x"])) <= 2 ** -8  # within bf16's rounding of values below 1


def test_integer_io_types_make_float_inputs_integral():
    given = feeds()
    rounded, _ = validation.io_feeds(given, parse_spec({"io_formats": {"x": {"dtype": "uint8"}}}))
    assert set(np.unique(rounded["x"])) <= {0.0, 1.0} and rounded["x"].dtype == np.float32
    rounded, _ = validation.io_feeds(given, parse_spec({"io_formats": {"x": {"dtype": "int32"}}}))
    assert set(np.unique(rounded["x"])) <= {-1.0, 0.0, 1.0}


def test_int8_or_fp8_io_cannot_be_validated_and_says_why():
    given = feeds()
    spec = parse_spec({"io_formats": {"x": {"dtype": "int8", "formats": ["chw4"]}, "y": {"dtype": "fp16"}}})
    rounded, why = validation.io_feeds(given, spec)
    assert rounded is given
    assert why.startswith("x: int8/fp8 at the engine's boundary hold values scaled by a factor TensorRT takes")
    assert "validation skipped (the benchmark runs)" in why


def test_reduced_io_and_layer_types_loosen_the_tolerance():
    spec = parse_spec({"tf32": False, "io_formats": {"y": {"dtype": "fp16"}}})
    assert validation.allowed_precisions(spec, "tensorrt") == ("fp16",)
    assert validation.tolerance_for(validation.allowed_precisions(spec, "tensorrt")) == 1e-2
    pinned = parse_spec({"tf32": False, "layer_precisions": [{"pattern": "conv0", "precision": "fp32"}],
                         "precision_constraints": "obey"})
    assert validation.allowed_precisions(pinned, "tensorrt") == ()  # fp32 pins loosen nothing
    mixed = parse_spec({"precision": ["fp16"], "layer_precisions": [{"pattern": "a", "output_types": ["int8"]}],
                        "precision_constraints": "prefer", "io_formats": {"x": {"dtype": "uint8"}}})
    assert validation.allowed_precisions(mixed, "tensorrt") == ("fp16", "tf32", "int8")


def test_an_engine_with_int8_io_is_timed_but_not_validated(tmp_path):
    """check_engine: every input set skipped with the reason, no `run`, inputs still written, `bench` still run."""
    import types

    from tests.models import convnet
    from workers.verify import EngineUnderTest, check_engine

    calls = []

    def run(toolchain, command, args, **kwargs):  # noqa: ANN001, ANN003
        calls.append((command, args))
        return {"latency_ms": {"p50": 1.0, "p99": 2.0, "iterations": 3}}

    settings = types.SimpleNamespace(validation_seed=0, bench_iterations=3, bench_warmup=1, bench_max_s=1.0)
    ctx = types.SimpleNamespace(settings=settings, runners=types.SimpleNamespace(run=run))
    spec = parse_spec({"profiles": [{"input": {"min": [1, 3, 8, 8], "opt": [2, 3, 8, 8], "max": [2, 3, 8, 8]}}],
                       "io_formats": {"input": {"dtype": "int8", "formats": ["chw4"]}}})
    job = types.SimpleNamespace(spec=spec, toolchain="tensorrt")
    lines = []
    log = types.SimpleNamespace(write=lines.append)
    keeper = types.SimpleNamespace(step=lambda name: None, should_stop=lambda: False)
    eut = EngineUnderTest(None, convnet(tmp_path / "net.onnx", channels=4, layers=1, size=8), tmp_path / "e.plan",
                          tmp_path)
    verdict = check_engine(ctx, job, eut, log, keeper)
    assert verdict.validation["passed"] is None
    assert verdict.validation["skipped"].startswith("input: int8/fp8 at the engine's boundary")
    assert [c["shapes"]["input"] for c in verdict.validation["cases"]] == [[2, 3, 8, 8], [1, 3, 8, 8]]
    assert [command for command, _ in calls] == ["bench"]  # no run: nothing to compare
    assert (tmp_path / "in0.npz").exists() and verdict.latency["p50"] == 1.0
