"""Check a built engine before it is stored: its outputs against the original model (ONNX Runtime on
the CPU, same random inputs) at every profile's shapes, then its latency at the first usable shape set.
The numbers and rules live in `workers/validation.py`; this module drives the runner through them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from registry.errors import RunnerFailed
from registry.services.attempts import BuildJob
from registry.spec import BuildSpec, shape_text
from workers import calibsamples, launcher, validation
from workers.context import WorkerContext
from workers.launcher import BuildLog
from workers.lease import LeaseKeeper

RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Verdict:
    validation: dict[str, Any]  # {"passed", "max_abs_error", "max_rel_error", "cases": [...]}
    benchmark: dict[str, Any] | None  # the runner's bench result: latency_ms, stopped_by, warmup, device

    @property
    def latency(self) -> dict[str, Any]:
        return (self.benchmark or {}).get("latency_ms") or {"p50": None, "p99": None}


@dataclass(frozen=True)
class EngineUnderTest:
    toolchain: launcher.Toolchain
    model_path: Path  # what the engine was built from: its inputs are the engine's
    engine_path: Path
    workdir: Path
    reference_path: Path | None = None  # the model ONNX Runtime runs for the reference (None: model_path)
    reference_feeds: Mapping[str, Any] = field(default_factory=dict)  # its inputs sanitizing made constants
    calibration_data: Path | None = None  # an INT8 calibration data set: validation inputs come from it
    quantized: bool = False  # the model has Q/DQ nodes (validation.allowed_precisions)
    plugin_args: tuple[str, ...] = ()  # `--plugin PATH` per plugin library (workers/plugins.py), on every run

    @property
    def reference(self) -> Path:
        return self.reference_path or self.model_path


def reference_for(eut: EngineUnderTest, original: Path, shape_values: Mapping[str, Sequence[int]],
                  log: BuildLog) -> tuple[EngineUnderTest, str]:
    """The engine of a sanitized model is checked against ONNX Runtime running the ORIGINAL model (given the
    shape_values as its inputs), or the sanitized one when ONNX Runtime cannot load the original (an opset
    it lacks kernels for). Returns the engine under test with its reference, and which it is."""
    why = validation.unloadable(original)
    if why is None:
        feeds = validation.constant_feeds(original, shape_values)
        log.write("validation reference: ONNX Runtime running the original model"
                  + (f" (inputs {', '.join(feeds)} given their shape_values)" if feeds else ""))
        return dataclasses.replace(eut, reference_path=original, reference_feeds=feeds), "original"
    log.write(f"validation reference: ONNX Runtime running the sanitized model (it cannot load the original: {why})")
    return dataclasses.replace(eut, reference_path=eut.model_path), "sanitized"


def check_engine(ctx: WorkerContext, job: BuildJob, eut: EngineUnderTest, log: BuildLog,
                 keeper: LeaseKeeper) -> Verdict:
    inputs = validation.input_specs(eut.model_path)
    eut = dataclasses.replace(eut, quantized=calibsamples.explicitly_quantized(eut.model_path))
    samples = calibsamples.load_samples(eut.calibration_data, inputs, log.write)
    plugin_ops = validation.plugin_ops(eut.model_path)  # no reference: the engine runs, unchecked
    results, usable = [], []
    for k, shapes in enumerate(validation.validation_shapes(inputs, job.spec)):
        feeds = (calibsamples.sample_inputs(samples, inputs, shapes)
                 or validation.random_inputs(inputs, shapes, seed=ctx.settings.validation_seed + k))
        feeds, unreadable = validation.io_feeds(feeds, job.spec)  # the engine's I/O types (spec.io_formats)
        if unreadable:
            result = _unreadable_io(eut, k, shapes, feeds, log, unreadable)
        elif plugin_ops:
            result = _run_unchecked(ctx, job, eut, k, shapes, feeds, log, keeper, plugin_ops)
        else:
            result = _check_shapes(ctx, job, eut, k, shapes, feeds, log, keeper)
        results.append(result)
        if result["passed"] is not None or unreadable or plugin_ops:  # not checkable, still timed
            usable.append(k)
    if not usable:  # random inputs are no valid input for this model (e.g. a shape tensor): nothing to time
        log.write("benchmark skipped: no validation input set that the original model accepts")
        return Verdict(summary(results), None)
    bench = job.spec.bench
    if not bench.enabled:
        log.write("benchmark off (spec.bench.enabled is false)")
        return Verdict(summary(results), None)
    keeper.step("benchmarking")
    settings = ctx.settings
    args = ["--engine", str(eut.engine_path), "--inputs", str(eut.workdir / f"in{usable[0]}.npz"),
            "--iterations", str(bench.iterations or settings.bench_iterations),
            "--warmup", str(bench.warmup if bench.warmup is not None else settings.bench_warmup),
            "--max-seconds", str(bench.max_seconds or settings.bench_max_s),
            "--profile", str(profile_index(job.spec, validation_shapes_of(results[usable[0]]))), *eut.plugin_args]
    measured = ctx.runners.run(eut.toolchain, "bench", args, workdir=eut.workdir, log=log, timeout=RUN_TIMEOUT_S,
                               should_stop=keeper.should_stop)
    latency = measured["latency_ms"]
    log.write(f"benchmark: p50 {latency['p50']} ms, p90 {latency.get('p90')} ms, p99 {latency['p99']} ms over "
              f"{latency['iterations']} runs (stopped by {measured.get('stopped_by', 'iterations')}) "
              f"on {measured.get('device', 'unknown')}")
    return Verdict(summary(results), {k: measured[k] for k in BENCH_FIELDS if k in measured})


BENCH_FIELDS = ("latency_ms", "wall_ms", "stopped_by", "warmup", "device")


def validation_shapes_of(result: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(shape) for name, shape in result["shapes"].items()}


def _check_shapes(ctx: WorkerContext, job: BuildJob, eut: EngineUnderTest, k: int, shapes: dict,
                  feeds: dict, log: BuildLog, keeper: LeaseKeeper) -> dict[str, Any]:
    """Run the engine on one input set and compare it with the original model's outputs."""
    in_path, out_path = eut.workdir / f"in{k}.npz", eut.workdir / f"out{k}.npz"
    np.savez(in_path, **feeds)
    args = ["--engine", str(eut.engine_path), "--inputs", str(in_path), "--outputs", str(out_path),
            "--profile", str(profile_index(job.spec, shapes)), *eut.plugin_args]
    where = {"shapes": {n: list(s) for n, s in shapes.items()}}
    try:
        ctx.runners.run(eut.toolchain, "run", args, workdir=eut.workdir, log=log, timeout=RUN_TIMEOUT_S,
                        should_stop=keeper.should_stop)
    except RunnerFailed as exc:
        why = _reference_failure(eut, feeds) if exc.runner_code in ("invalid_input", "run_error") else None
        if why is None:
            raise  # the original model runs on these inputs: the engine's failure is real
        return _skipped(log, shapes, where, f"the original model fails on these random inputs too ({why})")
    try:
        reference = validation.reference_outputs(eut.reference, {**feeds, **eut.reference_feeds})
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own exception types
        return _skipped(log, shapes, where, f"the original model fails on these random inputs ({_short(exc)})")
    with np.load(out_path) as produced:
        precisions = validation.allowed_precisions(job.spec, job.toolchain, quantized=eut.quantized)
        result = validation.compare(reference, dict(produced), precisions).to_dict()
    log.write(f"validation at {_shapes_text(shapes)}: passed={result['passed']} "
              f"max_abs={_num(result['max_abs_error'])} max_rel={_num(result['max_rel_error'])}")
    return {**where, **result}


