"""Resolve "the engine my runtime can load" in SQL, ranked by the pure rules of `registry.compat`.

A compatibility verdict depends only on an engine's *signature* (toolchain, version, device, SKU, cc,
hardware compatibility, version compatibility, lean runtime), never on its id, spec or metadata; and the
ranking within a verdict is newest first, then lower latency, then id. So:

1. `compat.narrowing` gives values that every engine that can load has (toolchain, a version prefix or
   version-compatible, one of the runtime's device names or ampere_plus): the SQL cuts the model's engines
   down to those, on `ix_engines_resolve`;
2. one grouped query gives each remaining signature and its newest engine's time: rows bounded by the
   fleet's diversity, not by the engine count; `compat.rank` ranks them, which gives the best class and
   its newest time;
3. the engines of that time (an equality, a handful of rows) are ranked again — latency, then id, break
   the tie — and the winner is the only full row read.

With shapes, every narrowed engine's spec is read and those whose profiles hold the shapes are ranked.
When nothing loads, all the model's signatures are judged for the 404's reasons (one line per signature,
with how many engines share it). `tests/unit/registry/services/test_resolution.py` (SQLite) and
`tests/integration/test_resolution_postgres.py` check that this answers as `compat.resolve` over every
engine would, on generated fleets.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from registry import compat
from registry.db.session import Database
from registry.db.tables import Engine, Model
from registry.errors import InvalidInput, ModelNotFound
from registry.schemas import Resolution
from registry.services.engines import engine_info
from registry.spec import BuildSpec, parse_shape, parse_spec, shape_text

SIGNATURE = (Engine.toolchain, Engine.version, Engine.device, Engine.sku, Engine.cc, Engine.hardware_compatibility,
             Engine.version_compatible, Engine.exclude_lean_runtime)
TIES = (Engine.created_at.desc(), Engine.latency_p50_ms.is_(None), Engine.latency_p50_ms, Engine.id)


def resolve(db: Database, model: str, runtime: compat.Runtime, spec_family: str | None = None,
            shapes: dict[str, tuple[int, ...]] | None = None, include_failed_validation: bool = False) -> Resolution:
    """The best engine for the runtime; with `shapes`, only engines whose profiles hold those shapes."""
    where = [Engine.model_id == model]
    if spec_family:
        where.append(Engine.spec_family == spec_family)
    if not include_failed_validation:
        where.append(or_(Engine.validation_passed.is_(None), Engine.validation_passed.is_(True)))
    narrowed = [*where, *_narrowed(compat.narrowing(runtime))]
    with db.read_session() as s:
        inputs = _model_inputs(s, model) if shapes else None
        if shapes:
            check_shapes(shapes, inputs)
            ranked = compat.rank(_holding(s, narrowed, shapes, inputs), runtime)
        else:
            ranked = compat.rank(_newest_of_the_best_class(s, narrowed, runtime), runtime)
        if ranked:
            best = ranked[0]
            return Resolution(engine=engine_info(s.get(Engine, best.candidate.engine_id)),
                              match_class=best.match_class, reason=best.reason, warning=best.warning)
        if shapes and _signatures(s, narrowed, runtime):
            raise _outside_every_profile(s, narrowed, shapes)
        if inputs is None and not s.scalar(select(Model.id).where(Model.id == model)):
            raise ModelNotFound(f"no model {model}; upload it first (POST /v1/models)")
        raise compat.no_match(_rejections(s, where, runtime), runtime=runtime, model=model)


def _narrowed(n: compat.Narrowing) -> list:
    """compat.narrowing as SQL: a superset of the engines that load, cut down before anything is ranked."""
    version = Engine.version.startswith(n.version_prefix, autoescape=True)
    where = [Engine.toolchain == n.toolchain,
             or_(version, Engine.version_compatible.is_(True)) if n.any_version_compatible else version]
    if n.devices:
        device = or_(Engine.device.in_(n.devices), Engine.sku.in_(n.devices), Engine.cc.in_(n.devices))
        where.append(or_(device, Engine.hardware_compatibility == "ampere_plus") if n.ampere_plus else device)
    return where


def _signatures(s: Session, where: list, runtime: compat.Runtime) -> list[compat.Choice]:
    """The signatures of these engines that load on the runtime, each with its newest engine's time, ranked."""
    query = select(*SIGNATURE, func.max(Engine.created_at)).where(*where).group_by(*SIGNATURE)
    return compat.rank((_candidate(tuple(r[:8]), "", r[8]) for r in s.execute(query)), runtime)


