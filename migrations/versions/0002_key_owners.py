"""API keys: unique names; builds and models remember the key that submitted them

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_api_keys_name", ["name"])
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("submitted_by", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_builds_submitted_by"), ["submitted_by"], unique=False)
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uploaded_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("uploaded_by")
    with op.batch_alter_table("builds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_builds_submitted_by"))
        batch_op.drop_column("submitted_by")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint("uq_api_keys_name", type_="unique")
