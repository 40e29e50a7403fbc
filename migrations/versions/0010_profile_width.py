"""Profile width: each engine's `profile_width` (log2 of how many input shapes its optimization profiles hold;
an ONNX Runtime engine without profiles holds any shape), computed from the existing engines' specs; and the
signature summary rebuilt with each signature's widest width and the newest time among its engines of that
width (resolve ranks a match class's engines widest first, then newest).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12

"""
import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 5000
ANY_SHAPE_WIDTH = 1e6

# Frozen copies of registry.services.signatures' backfill (this revision's summary) and of 0006's (the one a
# downgrade restores); tests/integration/test_migrations.py checks that this gives the rows the service keeps.
BACKFILL = """
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
      FROM engines) engines
GROUP BY model_id, {group}toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
         version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false)"""
BACKFILL_0006 = """
INSERT INTO engine_signatures (model_id, spec_family, toolchain, version, device, sku, cc, hardware_compatibility,
                               version_compatible, exclude_lean_runtime, validation_failed, newest, engines, example)
SELECT model_id, {family}, toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
       version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false), max(created_at), count(*),
       max(id)
FROM engines
GROUP BY model_id, {group}toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
         version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false)"""
FAMILIES = (("spec_family", "spec_family, "), ("'*'", ""))


def upgrade() -> None:
    with op.batch_alter_table("engines") as t:
        t.add_column(sa.Column("profile_width", sa.Float(), nullable=False, server_default="0"))
    _fill_widths()
    op.drop_table("engine_signatures")
    _summary_table(widest=True)
    for family, group in FAMILIES:
        op.execute(BACKFILL.format(family=family, group=group))


def downgrade() -> None:
    op.drop_table("engine_signatures")
    _summary_table(widest=False)
    for family, group in FAMILIES:
        op.execute(BACKFILL_0006.format(family=family, group=group))
    with op.batch_alter_table("engines") as t:
        t.drop_column("profile_width")


def _fill_widths() -> None:
    """Every engine's width from its spec, in chunks of ids (the width of a spec is computed once)."""
    engines = sa.table("engines", sa.column("id", sa.String), sa.column("toolchain", sa.String),
                       sa.column("spec", sa.JSON), sa.column("profile_width", sa.Float))
    update = sa.update(engines).where(engines.c.id == sa.bindparam("key")).values(profile_width=sa.bindparam("w"))
    conn, last, known = op.get_bind(), "", {}
    while True:
        rows = conn.execute(sa.select(engines.c.id, engines.c.toolchain, engines.c.spec)
                            .where(engines.c.id > last).order_by(engines.c.id).limit(CHUNK)).all()
        if not rows:
            return
        changed = []
        for engine_id, toolchain, spec in rows:
            profiles = (spec or {}).get("profiles") or []
            key = (toolchain, repr(profiles))
            if key not in known:
                known[key] = _width(profiles, toolchain)
            if known[key]:
                changed.append({"key": engine_id, "w": known[key]})
        if changed:
            conn.execute(update, changed)
        last = rows[-1][0]


def _width(profiles: list[dict], toolchain: str) -> float:
    """registry.services.shapes.profile_width on the stored spec's profiles (a frozen copy)."""
    if not profiles:
        return ANY_SHAPE_WIDTH if toolchain == "onnxruntime" else 0.0
    groups: dict[tuple, set] = {}
    for profile in profiles:
        names = sorted(profile)
        ranks = tuple((n, len(profile[n]["min"])) for n in names)
        groups.setdefault(ranks, set()).add(tuple((lo, hi) for n in names
                                                  for lo, hi in zip(profile[n]["min"], profile[n]["max"])))
    count = sum(_union(list(boxes)) for boxes in groups.values())
    return round(math.log2(count), 9) if count > 1 else 0.0


def _union(boxes: list[tuple]) -> int:
    if len(boxes) == 1:
        return math.prod(hi - lo + 1 for lo, hi in boxes[0])
    if not boxes[0]:
        return 1
    cuts = sorted({lo for (lo, _), *_ in boxes} | {hi + 1 for (_, hi), *_ in boxes})
    total = 0
    for start, end in zip(cuts, cuts[1:]):
        spanning = list({box[1:] for box in boxes if box[0][0] <= start and end - 1 <= box[0][1]})
        if spanning:
            total += (end - start) * _union(spanning)
    return total


def _summary_table(widest: bool) -> None:
    """engine_signatures as this revision (widest) or 0006 has it."""
    columns = [sa.Column("widest", sa.Float(), nullable=False),
               sa.Column("widest_newest", sa.DateTime(timezone=True), nullable=False)] if widest else []
    op.create_table(
        "engine_signatures",
        sa.Column("model_id", sa.String(length=71), nullable=False),
        sa.Column("spec_family", sa.String(length=64), nullable=False),
        sa.Column("toolchain", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("device", sa.String(length=128), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("cc", sa.String(length=16), nullable=False),
        sa.Column("hardware_compatibility", sa.String(length=32), nullable=False),
        sa.Column("version_compatible", sa.Boolean(), nullable=False),
        sa.Column("exclude_lean_runtime", sa.Boolean(), nullable=False),
        sa.Column("validation_failed", sa.Boolean(), nullable=False),
        sa.Column("newest", sa.DateTime(timezone=True), nullable=False),
        sa.Column("engines", sa.BigInteger(), nullable=False),
        sa.Column("example", sa.String(length=32), nullable=False),
        *columns,
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "spec_family", "toolchain", "version", "device", "sku", "cc",
                                "hardware_compatibility", "version_compatible", "exclude_lean_runtime",
                                "validation_failed"),
    )
