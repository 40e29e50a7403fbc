"""Shared timing caches: one per partition, replaced by compare-and-swap on a generation number.

Partition (docs/design.md): toolchain version, compute capability, SKU, and the flags that change tactic
choice (precision flags, tf32, hardware compatibility level, tactic sources).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from registry.db.session import Database
from registry.db.tables import TimingCache, utcnow
from registry.spec import BuildSpec


@dataclass(frozen=True)
class CacheVersion:
    partition: str
    generation: int  # 0 = no cache yet
    digest: str | None
    size: int


def partition_key(*, version: str, cc: str, sku: str, spec: BuildSpec) -> str:
    flags = [
        f"p={'+'.join(spec.precision or ('fp32',))}",
        f"tf32={int(spec.tf32)}",
        f"st={int(spec.strongly_typed)}",
        f"hw={spec.hardware_compatibility}",
        f"ts={'+'.join(spec.tactic_sources or ('default',))}",
    ]
    return f"tensorrt-{version}/{cc}/{sku}/{','.join(flags)}"


def newest(db: Database, partition: str) -> CacheVersion:
    with db.session() as s:
        row = s.get(TimingCache, partition)
        if row is None:
            return CacheVersion(partition, 0, None, 0)
        return CacheVersion(partition, row.generation, row.digest, row.size)


def compare_and_swap(db: Database, partition: str, expected_generation: int, digest: str, size: int,
                     build_id: str) -> bool:
    """Install a new cache if the partition is still at `expected_generation`. False on conflict."""
    with db.session() as s:
        if expected_generation == 0:
            try:
                s.add(TimingCache(partition=partition, generation=1, digest=digest, size=size, updated_by=build_id))
                s.flush()
                return True
            except IntegrityError:
                s.rollback()
                return False
        won = s.execute(
            update(TimingCache)
            .where(TimingCache.partition == partition, TimingCache.generation == expected_generation)
            .values(generation=expected_generation + 1, digest=digest, size=size, updated_at=utcnow(),
                    updated_by=build_id)
        ).rowcount
        return bool(won)
