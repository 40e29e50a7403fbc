"""The worker's side of a build: claim an attempt under a lease, renew it, finish it.

Every state change is one guarded UPDATE (`WHERE attempt = mine AND status = 'running'`), so
redeliveries, duplicate workers and expired leases cannot produce two engines. Workers get a `BuildJob`
(what to build) and hand back an `Outcome` (with an `EngineRecord` when it succeeded); only this module
turns them into rows.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from typing import Any

from sqlalchemy import select, update

from registry.db.session import Database
from registry.db.tables import Build, Engine, utcnow
from registry.digests import ModelFile
from registry.services import buildevents, calibration, outbox, shapes, signatures
from registry.services.builds import get_build
from registry.services.models import model_files
from registry.spec import BuildSpec, parse_spec
from registry.status import BuildStatus


@dataclass(frozen=True)
class Claim:
    build_id: str
    attempt: int
    worker: str


class Lease(str, Enum):
    """What renewing a lease found."""

    OK = "ok"
    CANCEL = "cancel"  # a cancel was requested: stop and finish `cancelled`
    LOST = "lost"  # another attempt owns the build now: drop the result


@dataclass(frozen=True)
class BuildJob:
    """What a worker needs to run one build."""

    build_id: str
    key: str
    model_id: str
    target: str
    toolchain: str
    version: str
    device: str
    spec: BuildSpec
    plugins: tuple[str, ...]
    calibration: str | None
    model_files: tuple[ModelFile, ...]  # the .onnx first, paths relative to the model's folder
    calibration_kind: str | None = None  # data or cache (registry.calibdata)


@dataclass(frozen=True)
class EngineRecord:
    """What a worker built, measured and stored (the blob is written before this is handed back)."""

    version: str  # the toolchain version read from the artifact itself
    digest: str
    size: int
    filename: str
    metadata: dict[str, Any]
    sku: str | None = None  # the GPU it was built on
    cc: str | None = None
    refittable: bool = False
    validation: dict[str, Any] | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    build_seconds: float | None = None
    calibration: calibration.MadeCache | None = None  # the cache its calibration made from a data set


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. `retry` puts a failed attempt back in the queue while attempts remain."""

    status: BuildStatus
    error_code: str | None = None
    error_message: str | None = None
    log_digest: str | None = None
    log_tail: str | None = None
    timings: dict[str, Any] | None = None
    timing_cache: dict[str, Any] | None = None
    engine: EngineRecord | None = None
    retry: bool = False
    warnings: tuple[dict[str, str], ...] = ()  # {"code", "message"}, added to the build's
    log_lines: tuple[str, ...] = ()  # the log's lines not yet sent to the build's event stream


def claim(db: Database, build_id: str, worker: str, lease_s: int) -> Claim | None:
    """queued (or running with an expired lease) -> running, attempt+1. None: nothing to do (ack)."""
    now = utcnow()
    with db.session() as s:
        row = s.get(Build, build_id)
        if row is None or row.cancel_requested or row.attempt >= row.max_attempts:
            return None
        seen = row.attempt  # read before the UPDATE, which also refreshes `row`
        claimable = (Build.status == BuildStatus.QUEUED) | (
            (Build.status == BuildStatus.RUNNING) & (Build.lease_until < now))
        won = s.execute(
            update(Build).where(Build.id == build_id, Build.attempt == seen, claimable)
            .values(status=BuildStatus.RUNNING, attempt=seen + 1, lease_until=now + timedelta(seconds=lease_s),
                    worker=worker, started_at=now, waiting_reason=None, progress="claimed")
        ).rowcount
        if won:
            buildevents.state(s, build_id)
        return Claim(build_id, seen + 1, worker) if won else None


def job(db: Database, build_id: str) -> BuildJob:
    with db.session() as s:
        row = get_build(s, build_id)
        files = tuple(ModelFile(f.path, f.digest, f.size) for f in model_files(s, row.model_id))
        return BuildJob(
            build_id=row.id, key=row.key, model_id=row.model_id, target=row.target, toolchain=row.toolchain,
            version=row.version, device=row.device, spec=parse_spec(row.spec), plugins=tuple(row.plugins or ()),
            calibration=row.calibration, model_files=files,
            calibration_kind=calibration.kind_of(s, row.calibration),
        )


def _mine(claim_: Claim) -> Any:
    return (Build.id == claim_.build_id) & (Build.attempt == claim_.attempt) & (Build.status == BuildStatus.RUNNING)