def _run_unchecked(ctx: WorkerContext, job: BuildJob, eut: EngineUnderTest, k: int, shapes: dict, feeds: dict,
                   log: BuildLog, keeper: LeaseKeeper, plugin_ops: list[str]) -> dict[str, Any]:
    """An input set of an engine whose model has TensorRT plugin ops: no ONNX Runtime reference, so the engine is
    run (it must deserialize and execute with its plugins; a failure fails the build) and its outputs are not
    compared; the input set is skipped, its inputs kept for the benchmark."""
    in_path, out_path = eut.workdir / f"in{k}.npz", eut.workdir / f"out{k}.npz"
    np.savez(in_path, **feeds)
    ctx.runners.run(eut.toolchain, "run", ["--engine", str(eut.engine_path), "--inputs", str(in_path), "--outputs",
                                           str(out_path), "--profile", str(profile_index(job.spec, shapes)),
                                           *eut.plugin_args],
                    workdir=eut.workdir, log=log, timeout=RUN_TIMEOUT_S, should_stop=keeper.should_stop)
    log.write(f"validation at {_shapes_text(shapes)}: the engine ran; no reference to compare its outputs with")
    reason = validation.PLUGIN_SKIP.format(ops=", ".join(plugin_ops))
    return _skipped(log, shapes, {"shapes": {n: list(s) for n, s in shapes.items()}}, reason)


def _unreadable_io(eut: EngineUnderTest, k: int, shapes: dict, feeds: dict, log: BuildLog,
                   reason: str) -> dict[str, Any]:
    """An input set of an engine whose I/O values cannot be made or read (validation.io_feeds): skipped, its
    inputs still written for the benchmark."""
    np.savez(eut.workdir / f"in{k}.npz", **feeds)
    return _skipped(log, shapes, {"shapes": {n: list(s) for n, s in shapes.items()}}, reason)


def _reference_failure(eut: EngineUnderTest, feeds: dict) -> str | None:
    """Why the ORIGINAL model fails on `feeds` (None when it runs): random values are not valid input for
    every model (a shape tensor for Expand, split sizes that must add up), and then validation can only
    say so, not blame the engine."""
    try:
        validation.reference_outputs(eut.reference, {**feeds, **eut.reference_feeds})
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own exception types
        return _short(exc)
    return None


def _skipped(log: BuildLog, shapes: dict, where: dict, reason: str) -> dict[str, Any]:
    log.write(f"validation at {_shapes_text(shapes)}: skipped: {reason}")
    return {**where, "passed": None, "skipped": reason, "max_abs_error": None, "max_rel_error": None}


def _short(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _shapes_text(shapes: dict) -> str:
    return ", ".join(f"{n}={shape_text(s)}" for n, s in shapes.items())


def profile_index(spec: BuildSpec, shapes: dict) -> int:
    """The first optimization profile that holds every shape of the set (0 without profiles)."""
    for k, profile in enumerate(spec.profiles):
        if all(rng.contains(tuple(shapes[name])) for name, rng in profile.items() if name in shapes):
            return k
    return 0


def summary(results: list[dict]) -> dict[str, Any]:
    """passed: True/False over the input sets that could be checked; None when none could (all skipped)."""
    checked = [r for r in results if r["passed"] is not None]
    summary = {
        "passed": all(r["passed"] for r in checked) if checked else None,
        "max_abs_error": max((r["max_abs_error"] for r in checked if r["max_abs_error"] is not None), default=0.0),
        "max_rel_error": max((r["max_rel_error"] for r in checked if r["max_rel_error"] is not None), default=0.0),
        "cases": results,
    }
    if not checked:
        summary["skipped"] = "; ".join(sorted({r["skipped"] for r in results if r.get("skipped")}))
    return summary
