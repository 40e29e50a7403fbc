"""INT8 calibration: uploaded calibration data sets and caches (`calibrations`), the caches builds made from a
data set, found again by the next build of the same model, data set, TensorRT version and calibrator
(`calibration_caches`), and each model's op-type summary (`models.op_types`, NULL for the models registered
before: their Q/DQ nodes are unknown and submit says so instead of refusing).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-13

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as t:
        t.add_column(sa.Column("op_types", sa.JSON(), nullable=True))
    op.create_table(
        "calibrations",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("uploaded_by", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "calibration_caches",
        sa.Column("model_id", sa.String(71), sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data_digest", sa.String(71), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("algorithm", sa.String(16), primary_key=True),
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("cache_digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("build_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("calibration_caches")
    op.drop_table("calibrations")
    with op.batch_alter_table("models") as t:
        t.drop_column("op_types")
