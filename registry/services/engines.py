"""Engines: read them, and resolve "the engine my runtime can load" (registry.compat decides)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import compat
from registry.db.session import Database
from registry.db.tables import Engine
from registry.errors import EngineNotFound, InvalidInput
from registry.schemas import EngineInfo, Resolution
from registry.services.models import get_model
from registry.spec import BuildSpec, parse_shape, parse_spec, shape_text


def get_engine(session: Session, engine_id: str) -> Engine:
    row = session.get(Engine, engine_id)
    if row is None:
        raise EngineNotFound(f"no engine {engine_id}; list a model's engines with GET /v1/engines?model=<id>")
    return row


def list_engines(db: Database, model: str | None = None) -> list[EngineInfo]:
    query = select(Engine).order_by(Engine.created_at.desc())
    if model:
        query = query.where(Engine.model_id == model)
    with db.session() as s:
        return [engine_info(r) for r in s.scalars(query)]


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


def resolve(db: Database, model: str, runtime: compat.Runtime, spec_family: str | None = None,
            shapes: dict[str, tuple[int, ...]] | None = None, include_failed_validation: bool = False) -> Resolution:
    """The best engine for the runtime; with `shapes`, only engines whose profiles hold those shapes."""
    query = select(Engine).where(Engine.model_id == model)
    if spec_family:
        query = query.where(Engine.spec_family == spec_family)
    with db.session() as s:
        inputs = get_model(s, model).inputs
        rows = {r.id: r for r in s.scalars(query)}
    usable = {i: r for i, r in rows.items() if include_failed_validation or r.validation_passed is not False}
    if shapes:
        usable = _holding(usable, shapes, inputs)
    found = compat.resolve([_candidate(r) for r in usable.values()], runtime, model=model)
    return Resolution(engine=engine_info(rows[found.candidate.engine_id]), match_class=found.match_class,
                      reason=found.reason, warning=found.warning)


def _holding(rows: dict[str, Engine], shapes: dict[str, tuple[int, ...]], inputs: list[dict]) -> dict[str, Engine]:
    known = {i["name"]: i["shape"] for i in inputs}
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise InvalidInput(f"the model has no input {', '.join(unknown)}; its inputs: {', '.join(known)}")
    held = {i: r for i, r in rows.items() if _engine_holds(parse_spec(r.spec), shapes, known)}
    if rows and not held:
        wanted = ", ".join(f"{n}={shape_text(s)}" for n, s in shapes.items())
        ranges = sorted({_profiles_text(parse_spec(r.spec)) for r in rows.values()})
        raise InvalidInput(f"shape {wanted} is outside every profile of this model's engines ({'; '.join(ranges)}); "
                           "build one with a profile that holds it (--shape NAME:MIN,OPT,MAX)")
    return held


def _engine_holds(spec: BuildSpec, shapes: dict[str, tuple[int, ...]], known: dict[str, list]) -> bool:
    if not spec.profiles:  # a static engine holds exactly the model's static shapes
        return all(list(shape) == known[name] for name, shape in shapes.items())
    return any(all(name not in p or p[name].contains(shape) for name, shape in shapes.items()) for p in spec.profiles)


def _profiles_text(spec: BuildSpec) -> str:
    if not spec.profiles:
        return "static shapes"
    return " | ".join(", ".join(f"{n}: {shape_text(r.min)}..{shape_text(r.max)}" for n, r in p.items())
                      for p in spec.profiles)


def parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    """`NAME:1x3x224x224` items (the resolve endpoint's `shape` parameter)."""
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shapes[name] = parse_shape(dims)
        except ValueError:
            name = ""
        if not sep or not name:
            raise InvalidInput(f"shape {item!r}: use NAME:1x3x224x224")
    return shapes


def _candidate(row: Engine) -> compat.Candidate:
    return compat.Candidate(
        engine_id=row.id, toolchain=row.toolchain, version=row.version, device=row.device, sku=row.sku,
        cc=row.cc, hardware_compatibility=row.hardware_compatibility, version_compatible=row.version_compatible,
        exclude_lean_runtime=row.exclude_lean_runtime, created_at=row.created_at.timestamp(),
        latency_ms=row.latency_p50_ms,
    )

