"""Run one build: claim, fetch inputs, run the toolchain, validate, benchmark, store, complete.

The engine blob is written before any row points at it, and the build completes `WHERE attempt = mine`,
so whatever the redeliveries there is at most one engine per key.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from registry.db.tables import Build, Engine, Model
from registry.errors import InvalidInput
from registry.planheader import NotAPlan, read_plan_file_header
from registry.services import builds
from registry.services.models import model_files
from registry.spec import BuildSpec, parse_spec, shape_text
from workers import runner, timing_sync, validation
from workers.context import WorkerContext
from workers.runner import BuildLog, Cancelled, RunnerFailed

ENGINE_SUFFIX = {"tensorrt": ".plan", "onnxruntime": ".ort"}


class LeaseKeeper:
    """Renews the lease while a build runs; publishes progress and the log tail; notices cancellation."""

    def __init__(self, ctx: WorkerContext, claim: builds.Claim, log: BuildLog) -> None:
        self.ctx, self.claim, self.log = ctx, claim, log
        self.progress = "starting"
        self.state = "ok"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def step(self, progress: str) -> None:
        self.progress = progress
        self.log.section(progress)
        self.renew()
        if self.state != "ok":
            raise Cancelled()

    def renew(self) -> None:
        self.state = builds.renew(self.ctx.db, self.claim, self.ctx.settings.lease_s,
                                  progress=self.progress, log_tail=self.log.tail_text())

    def should_stop(self) -> bool:
        return self.state != "ok"

    def _loop(self) -> None:
        interval = max(1.0, min(5.0, self.ctx.settings.lease_s / 4))
        while not self._stop.wait(interval):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the build
                self.log.write(f"lease renewal failed: {exc}")


def execute_build(ctx: WorkerContext, build_id: str) -> str:
    claim = builds.claim(ctx.db, build_id, ctx.name, ctx.settings.lease_s)
    if claim is None:
        return "not claimable"  # done, cancelled, or owned by a live lease: ack the message
    row, model = builds.load_for_worker(ctx.db, build_id)
    with tempfile.TemporaryDirectory(prefix=f"trtfarm-{build_id[:8]}-") as tmp:
        log = BuildLog(Path(tmp) / "build.log")
        log.section(f"build {build_id} attempt {claim.attempt} on {ctx.name}: {row.target}")
        with LeaseKeeper(ctx, claim, log) as keeper:
            return _attempt(ctx, claim, row, model, Path(tmp), log, keeper)


def _attempt(ctx: WorkerContext, claim: builds.Claim, row: Build, model: Model, tmp: Path, log: BuildLog,
             keeper: LeaseKeeper) -> str:
    try:
        engine, extras = _run(ctx, row, model, tmp, log, keeper)
    except Cancelled:
        status, kwargs = "cancelled", {"error_code": "cancelled", "error_message": "cancelled while running"}
    except RunnerFailed as exc:
        status, kwargs = "failed", {"error_code": exc.code, "error_message": str(exc)}
    except InvalidInput as exc:  # the model or spec cannot be validated as asked: the same on every retry
        log.write(f"{exc.code}: {exc}")
        status, kwargs = "failed", {"error_code": exc.code, "error_message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - anything else is this worker's trouble: let another try
        log.write(f"internal error: {exc.__class__.__name__}: {exc}")
        status, kwargs = "failed", {"error_code": "worker_error", "error_message": f"{exc.__class__.__name__}: {exc}",
                                    "retry": True}
    else:
        status, kwargs = "succeeded", {"engine": engine, **extras}
    log.section(f"{status}")
    kwargs["log_digest"] = ctx.blobs.put_file(log.path).digest
    kwargs["log_tail"] = log.tail_text()
    owned = builds.finish(ctx.db, claim, status, **kwargs)
    return status if owned else "lease lost"


def _run(ctx: WorkerContext, row: Build, model: Model, tmp: Path, log: BuildLog,
         keeper: LeaseKeeper) -> tuple[Engine, dict[str, Any]]:
    toolchain = ctx.toolchain(row.toolchain, row.version)
    timings: dict[str, float] = {}
    keeper.step("downloading model")
    model_path = _download_model(ctx, model, tmp / "model")
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(row.spec))
    cache = timing_sync.before_build(ctx, row, toolchain, tmp, log) if row.toolchain == "tensorrt" else None
    keeper.step("building")
    engine_path = tmp / f"engine{ENGINE_SUFFIX[row.toolchain]}"
    args = ["--model", str(model_path), "--spec", str(spec_path), "--out", str(engine_path), *(cache.args if cache else [])]
    started = time.monotonic()
    built = runner.run(toolchain, "build", args, workdir=tmp, log=log, timeout=ctx.settings.build_timeout_s,
                       env=ctx.runner_env(), should_stop=keeper.should_stop)
    timings["build_s"] = round(time.monotonic() - started, 3)
    meta = built["metadata"]
    keeper.step("validating")
    checked = _validate(ctx, toolchain, row, model_path, engine_path, tmp, log, keeper)
    timings.update(checked.pop("timings"))
    keeper.step("storing engine")
    blob = ctx.blobs.put_file(engine_path)
    cache_record = timing_sync.after_build(ctx, row, toolchain, cache, meta, tmp, log) if cache else None
    return _engine_row(ctx, row, toolchain, meta, blob, checked, engine_path), {
        "timings": timings, "timing_cache": cache_record}


def _download_model(ctx: WorkerContext, model: Model, folder: Path) -> Path:
    with ctx.db.session() as s:
        files = model_files(s, model.id)
    for f in files:
        dest = folder / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        ctx.blobs.get_to_file(f.digest, dest)
    return folder / next(f.path for f in files if f.is_model)


def _validate(ctx: WorkerContext, toolchain: runner.Toolchain, row: Build, model_path: Path, engine_path: Path,
              tmp: Path, log: BuildLog, keeper: LeaseKeeper) -> dict[str, Any]:
    """Engine vs the original model (ONNX Runtime, same random inputs) at every profile's shapes;
    then latency at the first profile's opt shape."""
    spec = parse_spec(row.spec)
    inputs = validation.input_specs(model_path)
    shape_sets = validation.validation_shapes(inputs, spec)
    results, started, usable = [], time.monotonic(), []
    for k, shapes in enumerate(shape_sets):
        feeds = validation.random_inputs(inputs, shapes, seed=ctx.settings.validation_seed + k)
        in_path, out_path = tmp / f"in{k}.npz", tmp / f"out{k}.npz"
        np.savez(in_path, **feeds)
        args = ["--engine", str(engine_path), "--inputs", str(in_path), "--outputs", str(out_path),
                "--profile", str(_profile_index(spec, shapes))]
        where = {"shapes": {n: list(s) for n, s in shapes.items()}}
        try:
            runner.run(toolchain, "run", args, workdir=tmp, log=log, timeout=600, env=ctx.runner_env(),
                       should_stop=keeper.should_stop)
        except RunnerFailed as exc:
            why = _reference_failure(model_path, feeds) if exc.code in ("invalid_input", "run_error") else None
            if why is None:
                raise  # the original model runs on these inputs: the engine's failure is real
            results.append(_skipped(log, shapes, where, f"the original model fails on these random inputs too ({why})"))
            continue
        try:
            reference = validation.reference_outputs(model_path, feeds)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own exception types
            results.append(_skipped(log, shapes, where, f"the original model fails on these random inputs ({_short(exc)})"))
            continue
        with np.load(out_path) as produced:
            result = validation.compare(reference, dict(produced), validation.allowed_precisions(spec, row.toolchain)).to_dict()
        log.write(f"validation at {_shapes_text(shapes)}: passed={result['passed']} "
                  f"max_abs={_num(result['max_abs_error'])} max_rel={_num(result['max_rel_error'])}")
        results.append({**where, **result})
        usable.append(k)
    timings = {"validate_s": round(time.monotonic() - started, 3)}
    if not usable:  # random inputs are no valid input for this model (e.g. a shape tensor): nothing to time
        log.write("benchmark skipped: no validation input set that the original model accepts")
        return {"validation": _summary(results), "latency": {"p50": None, "p99": None}, "timings": timings}
    keeper.step("benchmarking")
    bench = runner.run(toolchain, "bench", ["--engine", str(engine_path), "--inputs", str(tmp / f"in{usable[0]}.npz"),
                                            "--iterations", str(ctx.settings.bench_iterations)],
                       workdir=tmp, log=log, timeout=600, env=ctx.runner_env(), should_stop=keeper.should_stop)
    return {"validation": _summary(results), "latency": bench["latency_ms"], "timings": timings}


