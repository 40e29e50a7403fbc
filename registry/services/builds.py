"""Builds as users see them: submit (dedup by key), read, list, log, cancel.

SQL holds the truth; the broker only carries "look at build X" messages (written to the outbox in the
same transaction). The worker's side of a build (claim, lease, finish) is `registry.services.attempts`.
"""

from __future__ import annotations

import functools
import json
import math
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.auth import OPEN, Principal
from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.db.tables import ApiKey, Build, Engine, Model, utcnow
from registry.digests import canonical_json
from registry.errors import (
    BuildNotFound,
    BuildStateError,
    FarmError,
    Forbidden,
    InvalidInput,
    InvalidSpec,
    UnsupportedOption,
)
from registry.keys import build_key, spec_canonical, spec_family
from registry.queues import build_queue
from registry.schemas import BuildInfo, BuildList, BuildRequest, ErrorInfo
from registry.services import buildevents, calibration, fleet, outbox, plugins, shapes
from registry.services.ids import full_id
from registry.services.models import get_model
from registry.settings import Settings
from registry.spec import BuildSpec, parse_spec, shape_text
from registry.status import BuildStatus
from registry.targets import Target, parse_target


def submit(db: Database, settings: Settings, request: BuildRequest, submitted_by: str | None = None,
           blobs: BlobStore | None = None) -> tuple[BuildInfo, bool]:
    """Create the build for the request's key, or return the existing one. Returns (info, created).
    `submitted_by` is the API key's id (None in open mode); an existing build keeps its first submitter.
    One transaction: a duplicate submit costs one round of reads and an insert that does nothing."""
    known = _known_build(db, request)
    if known is not None:
        return known, False
    spec = parse_spec(request.spec)
    check_inputs(request, blobs)  # blob store lookups, before a connection is held
    with db.session() as s:
        model = get_model(s, request.model)
        workers = fleet.live_workers(s, settings.worker_live_s)
        offers = fleet.offers(workers)
        target, spec = fleet.complete_target(parse_target(request.target), spec, offers)
        spec, warnings = shapes.normalized(spec, model, target.kind)
        check_spec(spec, target, model, offers)
        check_limits(spec, settings)
        warnings += calibration.check_submit(s, request.calibration, spec, target.kind, model, target.version)
        plugins.check_submit(s, request.plugins, target.kind, settings.allowed_plugin_digests())
        key = build_key(model=model.id, target=str(target), spec=spec,
                        plugins=tuple(request.plugins), calibration=request.calibration)
        queue = build_queue(target.kind, target.version or "", target.device or "")
        values = dict(
            id=uuid.uuid4().hex, key=key, model_id=model.id, toolchain=target.kind, version=target.version,
            device=target.device, target=str(target), queue=queue, spec=spec_canonical(spec),
            spec_family=spec_family(spec), plugins=sorted(request.plugins), calibration=request.calibration,
            status=BuildStatus.QUEUED, attempt=0, max_attempts=settings.max_attempts,
            waiting_reason=fleet.waiting_reason(queue, workers), submitted_by=submitted_by, warnings=warnings,
        )
        created = _insert_unless_keyed(s, values)
        row = s.scalars(select(Build).where(Build.key == key)).one()
        if created:
            outbox.enqueue(s, row.id, queue)
            buildevents.state(s, row.id)
        else:
            _requeue_if_ended(s, row, workers)
        return build_info(s, row), created


def _known_build(db: Database, request: BuildRequest) -> BuildInfo | None:
    """A duplicate submit in one statement: when the key follows from the request alone (a full target whose
    device needs no fleet to derive), the build holding it, unless it ended failed or cancelled (then the
    full path queues it again). The checks a new build gets were passed when this one was created."""
    key = known_key(request)
    return None if key is None else db.read(lambda s: _existing(s, key))


