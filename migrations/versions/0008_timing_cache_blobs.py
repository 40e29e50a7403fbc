"""Timing-cache blobs: every generation a worker stored (current, superseded, or a merge that lost its
compare-and-swap), so that `trtfarm gc` can remove the superseded ones (a blob store cannot be listed).
Backfilled with each partition's current generation; blobs superseded before this revision are not known.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "timing_cache_blobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("partition", sa.String(255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("build_id", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_timing_cache_blobs_partition", "timing_cache_blobs", ["partition"])
    op.create_index("ix_timing_cache_blobs_digest", "timing_cache_blobs", ["digest"])
    op.execute('INSERT INTO timing_cache_blobs ("partition", generation, digest, size, build_id, created_at) '
               'SELECT "partition", generation, digest, size, updated_by, updated_at FROM timing_caches')


def downgrade() -> None:
    op.drop_index("ix_timing_cache_blobs_digest", table_name="timing_cache_blobs")
    op.drop_index("ix_timing_cache_blobs_partition", table_name="timing_cache_blobs")
    op.drop_table("timing_cache_blobs")
