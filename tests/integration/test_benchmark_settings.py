"""A spec's `bench` settings through a real farm: iterations and warm-up as asked, a time budget that ends
a long benchmark early (never below 3 runs), benchmarking off, the spread and the device recorded on the
engine, and none of it in the build key."""

from __future__ import annotations

from pathlib import Path

from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet


def test_bench_settings_are_honoured_recorded_and_outside_the_key(farm: RunningFarm, ort_runtime: str,
                                                                   tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "b.onnx", channels=4, layers=1, seed=41))
    spec = {**batch_profile(), "bench": {"iterations": 7, "warmup": 0}}
    built = sdk.submit(model.id, ort_runtime, spec, wait=True)
    engine = sdk.engine(built.engine_id)
    bench = engine.metadata["benchmark"]
    assert bench["latency_ms"]["iterations"] == 7 and bench["stopped_by"] == "iterations" and bench["warmup"] == 0
    assert set(bench["latency_ms"]) >= {"p50", "p90", "p99", "mean", "min", "max"}
    assert bench["latency_ms"]["min"] <= bench["latency_ms"]["p50"] <= bench["latency_ms"]["p90"] \
        <= bench["latency_ms"]["p99"] <= bench["latency_ms"]["max"]
    assert bench["device"]  # the CPU (or GPU) it ran on, by name
    assert engine.latency_p50_ms == bench["latency_ms"]["p50"]
    assert "benchmark: p50" in sdk.log(built.id) and "over 7 runs (stopped by iterations)" in sdk.log(built.id)

    again = sdk.submit(model.id, ort_runtime, {**batch_profile(), "bench": {"enabled": False}}, wait=False)
    assert again.id == built.id  # the measurement is not the recipe: same key, same build

    off = sdk.submit(model.id, ort_runtime, {**batch_profile(hi=5), "bench": {"enabled": False}}, wait=True)
    quiet = sdk.engine(off.engine_id)
    assert quiet.latency_p50_ms is None and quiet.metadata["benchmark"] is None
    assert quiet.validation_passed is True and "benchmark off (spec.bench.enabled is false)" in sdk.log(off.id)
    assert "benchmarking" not in off.timings and "bench_s" not in off.timings


def test_a_time_budget_ends_a_long_benchmark(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "t.onnx", channels=8, layers=2, seed=42))
    spec = {**batch_profile(), "bench": {"iterations": 1_000_000, "max_seconds": 0.5}}
    built = sdk.submit(model.id, ort_runtime, spec, wait=True)
    bench = sdk.engine(built.engine_id).metadata["benchmark"]
    assert bench["stopped_by"] == "time" and 3 <= bench["latency_ms"]["iterations"] < 1_000_000
    assert built.timings["bench_s"] < 30
