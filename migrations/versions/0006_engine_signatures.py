"""Engine signatures: per model, each engine signature with its newest time and count (resolve reads them
instead of grouping engines); filled from the engines. The wide resolve index of 0004 goes: nothing groups
engines any more. And build notifications (PostgreSQL): each committed change of a build row NOTIFYs
trtfarm_builds with the build's id, so the API's read cache forgets that build's answer alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of registry.services.signatures' backfill (tests/integration/test_migrations.py checks that
# both give the rows the service keeps).
BACKFILL = """
INSERT INTO engine_signatures (model_id, spec_family, toolchain, version, device, sku, cc, hardware_compatibility,
                               version_compatible, exclude_lean_runtime, validation_failed, newest, engines, example)
SELECT model_id, {family}, toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
       version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false), max(created_at), count(*),
       max(id)
FROM engines
GROUP BY model_id, {group}toolchain, version, device, coalesce(sku, ''), coalesce(cc, ''), hardware_compatibility,
         version_compatible, exclude_lean_runtime, coalesce(NOT validation_passed, false)"""
RESOLVE_INDEX = ["model_id", "toolchain", "version", "device", "hardware_compatibility", "version_compatible",
                 "exclude_lean_runtime", "sku", "cc", "validation_passed", "spec_family", "created_at",
                 "latency_p50_ms", "id"]


def upgrade() -> None:
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
        sa.ForeignKeyConstraint(["model_id"], ["models.id"]),
        sa.PrimaryKeyConstraint("model_id", "spec_family", "toolchain", "version", "device", "sku", "cc",
                                "hardware_compatibility", "version_compatible", "exclude_lean_runtime",
                                "validation_failed"),
    )
    for family, group in (("spec_family", "spec_family, "), ("'*'", "")):
        op.execute(BACKFILL.format(family=family, group=group))
    op.drop_index("ix_engines_resolve", table_name="engines")
    if op.get_bind().dialect.name == "postgresql":
        _build_notifications()


def _build_notifications() -> None:
    op.execute("""
        CREATE FUNCTION trtfarm_notify_build() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('trtfarm_builds', '');
            ELSIF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('trtfarm_builds', OLD.id);
            ELSE
                PERFORM pg_notify('trtfarm_builds', NEW.id);
            END IF;
            RETURN NULL;
        END $$""")
    op.execute("CREATE TRIGGER builds_notify_build AFTER INSERT OR UPDATE OR DELETE ON builds "
               "FOR EACH ROW EXECUTE FUNCTION trtfarm_notify_build()")
    op.execute("CREATE TRIGGER builds_notify_truncate AFTER TRUNCATE ON builds "
               "FOR EACH STATEMENT EXECUTE FUNCTION trtfarm_notify_build()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS builds_notify_truncate ON builds")
        op.execute("DROP TRIGGER IF EXISTS builds_notify_build ON builds")
        op.execute("DROP FUNCTION IF EXISTS trtfarm_notify_build()")
    op.create_index("ix_engines_resolve", "engines", RESOLVE_INDEX, unique=False)
    op.drop_table("engine_signatures")
