"""Resolve "the engine my runtime can load" in SQL, ranked by the pure rules of `registry.compat`.

A compatibility verdict depends only on an engine's *signature* (toolchain, version, device, SKU, cc,
hardware compatibility, version compatibility, lean runtime), never on its id, spec or metadata; and the
ranking within a verdict is widest profiles first (the engine's `profile_width`, computed when it is written:
registry.services.shapes), then newest, then lower latency, then id. So:

1. `compat.narrowing` gives values that every engine that can load has (toolchain, a version prefix or
   version-compatible, one of the runtime's device names or ampere_plus);
2. the model's signature summary (`engine_signatures`, kept by `registry.services.signatures` with every
   engine write) gives each narrowed signature with its widest engines' width and the newest time among
   them: rows bounded by the fleet's diversity, not by the engine count, and no engine is read;
   `compat.rank` ranks them, which gives the best class, its widest width and that width's newest time;
3. the engines of that time and width (an equality on `ix_engines_model_created`, a handful of rows) are
   ranked again — latency, then id, break the tie — and the winner is the only full row read.

With shapes, every narrowed engine's spec is read and those whose profiles hold the shapes are ranked (the
same order: the widest of the best class, then the newest). The answer's reason says what the winner's
profiles hold.
When nothing loads, the summary's signatures are judged for the 404's reasons (one line per signature,
with how many engines share it). `tests/unit/registry/services/test_resolution.py` (SQLite) and
`tests/integration/test_resolution_postgres.py` check that this answers as `compat.resolve` over every
engine would, on generated fleets.
"""

from __future__ import annotations

import functools

from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import Session

from registry import compat
from registry.db.session import Database
from registry.db.tables import Engine, EngineSignature, Model
from registry.errors import InvalidInput, ModelNotFound
from registry.schemas import Resolution
from registry.services.engines import engine_info
from registry.services.shapes import ANY_SHAPE_WIDTH, is_dynamic
from registry.services.signatures import ANY_FAMILY
from registry.spec import BuildSpec, parse_shape, parse_spec, shape_text

SIGNATURE = (Engine.toolchain, Engine.version, Engine.device, Engine.sku, Engine.cc, Engine.hardware_compatibility,
             Engine.version_compatible, Engine.exclude_lean_runtime)
SUMMARY = tuple(getattr(EngineSignature, c.key) for c in SIGNATURE)  # the same columns in the summary


def resolve(db: Database, model: str, runtime: compat.Runtime, spec_family: str | None = None,
            shapes: dict[str, tuple[int, ...]] | None = None, include_failed_validation: bool = False) -> Resolution:
    """The best engine for the runtime; with `shapes`, only engines whose profiles hold those shapes."""
    narrowing = compat.narrowing(runtime)
    engines = [Engine.model_id == model, *_narrowed(narrowing, Engine)]
    if spec_family:
        engines.append(Engine.spec_family == spec_family)
    if not include_failed_validation:
        engines.append(or_(Engine.validation_passed.is_(None), Engine.validation_passed.is_(True)))
    summary = [EngineSignature.model_id == model, EngineSignature.spec_family == (spec_family or ANY_FAMILY)]
    if not include_failed_validation:
        summary.append(EngineSignature.validation_failed == false())
    narrowed = [*summary, *_narrowed(narrowing, EngineSignature)]
    return db.read(lambda s: _resolve(s, model, runtime, shapes, engines=engines, summary=summary, narrowed=narrowed))


def _resolve(s: Session, model: str, runtime: compat.Runtime, shapes: dict[str, tuple[int, ...]] | None, *,
             engines: list, summary: list, narrowed: list) -> Resolution:
    """resolve in one read session: `engines` and `narrowed` filter the engines and the summary down to what
    may load; `summary` is the model's summary under resolve's filters alone (the 404's reasons)."""
    inputs = _model_inputs(s, model) if shapes else None
    if shapes:
        check_shapes(shapes, inputs)
        ranked = compat.rank(_holding(s, engines, shapes, inputs), runtime)
    else:
        ranked = compat.rank(_first_of_the_best_class(s, narrowed, engines, runtime), runtime)
    if ranked:
        best, row = ranked[0], s.get(Engine, ranked[0].candidate.engine_id)
        return Resolution(engine=engine_info(row), match_class=best.match_class, warning=best.warning,
                          reason=f"{best.reason}; widest profiles of its class ({_held(row)})")
    if shapes and _signatures(s, narrowed, runtime):
        raise _outside_every_profile(s, engines, shapes)
    if inputs is None and not s.scalar(select(Model.id).where(Model.id == model)):
        raise ModelNotFound(f"no model {model}; upload it first (POST /v1/models)")
    raise compat.no_match(_rejections(s, summary, runtime), runtime=runtime, model=model)


def _narrowed(n: compat.Narrowing, t: type[Engine] | type[EngineSignature]) -> list:
    """compat.narrowing as SQL on engines or on the summary: a superset of what loads, cut down before ranking."""
    version = t.version.startswith(n.version_prefix, autoescape=True)
    where = [t.toolchain == n.toolchain,
             or_(version, t.version_compatible.is_(True)) if n.any_version_compatible else version]
    if n.version_compatible_only:
        where.append(t.version_compatible.is_(True))
    if n.devices:
        device = or_(t.device.in_(n.devices), t.sku.in_(n.devices), t.cc.in_(n.devices))
        if n.ampere_plus:
            device = or_(device, t.hardware_compatibility == "ampere_plus")
        if n.any_isa_prefix:
            device = or_(device, (t.hardware_compatibility == compat.ANY_ISA)
                         & t.device.startswith(n.any_isa_prefix, autoescape=True))
        where.append(device)
    return where


