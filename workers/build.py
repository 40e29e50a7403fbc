"""Run one build: claim, fetch inputs, run the toolchain, verify, store, complete.

The engine blob is written before any row points at it, and the build completes `WHERE attempt = mine`
(registry.services.attempts), so whatever the redeliveries there is at most one engine per key.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from registry import events, onnxinfo
from registry.atomic import writer_tag
from registry.db.session import retry_transient
from registry.errors import BuildCancelled, InvalidInput, NotAPlan, RunnerFailed
from registry.keys import spec_canonical
from registry.planheader import read_plan_file_header
from registry.services import attempts
from registry.services.attempts import BuildJob, Claim, EngineRecord, Outcome
from registry.status import BuildStatus
from workers import calibration, plugins, timing_sync
from workers.context import WorkerContext
from workers.launcher import BuildLog
from workers.lease import LeaseKeeper
from workers.sanitize import sanitize_file
from workers.verify import EngineUnderTest, Verdict, check_engine, reference_for

ENGINE_SUFFIX = {"tensorrt": ".plan", "onnxruntime": ".ort"}
BUILD_DIR_PREFIX = "trtfarm-build-"  # the worker sweeps old ones a killed worker left (workers/worker.py)


def execute_build(ctx: WorkerContext, build_id: str) -> str:
    """Claim and run one build. Transient database errors around the claim and the finish are retried:
    they must not spend one of the build's attempts."""
    claim = retry_transient(lambda: attempts.claim(ctx.db, build_id, ctx.name, ctx.settings.lease_s),
                            what=f"claim {build_id}")
    if claim is None:
        return "not claimable"  # done, cancelled, or owned by a live lease: ack the message
    events.event(build_id, "claimed", worker=ctx.name, attempt=claim.attempt)
    job = retry_transient(lambda: attempts.job(ctx.db, build_id), what=f"load {build_id}")
    with tempfile.TemporaryDirectory(prefix=f"{BUILD_DIR_PREFIX}{writer_tag()}{build_id[:8]}-") as tmp:
        log = BuildLog(Path(tmp) / "build.log")
        log.section(f"build {build_id} attempt {claim.attempt} on {ctx.name}: {job.target}")
        with LeaseKeeper(ctx, claim, log) as keeper:
            return _attempt(ctx, claim, job, Path(tmp), log, keeper)


def _attempt(ctx: WorkerContext, claim: Claim, job: BuildJob, tmp: Path, log: BuildLog, keeper: LeaseKeeper) -> str:
    warnings: list[dict[str, str]] = []  # known before the end (what sanitizing did): kept if the build fails
    try:
        outcome = _run(ctx, job, tmp, log, keeper, warnings)
    except BuildCancelled:
        outcome = Outcome(BuildStatus.CANCELLED, "cancelled", "cancelled while running")
    except RunnerFailed as exc:
        outcome = Outcome(BuildStatus.FAILED, exc.runner_code, str(exc))
    except InvalidInput as exc:  # the model or spec cannot be validated as asked: the same on every retry
        log.write(f"{exc.code}: {exc}")
        outcome = Outcome(BuildStatus.FAILED, exc.code, str(exc))
    except Exception as exc:  # noqa: BLE001 - anything else is this worker's trouble: let another try
        log.write(f"internal error: {exc.__class__.__name__}: {exc}")
        outcome = Outcome(BuildStatus.FAILED, "worker_error", f"{exc.__class__.__name__}: {exc}", retry=True)
    if outcome.status != BuildStatus.SUCCEEDED and warnings:
        outcome = dataclasses.replace(outcome, warnings=tuple(warnings))
    log.section(str(outcome.status))
    outcome = dataclasses.replace(outcome, log_digest=ctx.blobs.put_file(log.path).digest, log_tail=log.tail_text(),
                                  log_lines=tuple(log.take_new()))
    owned = retry_transient(lambda: attempts.finish(ctx.db, claim, outcome), what=f"finish {claim.build_id}")
    events.event(claim.build_id, "finished" if owned else "dropped", status=outcome.status, worker=ctx.name,
                 attempt=claim.attempt, seconds=round(time.monotonic() - keeper.started, 3),
                 error=outcome.error_code, retry=outcome.retry or None)
    return str(outcome.status) if owned else "lease lost"


# the build's recorded timings: seconds per stage of LeaseKeeper.step
STAGE_TIMINGS = {"downloading model": "download_s", "sanitizing": "sanitize_s", "building": "build_s",
                 "validating": "validate_s", "benchmarking": "bench_s", "storing engine": "store_s"}


