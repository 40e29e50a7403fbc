"""Fleet operations: build warnings, engine pins, engine fetch counts (their own table: counting a download
must not NOTIFY the read cache), worker instances (unique names) and drain requests.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as t:
        t.add_column(sa.Column("warnings", sa.JSON(), nullable=False, server_default="[]"))
    with op.batch_alter_table("engines") as t:
        t.add_column(sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("workers") as t:
        t.add_column(sa.Column("instance", sa.String(32), nullable=True))
        t.add_column(sa.Column("drain_requested", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "engine_fetches",
        sa.Column("engine_id", sa.String(32), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("last_fetched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_engine_fetches_last_fetched_at", "engine_fetches", ["last_fetched_at"])


def downgrade() -> None:
    op.drop_index("ix_engine_fetches_last_fetched_at", table_name="engine_fetches")
    op.drop_table("engine_fetches")
    with op.batch_alter_table("workers") as t:
        t.drop_column("drain_requested")
        t.drop_column("instance")
    with op.batch_alter_table("engines") as t:
        t.drop_column("pinned")
    with op.batch_alter_table("builds") as t:
        t.drop_column("warnings")
