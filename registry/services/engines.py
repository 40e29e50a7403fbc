"""Engines: read and list them (resolving one for a runtime: `registry.services.resolution`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Engine, Model
from registry.errors import EngineNotFound, ModelNotFound
from registry.schemas import EngineInfo


def get_engine(session: Session, engine_id: str) -> Engine:
    row = session.get(Engine, engine_id)
    if row is None:
        raise EngineNotFound(f"no engine {engine_id}; list a model's engines with GET /v1/engines?model=<id>")
    return row


def list_engines(db: Database, model: str | None = None) -> list[EngineInfo]:
    """Engines newest first (of one model: ModelNotFound when the farm has no such model)."""
    query = select(Engine).order_by(Engine.created_at.desc())
    if model:
        query = query.where(Engine.model_id == model)
    with db.session() as s:
        rows = [engine_info(r) for r in s.scalars(query)]
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
        created_at=row.created_at,
    )
