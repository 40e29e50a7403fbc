"""Each model's engine signatures, counted: the summary resolve reads instead of grouping engines.

A compatibility verdict depends only on an engine's signature (`registry.services.resolution.SIGNATURE`), and
resolve narrows a model's engines by validation (failed ones are left out unless asked for) and, when asked,
by spec family. `engine_signatures` (`registry.db.tables.EngineSignature`) holds one row per (model, spec
family, signature, validation failed) with the newest engine's time, the number of engines, the greatest
engine id, the greatest profile width (`registry.services.shapes.profile_width`) and the newest time among
the engines of that width (resolve ranks a match class's engines widest first, then newest); each engine is
also counted under spec family "*" (every family), so a resolve without a family reads rows bounded by the
fleet's diversity rather than by the engine count.

The rows are kept in the transaction that writes the engines (`counted`, `add`): one
`INSERT … ON CONFLICT DO UPDATE` adding the counts and keeping the greatest time, id and (width, time), so
two transactions counting engines of one signature at once cannot lose either (the second waits for the
first's row lock, then adds to what it committed). Rows are written in key order, so concurrent writers lock
them in the same order. `rebuild` recomputes rows from the engines (migration 0010 runs the same statement,
0006 its first version; a path that deletes engines or changes their signature or width must rebuild the
model's rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.db.tables import Engine, EngineSignature, utcnow

ANY_FAMILY = "*"
KEY = ("model_id", "spec_family", "toolchain", "version", "device", "sku", "cc", "hardware_compatibility",
       "version_compatible", "exclude_lean_runtime", "validation_failed")
COLUMNS = (*KEY, "newest", "engines", "example", "widest", "widest_newest")

# The backfill, once per family column ('spec_family', then '*'); migration 0010 holds a copy of this text.
# The window gives each engine its group's greatest width, so that the newest engine of that width is found.
_BACKFILL = """
INSERT INTO engine_signatures (model_id, spec_family, toolchain, version, device, sku, cc, hardware_compatibility,
                               version_compatible, exclude_lean_runtime, validation_failed, newest, engines, example,
                               widest, widest_newest)
SELECT model_id, {family}, toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
       version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false), max(created_at), count(*),
       max(id), max(profile_width), max(CASE WHEN profile_width = group_widest THEN created_at END)
FROM (SELECT *, max(profile_width) OVER (
          PARTITION BY model_id, {group}toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''),
                       hardware_compatibility, version_compatible, exclude_lean_runtime,
                       coalesce(NOT validation_passed, false)) AS group_widest
      FROM engines {where}) engines
GROUP BY model_id, {group}toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
         version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false)"""


def backfill_statements(where: str = "") -> list[str]:
    """The INSERT … SELECT statements that fill the summary from the engines (those matching `where`)."""
    return [_BACKFILL.format(family=family, group=group, where=where)
            for family, group in (("spec_family", "spec_family, "), (f"'{ANY_FAMILY}'", ""))]


def counted(session: Session, engine: Engine) -> Engine:
    """Count a new engine row (not yet flushed) in its model's summary, in the session's transaction; returns
    the row. Its creation time is fixed here (the column default would only be filled at flush)."""
    if engine.created_at is None:
        engine.created_at = utcnow()
    add(session, [engine])
    return engine


def add(session: Session, engines: Iterable[Engine | Mapping[str, Any]]) -> None:
    """Count new engines (rows or dicts of engine columns) in their models' summaries."""
    rows: dict[tuple, dict[str, Any]] = {}
    for engine in engines:
        for key, created, engine_id, width in _keys(engine):
            row = rows.get(key)
            if row is None:
                rows[key] = {**dict(zip(KEY, key)), "newest": created, "engines": 1, "example": engine_id,
                             "widest": width, "widest_newest": created}
            else:
                row["engines"] += 1
                row["newest"] = max(row["newest"], created)
                row["example"] = max(row["example"], engine_id)
                row["widest"], row["widest_newest"] = max((row["widest"], row["widest_newest"]), (width, created))
    if rows:
        session.execute(_upsert(session), [rows[k] for k in sorted(rows)])


def _keys(engine: Engine | Mapping[str, Any]) -> list[tuple[tuple, datetime, str, float]]:
    get = engine.get if isinstance(engine, Mapping) else lambda name: getattr(engine, name)
    failed = get("validation_passed") is False
    signature = (get("toolchain"), get("version"), get("device"), get("sku") or "", get("cc") or "",
                 get("hardware_compatibility"), bool(get("version_compatible")), bool(get("exclude_lean_runtime")),
                 failed)
    created, engine_id, width = get("created_at"), get("id"), get("profile_width")
    if created is None or engine_id is None or width is None:
        raise ValueError("an engine is counted with its id, creation time and profile width")
    return [((get("model_id"), family, *signature), created, engine_id, width)
            for family in (get("spec_family"), ANY_FAMILY)]


def _upsert(session: Session) -> Any:
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = (postgresql if postgres else sqlite).insert(EngineSignature)
    table, new = EngineSignature.__table__.c, statement.excluded
    greatest = func.greatest if postgres else func.max  # SQLite's max() of two arguments is the greater one
    return statement.on_conflict_do_update(index_elements=list(KEY), set_={
        "engines": table.engines + new.engines,
        "newest": greatest(table.newest, new.newest),
        "example": greatest(table.example, new.example),
        "widest": greatest(table.widest, new.widest),
        "widest_newest": case((new.widest > table.widest, new.widest_newest),
                              (new.widest < table.widest, table.widest_newest),
                              else_=greatest(table.widest_newest, new.widest_newest)),
    })


def rebuild(session: Session, model_id: str | None = None) -> None:
    """Recompute the summary from the engines: every model's, or one model's (after the session's pending
    changes are flushed: the statements below are plain SQL, which does not autoflush)."""
    session.flush()
    where, params = ("WHERE model_id = :model", {"model": model_id}) if model_id else ("", {})
    session.execute(text(f"DELETE FROM engine_signatures {where}"), params)
    for statement in backfill_statements(where):
        session.execute(text(statement), params)