def _existing(session: Session, key: str) -> BuildInfo | None:
    found = session.execute(select(*Build.__table__.c, Engine.id.label("engine_id"))
                            .outerjoin(Engine, Engine.build_id == Build.id).where(Build.key == key)).one_or_none()
    if found is None or found.status in (BuildStatus.FAILED, BuildStatus.CANCELLED):
        return None
    return build_info(session, found, engine_id=found.engine_id)


def known_key(request: BuildRequest) -> str | None:
    """The build key of a request whose key follows from the request alone (a full target whose device needs
    no fleet); None when the fleet is needed or the request is wrong (the full path says why). Remembered per
    request (a pure function of it: fleets resubmit the same requests)."""
    try:
        spec = canonical_json(request.spec)
    except (TypeError, ValueError):  # NaN and friends: the full path refuses them
        return None
    return _key_of(request.model, request.target, spec, tuple(request.plugins), request.calibration)


@functools.lru_cache(maxsize=4096)
def _key_of(model: str, target: str, spec: str, plugins: tuple[str, ...], calibration: str | None) -> str | None:
    try:
        full, parsed = fleet.complete_target(parse_target(target), parse_spec(json.loads(spec)), [])
    except FarmError:
        return None  # the fleet is needed, or the target or spec is wrong
    return build_key(model=model, target=str(full), spec=parsed, plugins=plugins, calibration=calibration)


def _insert_unless_keyed(session: Session, values: dict) -> bool:
    """INSERT … ON CONFLICT (key) DO NOTHING; whether the row was inserted."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (dialect.insert(Build).values(**values).on_conflict_do_nothing(index_elements=[Build.key])
                 .returning(Build.id))
    return session.execute(statement).scalar() is not None


def _requeue_if_ended(session: Session, row: Build, workers: list) -> None:  # noqa: ANN001
    """A failed or cancelled build holding the key is queued again."""
    requeued = session.execute(
        update(Build).where(Build.id == row.id, Build.status.in_((BuildStatus.FAILED, BuildStatus.CANCELLED)))
        .values(status=BuildStatus.QUEUED, attempt=0, error_code=None, error_message=None, cancel_requested=False,
                finished_at=None, waiting_reason=fleet.waiting_reason(row.queue, workers))
    ).rowcount
    if requeued:
        outbox.enqueue(session, row.id, row.queue)
        buildevents.state(session, row.id)
        session.refresh(row)


def check_spec(spec: BuildSpec, target: Target, model: Model, offers: list[fleet.Offer]) -> None:
    """Reject, before queueing, what cannot build: wrong-toolchain options, profiles that don't fit."""
    if target.kind == "onnxruntime" and spec.uses_tensorrt_options():
        names = ", ".join(spec.uses_tensorrt_options())
        raise InvalidSpec(f"{names}: TensorRT options, but the target is {target}; "
                          "onnxruntime builds keep the model's precision. Drop them or target tensorrt")
    _check_profiles(spec, model)
    _check_shape_values(spec, model)
    _check_io_formats(spec, model)
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
    constant = set(spec.sanitize.shape_values) if spec.sanitize else set()  # no range: they become constants
    dynamic = {n: i["shape"] for n, i in inputs.items()
               if n not in constant and any(not isinstance(d, int) or d <= 0 for d in i["shape"])}
    for k, profile in enumerate(spec.profiles):  # a misspelt name first: it is why the real input looks omitted
        unknown = [name for name in profile if name not in inputs]
        if unknown:
            raise InvalidSpec(f"spec.profiles.{k}: the model has no input {unknown[0]!r}; "
                              f"its inputs: {', '.join(inputs)}")
    for k, profile in enumerate(spec.profiles):  # (registry.services.shapes filled in what the user left out)
        missing = sorted(set(dynamic) - set(profile))
        if missing:
            where = f"profile {k} omits"
            shapes = "; ".join(f"{n} {dynamic[n]}" for n in missing)
            raise InvalidSpec(f"{where} dynamic input(s) {shapes}; give each a range, e.g. "
                              f"--shape {missing[0]}:MIN,OPT,MAX (spec.profiles)")
    for k, profile in enumerate(spec.profiles):
        for name, rng in profile.items():
            if name not in inputs:
                raise InvalidSpec(f"spec.profiles.{k}: the model has no input {name!r}; "
                                  f"its inputs: {', '.join(inputs)}")
            shape = inputs[name]["shape"]
            if len(shape) != len(rng.min):
                raise InvalidSpec(f"spec.profiles.{k}.{name}: rank {len(rng.min)}, but the input is {shape}")
            for d, fixed in enumerate(shape):
                if isinstance(fixed, int) and fixed > 0 and not rng.min[d] == rng.opt[d] == rng.max[d] == fixed:
                    raise InvalidSpec(f"spec.profiles.{k}.{name}: dimension {d} is fixed at {fixed} in the model "
                                      f"(input shape {shape}); the profile gives {rng.min[d]}..{rng.max[d]}")


