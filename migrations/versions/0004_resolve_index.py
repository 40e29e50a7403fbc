"""Resolve in SQL: an index holding every column resolve groups and filters engines by; (model, time)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

"""
from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["model_id", "toolchain", "version", "device", "hardware_compatibility", "version_compatible",
           "exclude_lean_runtime", "sku", "cc", "validation_passed", "spec_family", "created_at", "latency_p50_ms", "id"]


def upgrade() -> None:
    op.create_index("ix_engines_resolve", "engines", COLUMNS, unique=False)
    # the engines of a model at one time (resolve's tie-break), and a model's engines newest first
    op.create_index("ix_engines_model_created", "engines", ["model_id", "created_at"], unique=False)
    op.drop_index("ix_engines_model_id", table_name="engines")


def downgrade() -> None:
    op.create_index("ix_engines_model_id", "engines", ["model_id"], unique=False)
    op.drop_index("ix_engines_model_created", table_name="engines")
    op.drop_index("ix_engines_resolve", table_name="engines")