def _reference_failure(model_path: Path, feeds: dict) -> str | None:
    """Why the ORIGINAL model fails on `feeds` (None when it runs): random values are not valid input for
    every model (a shape tensor for Expand, split sizes that must add up), and then validation can only
    say so, not blame the engine."""
    try:
        validation.reference_outputs(model_path, feeds)
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


def _profile_index(spec: BuildSpec, shapes: dict) -> int:
    """The first optimization profile that holds every shape of the set (0 without profiles)."""
    for k, profile in enumerate(spec.profiles):
        if all(rng.contains(tuple(shapes[name])) for name, rng in profile.items() if name in shapes):
            return k
    return 0


def _summary(results: list[dict]) -> dict[str, Any]:
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


def _engine_row(ctx: WorkerContext, row: Build, toolchain: runner.Toolchain, meta: dict, blob: Any,
                checked: dict, engine_path: Path) -> Engine:
    gpu = ctx.gpus[0] if ctx.gpus and row.toolchain == "tensorrt" else {}
    return Engine(
        id=uuid.uuid4().hex, build_id=row.id, build_key=row.key, model_id=row.model_id, toolchain=row.toolchain,
        version=_artifact_version(row, meta, engine_path), device=row.device, sku=gpu.get("sku"), cc=gpu.get("cc"),
        hardware_compatibility=row.spec.get("hardware_compatibility", "none"),
        version_compatible=bool(row.spec.get("version_compatible")),
        exclude_lean_runtime=bool(row.spec.get("exclude_lean_runtime")),
        refittable=bool(meta.get("refittable", False)), spec=row.spec, spec_family=row.spec_family,
        digest=blob.digest, size=blob.size, filename=_filename(row, engine_path), meta=meta,
        validation=checked["validation"], validation_passed=checked["validation"]["passed"],
        latency_p50_ms=checked["latency"]["p50"], latency_p99_ms=checked["latency"]["p99"],
        build_seconds=meta.get("build_seconds"),
    )


def _artifact_version(row: Build, meta: dict, engine_path: Path) -> str:
    """The toolchain version read from the artifact itself (the plan header for TensorRT)."""
    if row.toolchain != "tensorrt":
        return meta.get("version", row.version)
    try:
        return read_plan_file_header(engine_path).version
    except NotAPlan:
        return meta.get("version", row.version)


def _filename(row: Build, engine_path: Path) -> str:
    return f"{row.model_id.removeprefix('sha256:')[:12]}-{row.toolchain}-{row.version}-{row.device}{engine_path.suffix}"


