"""Live build events (GET /v1/builds/{id}/events, GET /v1/events): `build_events`, appended by the services at
each transition of a build (state, stage, end) and with its log lines (one row per chunk the worker sends,
numbering one id per line). `builds.event_seq` is the build's last event number: bumping it in the
transaction that appends serializes two writers of one build. On PostgreSQL every inserted event sends
`NOTIFY trtfarm_events, '<build id>'`; the API's streams wait on it (SQLite: they poll).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-16

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("builds", sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "build_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("build_id", sa.String(32), sa.ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_build_events_build_seq", "build_events", ["build_id", "seq"], unique=True)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION trtfarm_notify_event() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('trtfarm_events', NEW.build_id);
                RETURN NULL;
            END $$""")
        op.execute("CREATE TRIGGER build_events_notify AFTER INSERT ON build_events "
                   "FOR EACH ROW EXECUTE FUNCTION trtfarm_notify_event()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS build_events_notify ON build_events")
        op.execute("DROP FUNCTION IF EXISTS trtfarm_notify_event()")
    op.drop_index("ix_build_events_build_seq", table_name="build_events")
    op.drop_table("build_events")
    op.drop_column("builds", "event_seq")
