"""Builds: submit (dedup by key), claim with a lease, renew, complete guarded by attempt, cancel.

SQL holds the truth; the broker only carries "look at build X" messages. Every state change is one
guarded UPDATE, so redeliveries, duplicate workers and expired leases cannot produce two engines.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, Engine, Model, Outbox, utcnow
from registry.errors import BuildNotFound, BuildStateError, InvalidSpec, UnsupportedOption
from registry.keys import build_key, spec_canonical, spec_family
from registry.queues import build_queue
from registry.schemas import BuildInfo, BuildRequest, ErrorInfo
from registry.services import fleet
from registry.services.models import get_model
from registry.settings import Settings
from registry.spec import BuildSpec, parse_spec
from registry.targets import Target, parse_target

TERMINAL = ("succeeded", "failed", "cancelled")


def submit(db: Database, settings: Settings, request: BuildRequest) -> tuple[BuildInfo, bool]:
    """Create the build for the request's key, or return the existing one. Returns (info, created)."""
    spec = parse_spec(request.spec)
    with db.session() as s:
        model = get_model(s, request.model)
        workers = fleet.live_workers(s, settings.worker_live_s)
    offers = fleet.offers(workers)
    target, spec = fleet.complete_target(parse_target(request.target), spec, offers)
    check_spec(spec, target, model, offers)
    key = build_key(model=model.id, target=str(target), spec=spec,
                    plugins=tuple(request.plugins), calibration=request.calibration)
    queue = build_queue(target.kind, target.version or "", target.device or "")
    row = Build(
        id=uuid.uuid4().hex, key=key, model_id=model.id, toolchain=target.kind, version=target.version,
        device=target.device, target=str(target), queue=queue, spec=spec_canonical(spec),
        spec_family=spec_family(spec), plugins=sorted(request.plugins), calibration=request.calibration,
        status="queued", attempt=0, max_attempts=settings.max_attempts,
        waiting_reason=fleet.waiting_reason(queue, workers),
    )
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            s.add(Outbox(build_id=row.id, queue=queue))
    except IntegrityError:
        return _existing(db, key, workers), False
    with db.session() as s:
        return build_info(s, s.get(Build, row.id)), True


def _existing(db: Database, key: str, workers: list) -> BuildInfo:  # noqa: ANN001
    """The build already holding this key; a failed or cancelled one is queued again."""
    with db.session() as s:
        row = s.scalars(select(Build).where(Build.key == key)).one()
        requeued = s.execute(
            update(Build).where(Build.id == row.id, Build.status.in_(("failed", "cancelled")))
            .values(status="queued", attempt=0, error_code=None, error_message=None, cancel_requested=False,
                    finished_at=None, waiting_reason=fleet.waiting_reason(row.queue, workers))
        ).rowcount
        if requeued:
            s.add(Outbox(build_id=row.id, queue=row.queue))
    with db.session() as s:
        return build_info(s, s.get(Build, row.id))


def check_spec(spec: BuildSpec, target: Target, model: Model, offers: list[fleet.Offer]) -> None:
    """Reject, before queueing, what cannot build: wrong-toolchain options, profiles that don't fit."""
    if target.kind == "onnxruntime" and spec.uses_tensorrt_options():
        names = ", ".join(spec.uses_tensorrt_options())
        raise InvalidSpec(f"{names}: TensorRT options, but the target is {target}; "
                          "onnxruntime builds keep the model's precision. Drop them or target tensorrt")
    _check_profiles(spec, model)
    feats = [o.features for o in offers if o.kind == target.kind and o.version == target.version and o.features]
    if feats:
        missing = [f for f in fleet.unsupported_features(spec, feats[0])]
        if missing:
            raise UnsupportedOption(
                f"{', '.join(missing)}: not supported by {target.kind} {target.version} "
                f"(the fleet's toolchain reports: {', '.join(feats[0]) or 'no optional features'})",
                details={"unsupported": missing},
            )


def _check_profiles(spec: BuildSpec, model: Model) -> None:
    inputs = {i["name"]: i for i in model.inputs}
    dynamic = {n: i["shape"] for n, i in inputs.items() if any(not isinstance(d, int) or d <= 0 for d in i["shape"])}
    for k, profile in enumerate(spec.profiles):  # a misspelt name first: it is why the real input looks omitted
        unknown = [name for name in profile if name not in inputs]
        if unknown:
            raise InvalidSpec(f"spec.profiles.{k}: the model has no input {unknown[0]!r}; its inputs: {', '.join(inputs)}")
    for k, profile in enumerate(spec.profiles or [{}]):
        missing = sorted(set(dynamic) - set(profile))
        if missing:
            where = f"profile {k} omits" if spec.profiles else "the spec has no optimization profile for"
            shapes = "; ".join(f"{n} {dynamic[n]}" for n in missing)
            raise InvalidSpec(f"{where} dynamic input(s) {shapes}; give each a range, e.g. "
                              f"--shape {missing[0]}:MIN,OPT,MAX (spec.profiles)")
    for k, profile in enumerate(spec.profiles):
        for name, rng in profile.items():
            if name not in inputs:
                raise InvalidSpec(f"spec.profiles.{k}: the model has no input {name!r}; its inputs: {', '.join(inputs)}")
            shape = inputs[name]["shape"]
            if len(shape) != len(rng.min):
                raise InvalidSpec(f"spec.profiles.{k}.{name}: rank {len(rng.min)}, but the input is {shape}")
            for d, fixed in enumerate(shape):
                if isinstance(fixed, int) and fixed > 0 and not rng.min[d] == rng.opt[d] == rng.max[d] == fixed:
                    raise InvalidSpec(f"spec.profiles.{k}.{name}: dimension {d} is fixed at {fixed} in the model "
                                      f"(input shape {shape}); the profile gives {rng.min[d]}..{rng.max[d]}")


