"""Shared timing caches: one per partition, replaced by compare-and-swap on a generation number.

Partition (docs/design.md): toolchain version, compute capability, SKU, and the flags that change tactic
choice (precision flags, tf32, hardware compatibility level, tactic sources).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import TimingCache, TimingCacheBlob, utcnow
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


def partition_version(partition: str) -> str:
    """The TensorRT version of a partition key (partition_key's first component, `tensorrt-<version>`)."""
    return partition.split("/", 1)[0].removeprefix("tensorrt-")


def newest(db: Database, partition: str) -> CacheVersion:
    with db.session() as s:
        row = s.get(TimingCache, partition)
        if row is None:
            return CacheVersion(partition, 0, None, 0)
        return CacheVersion(partition, row.generation, row.digest, row.size)


def compare_and_swap(db: Database, partition: str, expected_generation: int, digest: str, size: int,
                     build_id: str) -> bool:
    """Install a new cache if the partition is still at `expected_generation`. False on conflict.

    Either way the blob is recorded in `timing_cache_blobs` in the same transaction: as the current generation
    (the one it replaces marked superseded), or, on a conflict, as never installed; `trtfarm gc` removes the
    superseded ones (registry.services.retention)."""
    with db.session() as s:
        now = utcnow()
        if expected_generation == 0:
            try:
                s.add(TimingCache(partition=partition, generation=1, digest=digest, size=size, updated_at=now,
                                  updated_by=build_id))
                s.flush()
            except IntegrityError:
                s.rollback()
                _record(s, partition, None, digest, size, build_id, now, superseded=True)
                return False
            _record(s, partition, 1, digest, size, build_id, now, superseded=False)
            return True
        won = s.execute(
            update(TimingCache)
            .where(TimingCache.partition == partition, TimingCache.generation == expected_generation)
            .values(generation=expected_generation + 1, digest=digest, size=size, updated_at=now,
                    updated_by=build_id)
        ).rowcount
        if won:
            s.execute(update(TimingCacheBlob)
                      .where(TimingCacheBlob.partition == partition, TimingCacheBlob.superseded_at.is_(None))
                      .values(superseded_at=now))
        _record(s, partition, expected_generation + 1 if won else None, digest, size, build_id, now,
                superseded=not won)
        return bool(won)


def _record(s: Session, partition: str, generation: int | None, digest: str, size: int, build_id: str,
            now: datetime, superseded: bool) -> None:
    s.add(TimingCacheBlob(partition=partition, generation=generation, digest=digest, size=size, build_id=build_id,
                          created_at=now, superseded_at=now if superseded else None))