def renew(db: Database, claim_: Claim, lease_s: int, *, progress: str | None = None,
          log_tail: str | None = None, stage: tuple[str, float | None] | None = None,
          log_lines: list[str] | None = None) -> Lease:
    """Extend the lease, publishing progress and the log tail; with `stage` ((name, seconds of the previous
    stage): the stage just entered) and `log_lines` (new lines of the log), events of the build's stream."""
    values: dict[str, Any] = {"lease_until": utcnow() + timedelta(seconds=lease_s)}
    if progress is not None:
        values["progress"] = progress
    if log_tail is not None:
        values["log_tail"] = log_tail
    with db.session() as s:
        if not s.execute(update(Build).where(_mine(claim_)).values(**values)).rowcount:
            return Lease.LOST
        if log_lines:
            buildevents.log_lines(s, claim_.build_id, log_lines)
        if stage is not None:
            buildevents.stage(s, claim_.build_id, *stage)
        cancel = s.scalar(select(Build.cancel_requested).where(Build.id == claim_.build_id))
        return Lease.CANCEL if cancel else Lease.OK


def finish(db: Database, claim_: Claim, outcome: Outcome) -> bool:
    """Complete the build WHERE attempt = mine; its engine row is written in the same transaction.

    Returns False when this worker no longer owns the build (its result is dropped).
    """
    with db.session() as s:
        row = s.get(Build, claim_.build_id)
        failed = outcome.status == BuildStatus.FAILED
        requeue = outcome.retry and failed and row is not None and row.attempt < row.max_attempts
        if requeue and row.cancel_requested:  # nobody should run it again: the cancel wins
            requeue, outcome = False, dataclasses.replace(outcome, status=BuildStatus.CANCELLED, error_code="cancelled",
                                                          error_message="cancelled while running")
        values: dict[str, Any] = {
            "status": BuildStatus.QUEUED if requeue else outcome.status, "error_code": outcome.error_code,
            "error_message": outcome.error_message, "log_digest": outcome.log_digest, "lease_until": None,
            "finished_at": None if requeue else utcnow(), "progress": None if requeue else str(outcome.status),
        }
        for name in ("log_tail", "timings", "timing_cache"):
            if getattr(outcome, name) is not None:
                values[name] = getattr(outcome, name)
        if outcome.warnings and row is not None:  # a retried attempt says again what an earlier one said
            earlier = list(row.warnings or [])
            values["warnings"] = [*earlier, *(w for w in outcome.warnings if w not in earlier)]
        if not s.execute(update(Build).where(_mine(claim_)).values(**values)).rowcount:
            s.rollback()
            return False
        buildevents.log_lines(s, claim_.build_id, list(outcome.log_lines))
        if outcome.engine is not None:
            s.add(signatures.counted(s, _engine_row(row, outcome.engine)))
            if outcome.engine.calibration is not None:
                calibration.record_cache(s, row.id, row.model_id, outcome.engine.calibration)
        if requeue:
            outbox.enqueue(s, claim_.build_id, row.queue)
        buildevents.state(s, claim_.build_id)  # after the engine row: a succeeded build's state names it
    return True


def _engine_row(build: Build, engine: EngineRecord) -> Engine:
    spec = parse_spec(build.spec)
    validation = engine.validation or {}
    return Engine(
        id=uuid.uuid4().hex, build_id=build.id, build_key=build.key, model_id=build.model_id,
        toolchain=build.toolchain, version=engine.version, device=build.device, sku=engine.sku, cc=engine.cc,
        hardware_compatibility=_hardware_compatibility(build, spec, engine),
        version_compatible=spec.version_compatible,
        exclude_lean_runtime=spec.exclude_lean_runtime, refittable=engine.refittable, spec=build.spec,
        spec_family=build.spec_family, profile_width=shapes.profile_width(spec, build.toolchain),
        digest=engine.digest, size=engine.size, filename=engine.filename,
        meta=engine.metadata, validation=engine.validation, validation_passed=validation.get("passed"),
        latency_p50_ms=engine.latency_p50_ms, latency_p99_ms=engine.latency_p99_ms,
        build_seconds=engine.build_seconds,
    )


def _hardware_compatibility(build: Build, spec: BuildSpec, engine: EngineRecord) -> str:
    """The spec's level for TensorRT; for ONNX Runtime `any_isa` when the runner says the saved model holds no
    hardware-specific optimization (registry.compat: it loads on any CPU of the architecture), else none."""
    if build.toolchain != "onnxruntime":
        return spec.hardware_compatibility
    return "none" if engine.metadata.get("hardware_specific", True) else "any_isa"
