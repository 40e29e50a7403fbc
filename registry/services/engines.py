"""Engines: read and list them (resolving one for a runtime: `registry.services.resolution`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Engine, EngineFetch, Model, utcnow
from registry.errors import EngineNotFound, ModelNotFound
from registry.schemas import EngineInfo
from registry.services.ids import full_id


def get_engine(session: Session, engine_id: str) -> Engine:
    """An engine by id, or by a unique prefix of at least 8 hex characters."""
    full = full_id(session, Engine.id, engine_id, "engine")
    row = session.get(Engine, full) if full else None
    if row is None:
        raise EngineNotFound(f"no engine {engine_id}; list a model's engines with GET /v1/engines?model=<id>")
    return row


def list_engines(db: Database, model: str | None = None, toolchain: str | None = None, version: str | None = None,
                 fetched_since: datetime | None = None) -> list[EngineInfo]:
    """Engines newest first (of one model: ModelNotFound when the farm has no such model), optionally of one
    toolchain and version, and only those downloaded since a time."""
    query = (select(Engine, EngineFetch.count, EngineFetch.last_fetched_at)
             .outerjoin(EngineFetch, EngineFetch.engine_id == Engine.id).order_by(Engine.created_at.desc()))
    if model:
        query = query.where(Engine.model_id == model)
    if toolchain:
        query = query.where(Engine.toolchain == toolchain)
    if version:
        query = query.where(Engine.version == version)
    if fetched_since is not None:
        query = query.where(EngineFetch.last_fetched_at >= fetched_since)
    with db.session() as s:
        rows = [engine_info(r).model_copy(update={"fetches": n or 0, "last_fetched_at": last})
                for r, n, last in s.execute(query)]
        if model and not rows and s.get(Model, model) is None:
            raise ModelNotFound(f"no model {model}; upload it first (trtfarm submit MODEL.onnx uploads it)")
        return rows


def read(db: Database, engine_id: str) -> EngineInfo:
    with db.session() as s:
        return engine_info(get_engine(s, engine_id))


def engine_info(row: Engine) -> EngineInfo:
    return EngineInfo(
        id=row.id, build_id=row.build_id, build_key=row.build_key, model=row.model_id, toolchain=row.toolchain,
        version=row.version, device=row.device, sku=row.sku, cc=row.cc,
        hardware_compatibility=row.hardware_compatibility, version_compatible=row.version_compatible,
        refittable=row.refittable, spec=row.spec, digest=row.digest, size=row.size, filename=row.filename,
        metadata=row.meta, validation=row.validation, validation_passed=row.validation_passed,
        latency_p50_ms=row.latency_p50_ms, latency_p99_ms=row.latency_p99_ms, build_seconds=row.build_seconds,
        pinned=row.pinned, created_at=row.created_at,
    )


def count_fetch(db: Database, engine_id: str) -> None:
    """One more download of the engine, now (engine_fetches: gc's and rollout's "used lately")."""
    now = utcnow()
    with db.session() as s:
        dialect = s.get_bind().dialect.name
        insert = {"postgresql": pg_insert, "sqlite": sqlite_insert}[dialect]
        statement = insert(EngineFetch).values(engine_id=engine_id, count=1, last_fetched_at=now)
        s.execute(statement.on_conflict_do_update(
            index_elements=[EngineFetch.engine_id],
            set_={"count": EngineFetch.count + 1, "last_fetched_at": now}))


def set_pinned(db: Database, engine_id: str, pinned: bool) -> EngineInfo:
    """A pinned engine is never removed by gc."""
    with db.session() as s:
        row = get_engine(s, engine_id)
        row.pinned = pinned
        s.flush()
        return engine_info(row)