def _newest_of_the_best_class(s: Session, where: list, runtime: compat.Runtime) -> list[compat.Candidate]:
    """The engines the ranking can pick: those of the best class's newest time (a grouped query finds the
    class and the time, an equality on the time finds the engines; latency and id then break the tie)."""
    ranked = _signatures(s, where, runtime)
    if not ranked:
        return []
    newest = ranked[0].candidate.created_at
    query = select(*SIGNATURE, Engine.id, Engine.created_at, Engine.latency_p50_ms).where(
        *where, Engine.created_at == newest)
    return [_candidate(tuple(r[:8]), r.id, r.created_at, r.latency_p50_ms) for r in s.execute(query)]


def _holding(s: Session, where: list, shapes: dict[str, tuple[int, ...]], inputs: dict[str, list]
             ) -> list[compat.Candidate]:
    """The engines whose profiles hold the shapes (their specs are read: this path reads every candidate)."""
    query = select(*SIGNATURE, Engine.id, Engine.created_at, Engine.latency_p50_ms, Engine.spec).where(*where)
    return [_candidate(tuple(r[:8]), r.id, r.created_at, r.latency_p50_ms) for r in s.execute(query)
            if _holds(parse_spec(r.spec), shapes, inputs)]


def _rejections(s: Session, where: list, runtime: compat.Runtime) -> list[compat.Rejection]:
    query = select(*SIGNATURE, func.count(), func.max(Engine.id)).where(*where).group_by(*SIGNATURE)
    found = []
    for *sig, count, example in s.execute(query):
        verdict = compat.assess(_candidate(tuple(sig), example), runtime)
        if isinstance(verdict, compat.Rejection):
            found.append(compat.Rejection(example, verdict.why, count))
    return sorted(found, key=lambda r: (r.why, r.engine_id))


def _candidate(signature: tuple, engine_id: str, created_at: object = None, latency: float | None = None
               ) -> compat.Candidate:
    toolchain, version, device, sku, cc, hw, version_compatible, exclude_lean = signature
    return compat.Candidate(engine_id=engine_id, toolchain=toolchain, version=version, device=device, sku=sku, cc=cc,
                            hardware_compatibility=hw, version_compatible=bool(version_compatible),
                            exclude_lean_runtime=bool(exclude_lean), created_at=created_at, latency_ms=latency)


# ------------------------------------------------------------------------------------------- shapes


def _model_inputs(s: Session, model: str) -> dict[str, list]:
    inputs = s.scalar(select(Model.inputs).where(Model.id == model))
    if inputs is None:
        raise ModelNotFound(f"no model {model}; upload it first (POST /v1/models)")
    return {i["name"]: i["shape"] for i in inputs}


def check_shapes(shapes: dict[str, tuple[int, ...]], inputs: dict[str, list]) -> None:
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise InvalidInput(f"the model has no input {', '.join(unknown)}; its inputs: {', '.join(inputs)}")


def _holds(spec: BuildSpec, shapes: dict[str, tuple[int, ...]], inputs: dict[str, list]) -> bool:
    if not spec.profiles:  # a static engine holds exactly the model's static shapes
        return all(list(shape) == inputs[name] for name, shape in shapes.items())
    return any(all(name not in p or p[name].contains(shape) for name, shape in shapes.items()) for p in spec.profiles)


def _outside_every_profile(s: Session, where: list, shapes: dict[str, tuple[int, ...]]) -> InvalidInput:
    ranges = sorted({_profiles_text(parse_spec(spec)) for spec in s.scalars(select(Engine.spec).where(*where))})
    wanted = ", ".join(f"{n}={shape_text(v)}" for n, v in shapes.items())
    return InvalidInput(f"shape {wanted} is outside every profile of this model's engines ({'; '.join(ranges)}); "
                        "build one with a profile that holds it (--shape NAME:MIN,OPT,MAX)")


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


def _profiles_text(spec: BuildSpec) -> str:
    if not spec.profiles:
        return "static shapes"
    return " | ".join(", ".join(f"{n}: {shape_text(r.min)}..{shape_text(r.max)}" for n, r in p.items())
                      for p in spec.profiles)