def _signatures(s: Session, summary: list, runtime: compat.Runtime) -> list[compat.Choice]:
    """The summary's signatures that load on the runtime, each with its widest engines' width and the newest
    time among them, ranked."""
    query = select(*SUMMARY, EngineSignature.widest_newest, EngineSignature.widest).where(*summary)
    return compat.rank((_candidate(tuple(r[:8]), "", r[8], width=r[9]) for r in s.execute(query)
                        if _loads(tuple(r[:8]), runtime)), runtime)


@functools.lru_cache(maxsize=65536)
def _loads(signature: tuple, runtime: compat.Runtime) -> bool:
    """Whether engines of this signature load on the runtime: a pure verdict, remembered (a fleet asks with a
    few runtimes about a few hundred signatures per model); `compat.rank` then ranks the ones that do."""
    return compat.classify(_candidate(signature, ""), runtime) is not None


def _first_of_the_best_class(s: Session, summary: list, engines: list, runtime: compat.Runtime
                             ) -> list[compat.Candidate]:
    """The engines the ranking can pick: the best class's widest, of the newest time among them (the summary
    gives the class, the width and the time; an equality on the time and the width finds the engines; latency
    and id then break the tie)."""
    ranked = _signatures(s, summary, runtime)
    if not ranked:
        return []
    first = ranked[0].candidate
    query = select(*SIGNATURE, Engine.id, Engine.created_at, Engine.latency_p50_ms, Engine.profile_width).where(
        *engines, Engine.created_at == first.created_at, Engine.profile_width == first.width)
    return [_candidate(tuple(r[:8]), r.id, r.created_at, r.latency_p50_ms, r.profile_width) for r in s.execute(query)]


def _holding(s: Session, where: list, shapes: dict[str, tuple[int, ...]], inputs: dict[str, list]
             ) -> list[compat.Candidate]:
    """The engines whose profiles hold the shapes (their specs are read: this path reads every candidate)."""
    query = select(*SIGNATURE, Engine.id, Engine.created_at, Engine.latency_p50_ms, Engine.profile_width,
                   Engine.spec).where(*where)
    return [_candidate(tuple(r[:8]), r.id, r.created_at, r.latency_p50_ms, r.profile_width) for r in s.execute(query)
            if _holds(parse_spec(r.spec), shapes, inputs, r.toolchain)]


def _rejections(s: Session, summary: list, runtime: compat.Runtime) -> list[compat.Rejection]:
    """Every signature of the model (under resolve's filters) with its engine count and greatest engine id."""
    query = (select(*SUMMARY, func.sum(EngineSignature.engines), func.max(EngineSignature.example))
             .where(*summary).group_by(*SUMMARY))
    found = []
    for *sig, count, example in s.execute(query):
        verdict = compat.assess(_candidate(tuple(sig), example), runtime)
        if isinstance(verdict, compat.Rejection):
            found.append(compat.Rejection(example, verdict.why, int(count)))
    return sorted(found, key=lambda r: (r.why, r.engine_id))


def _candidate(signature: tuple, engine_id: str, created_at: object = None, latency: float | None = None,
               width: float = 0.0) -> compat.Candidate:
    toolchain, version, device, sku, cc, hw, version_compatible, exclude_lean = signature
    return compat.Candidate(engine_id=engine_id, toolchain=toolchain, version=version, device=device,
                            sku=sku or None, cc=cc or None,  # the summary keeps "" for none
                            hardware_compatibility=hw, version_compatible=bool(version_compatible),
                            exclude_lean_runtime=bool(exclude_lean), created_at=created_at, latency_ms=latency,
                            width=width)


# ------------------------------------------------------------------------------------------- shapes


def _model_inputs(s: Session, model: str) -> dict[str, list]:
    inputs = s.scalar(select(Model.inputs).where(Model.id == model))
    if inputs is None:
        raise ModelNotFound(f"no model {model}; upload it first (POST /v1/models)")
    return {i["name"]: i["shape"] for i in inputs}


def check_shapes(shapes: dict[str, tuple[int, ...]], inputs: dict[str, list]) -> None:
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise InvalidInput(f"the model has no input named {', '.join(map(repr, unknown))}; "
                           f"its inputs: {', '.join(map(repr, inputs))}")


def _holds(spec: BuildSpec, shapes: dict[str, tuple[int, ...]], inputs: dict[str, list], toolchain: str) -> bool:
    """Whether the engine runs on these shapes: they fit the model's inputs (rank, fixed dimensions; a
    dimension without a positive size is dynamic, registry.services.shapes), and a profile holds them. An
    engine without profiles: ONNX Runtime takes any shape that fits; TensorRT only a static model's."""
    def fits(name: str, shape: tuple[int, ...]) -> bool:
        model = inputs[name]
        return len(shape) == len(model) and all(is_dynamic(d) or d == n for d, n in zip(model, shape))

    if not all(fits(name, shape) for name, shape in shapes.items()):
        return False
    if not spec.profiles:
        return toolchain == "onnxruntime" or not any(is_dynamic(d) for name in shapes for d in inputs[name])
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


def _held(row: Engine) -> str:
    """What the engine's profiles hold, for the answer's reason."""
    return "any shape" if row.profile_width >= ANY_SHAPE_WIDTH else _profiles_text(parse_spec(row.spec))


def _profiles_text(spec: BuildSpec) -> str:
    if not spec.profiles:
        return "static shapes"
    return " | ".join(", ".join(f"{n}: {shape_text(r.min)}..{shape_text(r.max)}" for n, r in p.items())
                      for p in spec.profiles)