def _run(ctx: WorkerContext, job: BuildJob, tmp: Path, log: BuildLog, keeper: LeaseKeeper,
         warnings: list[dict[str, str]]) -> Outcome:
    toolchain = ctx.toolchain(job.toolchain, job.version)
    keeper.step("downloading model")
    original = model_path = _without_initializer_inputs(_download_model(ctx, job, tmp / "model"), log)
    notes = None
    if job.spec.sanitize is not None:
        keeper.step("sanitizing")
        model_path, notes = _sanitized(job, original, log, warnings)
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec_canonical(job.spec)))
    cache = timing_sync.before_build(ctx, job, toolchain, tmp, log) if job.toolchain == "tensorrt" else None
    calib = calibration.before_build(ctx, job, tmp, log)
    libs = plugins.before_build(ctx, job, tmp, log)  # this worker's allow-list decides (workers/plugins.py)
    keeper.step("building")
    engine_path = tmp / f"engine{ENGINE_SUFFIX[job.toolchain]}"
    args = ["--model", str(model_path), "--spec", str(spec_path), "--out", str(engine_path),
            *(cache.args if cache else []), *calib.args, *libs.args]
    built = ctx.runners.run(toolchain, "build", args, workdir=tmp, log=log, timeout=ctx.settings.build_timeout_s,
                            should_stop=keeper.should_stop)
    meta = {**built["metadata"], "plugins": list(libs.digests)} if libs.digests else built["metadata"]
    keeper.step("validating")
    eut = EngineUnderTest(toolchain, model_path, engine_path, tmp, calibration_data=calib.data_path,
                          plugin_args=tuple(libs.args))
    if notes is not None:
        eut, which = reference_for(eut, original, job.spec.sanitize.shape_values, log)
        meta = {**meta, "sanitize": {"steps": job.spec.sanitize.model_dump(mode="json"), "notes": notes,
                                     "validation_reference": which}}
    verdict = check_engine(ctx, job, eut, log, keeper)
    keeper.step("storing engine")
    blob = ctx.blobs.put_file(engine_path)
    cache_record = timing_sync.after_build(ctx, toolchain, cache, meta, tmp, log) if cache else None
    made = calibration.after_build(ctx, job, calib, meta, log)
    engine = dataclasses.replace(_engine_record(ctx, job, meta, blob, verdict, engine_path), calibration=made)
    keeper.lap()
    timings = {key: keeper.seconds[stage] for stage, key in STAGE_TIMINGS.items() if stage in keeper.seconds}
    size = _size_warning(job, blob.size)
    if size:
        log.write(f"warning {size['code']}: {size['message']}")
    return Outcome(BuildStatus.SUCCEEDED, engine=engine, timings=timings, timing_cache=cache_record,
                   warnings=(*warnings, *([size] if size else [])))


NOTES_MESSAGE_CHARS = 2000  # the build warning's share of the notes (the build log and the engine have them all)


def _sanitized(job: BuildJob, model_path: Path, log: BuildLog, warnings: list) -> tuple[Path, list[str]]:
    """spec.sanitize's steps on the model (workers/sanitize.py), written beside it (its external data stays
    where it is referenced); what was done goes to the log and, as a `sanitized` warning, to the build."""
    steps = job.spec.sanitize.model_dump(mode="json")
    dest = model_path.with_name(f".sanitized-{model_path.name}")
    log.write("sanitizing the model: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in steps.items()))
    notes = sanitize_file(model_path, dest, steps)
    for note in notes:
        log.write(f"sanitize: {note}")
    if not notes:
        log.write("sanitize: nothing to change")
        return dest, notes
    text = "; ".join(notes)
    if len(text) > NOTES_MESSAGE_CHARS:
        text = text[:NOTES_MESSAGE_CHARS].rsplit("; ", 1)[0] + f"; … ({len(notes)} notes in all: see the build log)"
    warnings.append({"code": "sanitized", "message": f"built from the sanitized model: {text}"})
    return dest, notes


# an engine this many times the model's size, and this much larger, gets a warning (the floor keeps a format's
# fixed overhead on a tiny model quiet)
GROWTH_WARNING, GROWTH_FLOOR = 10, 1 << 20


def _size_warning(job: BuildJob, engine_size: int) -> dict[str, str] | None:
    model_size = sum(f.size for f in job.model_files)
    if not model_size or engine_size <= GROWTH_WARNING * model_size or engine_size - model_size < GROWTH_FLOOR:
        return None
    hint = ("the optimizer's constant folding stored expanded tensors; --ort-level disable keeps them computed "
            "at run time" if job.toolchain == "onnxruntime" else "check the precision and the profiles' max shapes")
    return {"code": "engine_size", "message": f"the engine is {engine_size / model_size:.0f}x the model "
                                              f"({_size_text(engine_size)} from {_size_text(model_size)}): {hint}"}


def _size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _download_model(ctx: WorkerContext, job: BuildJob, folder: Path) -> Path:
    for f in job.model_files:
        dest = folder / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        ctx.blobs.get_to_file(f.sha256, dest)
    return folder / job.model_files[0].path


def _without_initializer_inputs(model_path: Path, log: BuildLog) -> Path:
    """The model to build from: a copy without graph inputs that have an initializer, if it has any."""
    dest = model_path.with_name(f".inputs-{model_path.name}")
    names = onnxinfo.without_initializer_inputs(model_path, dest)
    if not names:
        return model_path
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    log.write(f"the model lists {len(names)} initializer(s) among its graph inputs ({shown}; the IR 3 form): "
              "building from a copy without them (as inputs they are optional, their values are the weights)")
    return dest


def _engine_record(ctx: WorkerContext, job: BuildJob, meta: dict, blob: Any, verdict: Verdict,
                   engine_path: Path) -> EngineRecord:
    gpu = ctx.gpus[0] if ctx.gpus and job.toolchain == "tensorrt" else {}
    return EngineRecord(
        version=_artifact_version(job, meta, engine_path), digest=blob.digest, size=blob.size,
        filename=_filename(job, engine_path), metadata={**meta, "benchmark": verdict.benchmark},
        sku=gpu.get("sku"), cc=gpu.get("cc"),
        refittable=bool(meta.get("refittable", False)), validation=verdict.validation,
        latency_p50_ms=verdict.latency["p50"], latency_p99_ms=verdict.latency["p99"],
        build_seconds=meta.get("build_seconds"),
    )


def _artifact_version(job: BuildJob, meta: dict, engine_path: Path) -> str:
    """The toolchain version read from the artifact itself (the plan header for TensorRT)."""
    if job.toolchain != "tensorrt":
        return meta.get("version", job.version)
    try:
        return read_plan_file_header(engine_path).version
    except NotAPlan:
        return meta.get("version", job.version)


def _filename(job: BuildJob, engine_path: Path) -> str:
    return f"{job.model_id.removeprefix('sha256:')[:12]}-{job.toolchain}-{job.version}-{job.device}{engine_path.suffix}"