def _check_shape_values(spec: BuildSpec, model: Model) -> None:
    """spec.sanitize.shape_values must name integer inputs of the model, with as many values as they hold."""
    inputs = {i["name"]: i for i in model.inputs}
    for name, values in (spec.sanitize.shape_values if spec.sanitize else {}).items():
        where = f"spec.sanitize.shape_values.{name}"
        if name not in inputs:
            raise InvalidSpec(f"{where}: the model has no input {name!r}; its inputs: {', '.join(inputs)}")
        dtype, shape = inputs[name]["dtype"], inputs[name]["shape"]
        if not dtype.startswith(("int", "uint")):
            raise InvalidSpec(f"{where}: input {name} is {dtype}; only integer inputs (shape tensors) take values")
        if len(shape) > 1:
            raise InvalidSpec(f"{where}: input {name} has rank {len(shape)}; shape tensors have rank 0 or 1")
        fixed = 1 if not shape else shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        if fixed is not None and fixed != len(values):
            raise InvalidSpec(f"{where}: input {name} holds {fixed} value(s) (shape {shape}); got {len(values)}")


def _check_io_formats(spec: BuildSpec, model: Model) -> None:
    """spec.io_formats must name the model's inputs and outputs (layer names are checked by the runner)."""
    inputs, outputs = [i["name"] for i in model.inputs], [o["name"] for o in model.outputs]
    for name in spec.io_formats:
        if name not in inputs and name not in outputs:
            raise InvalidSpec(f"spec.io_formats.{name}: the model has no input or output {name!r}; its inputs: "
                              f"{', '.join(inputs) or 'none'}; its outputs: {', '.join(outputs) or 'none'}")


def check_limits(spec: BuildSpec, settings: Settings) -> None:
    """Refuse profiles no GPU could hold (TRTFARM_MAX_PROFILE_DIM, TRTFARM_MAX_PROFILE_ELEMENTS)."""
    for k, profile in enumerate(spec.profiles):
        for name, rng in profile.items():
            if max(rng.max, default=0) > settings.max_profile_dim:
                raise InvalidSpec(f"spec.profiles.{k}.{name}: max shape {shape_text(rng.max)} has a dimension over "
                                  f"{settings.max_profile_dim} (TRTFARM_MAX_PROFILE_DIM)")
            if math.prod(rng.max) > settings.max_profile_elements:
                raise InvalidSpec(f"spec.profiles.{k}.{name}: max shape {shape_text(rng.max)} holds "
                                  f"{math.prod(rng.max):,} elements, over {settings.max_profile_elements:,} "
                                  "(TRTFARM_MAX_PROFILE_ELEMENTS)")


def check_inputs(request: BuildRequest, blobs: BlobStore | None) -> None:
    """The calibration must be a blob the farm has, or the build could never run (plugin libraries are checked
    against their uploads and the allow-list: registry.services.plugins.check_submit)."""
    digest = request.calibration
    if digest and (blobs is None or not blobs.exists(digest)):
        raise InvalidInput(f"calibration cache {digest} is not in the farm's blob store; the farm cannot build with "
                           "it (upload the data set or cache first (POST /v1/calibration, or `trtfarm submit "
                           "--calibration FILE` which uploads it))")