def get_build(session: Session, build_id: str) -> Build:
    row = session.get(Build, build_id)
    if row is None:
        raise BuildNotFound(f"no build {build_id}; list builds with GET /v1/builds or `trtfarm builds`")
    return row


def list_builds(session: Session, *, status: str | None = None, model: str | None = None,
                toolchain: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[BuildInfo], int]:
    query = select(Build)
    for column, value in ((Build.status, status), (Build.model_id, model), (Build.toolchain, toolchain)):
        if value:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Build.created_at.desc()).limit(limit).offset(offset))
    return [build_info(session, r) for r in rows], int(total or 0)


def build_info(session: Session, row: Build) -> BuildInfo:
    engine_id = session.scalar(select(Engine.id).where(Engine.build_id == row.id))
    error = ErrorInfo(code=row.error_code, message=row.error_message or "") if row.error_code else None
    return BuildInfo(
        id=row.id, key=row.key, model=row.model_id, target=row.target, toolchain=row.toolchain,
        version=row.version, device=row.device, queue=row.queue, spec=row.spec, status=row.status,
        attempt=row.attempt, max_attempts=row.max_attempts, worker=row.worker,
        waiting_reason=row.waiting_reason if row.status == "queued" else None, progress=row.progress,
        error=error, timings=row.timings or {}, timing_cache=row.timing_cache, engine_id=engine_id,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
    )


def cancel(db: Database, build_id: str) -> BuildInfo:
    """Cancel a queued build now; ask the worker of a running one to stop (it marks it cancelled)."""
    with db.session() as s:
        row = get_build(s, build_id)
        if row.status in TERMINAL:
            raise BuildStateError(f"build {build_id} is already {row.status}; nothing to cancel")
        s.execute(update(Build).where(Build.id == build_id, Build.status == "queued")
                  .values(status="cancelled", finished_at=utcnow(), error_code="cancelled",
                          error_message="cancelled before it started"))
        s.execute(update(Build).where(Build.id == build_id, Build.status == "running").values(cancel_requested=True))
    with db.session() as s:
        return build_info(s, s.get(Build, build_id))


# --- the worker's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    build_id: str
    attempt: int
    worker: str


def claim(db: Database, build_id: str, worker: str, lease_s: int) -> Claim | None:
    """queued (or running with an expired lease) -> running, attempt+1. None: nothing to do (ack)."""
    now = utcnow()
    with db.session() as s:
        row = s.get(Build, build_id)
        if row is None or row.cancel_requested or row.attempt >= row.max_attempts:
            return None
        seen = row.attempt  # read before the UPDATE, which also refreshes `row`
        claimable = (Build.status == "queued") | ((Build.status == "running") & (Build.lease_until < now))
        won = s.execute(
            update(Build).where(Build.id == build_id, Build.attempt == seen, claimable)
            .values(status="running", attempt=seen + 1, lease_until=now + timedelta(seconds=lease_s),
                    worker=worker, started_at=now, waiting_reason=None, progress="claimed")
        ).rowcount
        return Claim(build_id, seen + 1, worker) if won else None


def renew(db: Database, claim_: Claim, lease_s: int, *, progress: str | None = None,
          log_tail: str | None = None) -> str:
    """Extend the lease. Returns 'ok', 'cancel' (cancel requested) or 'lost' (lease taken over)."""
    values: dict[str, Any] = {"lease_until": utcnow() + timedelta(seconds=lease_s)}
    if progress is not None:
        values["progress"] = progress
    if log_tail is not None:
        values["log_tail"] = log_tail
    with db.session() as s:
        mine = (Build.id == claim_.build_id) & (Build.attempt == claim_.attempt) & (Build.status == "running")
        if not s.execute(update(Build).where(mine).values(**values)).rowcount:
            return "lost"
        return "cancel" if s.scalar(select(Build.cancel_requested).where(Build.id == claim_.build_id)) else "ok"


def finish(db: Database, claim_: Claim, status: str, *, error_code: str | None = None,
           error_message: str | None = None, log_digest: str | None = None, log_tail: str | None = None,
           timings: dict | None = None, timing_cache: dict | None = None, engine: Engine | None = None,
           retry: bool = False) -> bool:
    """Complete the build WHERE attempt = mine. With an engine, it is inserted in the same transaction.

    retry=True puts a failed attempt back in the queue while attempts remain. Returns False when this
    worker no longer owns the build (its result is dropped).
    """
    with db.session() as s:
        row = s.get(Build, claim_.build_id)
        requeue = retry and status == "failed" and row is not None and row.attempt < row.max_attempts
        values: dict[str, Any] = {
            "status": "queued" if requeue else status, "error_code": error_code, "error_message": error_message,
            "log_digest": log_digest, "lease_until": None, "finished_at": None if requeue else utcnow(),
            "progress": None if requeue else status,
        }
        for name, value in (("log_tail", log_tail), ("timings", timings), ("timing_cache", timing_cache)):
            if value is not None:
                values[name] = value
        mine = (Build.id == claim_.build_id) & (Build.attempt == claim_.attempt) & (Build.status == "running")
        if not s.execute(update(Build).where(mine).values(**values)).rowcount:
            s.rollback()
            return False
        if engine is not None:
            s.add(engine)
        if requeue:
            s.add(Outbox(build_id=claim_.build_id, queue=row.queue))
    return True


def load_for_worker(db: Database, build_id: str) -> tuple[Build, Model]:
    with db.session() as s:
        row = get_build(s, build_id)
        return row, get_model(s, row.model_id)
