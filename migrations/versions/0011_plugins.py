"""TensorRT plugin libraries: `plugins`, one row per uploaded library (POST /v1/plugins, admin scope) by the
digest of its blob, with the file name, size and ELF architecture. Which of them builds may load is a setting
(TRTFARM_ALLOWED_PLUGINS, per process), not a column.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-14

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plugins",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("machine", sa.String(32), nullable=False),
        sa.Column("uploaded_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("plugins")