def get_build(session: Session, build_id: str) -> Build:
    """A build by id, or by a unique prefix of at least 8 hex characters."""
    full = full_id(session, Build.id, build_id, "build")
    row = session.get(Build, full) if full else None
    if row is None:
        raise BuildNotFound(f"no build {build_id}; list builds with GET /v1/builds or `trtfarm builds`")
    return row


def list_builds(db: Database, *, status: BuildStatus | None = None, model: str | None = None,
                toolchain: str | None = None, limit: int = 50, offset: int = 0, target: str | None = None,
                submitter: str | None = None) -> BuildList:
    """Newest first; `submitter` is an API key's name (the builds it submitted)."""
    query = select(Build)
    for column, value in ((Build.status, status), (Build.model_id, model), (Build.toolchain, toolchain),
                          (Build.target, target)):
        if value:
            query = query.where(column == value)
    if submitter:
        query = query.where(Build.submitted_by.in_(select(ApiKey.id).where(ApiKey.name == submitter)))
    with db.session() as s:
        total = s.scalar(select(func.count()).select_from(query.subquery()))
        rows = s.scalars(query.order_by(Build.created_at.desc()).limit(limit).offset(offset))
        return BuildList(items=[build_info(s, r) for r in rows], total=int(total or 0))


def read(db: Database, build_id: str) -> BuildInfo:
    with db.session() as s:
        return build_info(s, get_build(s, build_id))


def log_text(db: Database, blobs: BlobStore, build_id: str) -> str:
    """The whole log once the build has ended; the live tail while it runs."""
    with db.session() as s:
        row = get_build(s, build_id)
        digest, tail, status = row.log_digest, row.log_tail, row.status
    if digest:
        return blobs.get_bytes(digest).decode("utf-8", "replace")
    return tail or f"(build {build_id} is {status}; no log yet)\n"


def build_info(session: Session, row: Build, engine_id: str | None = None) -> BuildInfo:
    """The public view of a build (its engine looked up unless the caller has it)."""
    if engine_id is None and row.status == BuildStatus.SUCCEEDED:
        engine_id = session.scalar(select(Engine.id).where(Engine.build_id == row.id))
    error = ErrorInfo(code=row.error_code, message=row.error_message or "") if row.error_code else None
    return BuildInfo(
        id=row.id, key=row.key, model=row.model_id, target=row.target, toolchain=row.toolchain,
        version=row.version, device=row.device, queue=row.queue, spec=row.spec, calibration=row.calibration,
        status=row.status, attempt=row.attempt, max_attempts=row.max_attempts, worker=row.worker,
        waiting_reason=row.waiting_reason if row.status == BuildStatus.QUEUED else None, progress=row.progress,
        error=error, warnings=[ErrorInfo(**w) for w in row.warnings or []],
        timings=row.timings or {}, timing_cache=row.timing_cache, engine_id=engine_id,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
    )


def cancel(db: Database, build_id: str, who: Principal = OPEN) -> BuildInfo:
    """Cancel a queued build now; ask the worker of a running one to stop (it marks it cancelled).
    Another key's build needs the admin scope."""
    with db.session() as s:
        row = get_build(s, build_id)
        if row.submitted_by != who.key_id and not who.can("admin"):
            raise Forbidden(f"build {build_id} was submitted by another API key; cancelling it needs the admin scope")
        if row.status.terminal:
            raise BuildStateError(f"build {build_id} is already {row.status}; nothing to cancel")
        if s.execute(update(Build).where(Build.id == row.id, Build.status == BuildStatus.QUEUED)
                     .values(status=BuildStatus.CANCELLED, finished_at=utcnow(), error_code="cancelled",
                             error_message="cancelled before it started")).rowcount:
            buildevents.state(s, row.id)
        s.execute(update(Build).where(Build.id == build_id, Build.status == BuildStatus.RUNNING)
                  .values(cancel_requested=True))
    return read(db, build_id)
