"""Retention: `gc` removes engines nobody needs and compacts the timing caches, `delete_model` removes a model
with everything built from it.

An engine is kept when any of these holds: it is pinned; it is among the newest `keep_last` of its group
(model, toolchain, version, device, spec family: the engines a client asking for that target and spec could
get); it was downloaded, or built, within `unused_days`; it was handed out within the grace period (a
download may be under way). The rest go: the engine row, its build (so that submitting the same request
builds it again instead of answering with a build whose engine is gone) and the build's outbox rows, in
one transaction per engine that checks the pin and the last download again under the row lock; then
each blob no row refers to any more (engines, model files, build logs, timing caches). Every removal is
logged (`trtfarm.retention`). The model's signature summary is rebuilt in the same transaction.

Timing caches (`timing_cache_blobs` records every blob a worker stored; a blob store cannot be listed): the
blob of a superseded generation, or of a merge that lost its compare-and-swap, goes once it has been out of
service for the grace period (a worker reads a partition's newest cache only) and no row refers to it; a
partition's current cache is never removed on its own. A whole partition goes, its row, its records and their
blobs, when nothing used it within `unused_days` (written by a merge, or used by a finished build) and no live
worker serves its TensorRT version, nor waits a queued or running build of that version. A worker that finds
a cache's blob gone builds with an empty cache (workers/timing_sync.py).

Uploaded build inputs (calibration data sets and caches, plugin libraries) no build names go once uploaded
before `unused_days` (registry.services.input_retention).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.db.tables import (
    Build,
    Calibration,
    CalibrationCache,
    Engine,
    EngineFetch,
    Model,
    ModelFile,
    Outbox,
    Plugin,
    TimingCache,
    TimingCacheBlob,
    utcnow,
)
from registry.errors import Conflict, ModelNotFound
from registry.services import fleet, input_retention, signatures
from registry.services.timing_caches import partition_version
from registry.status import BuildStatus

log = logging.getLogger("trtfarm.retention")
GRACE_S = 900  # an engine handed out this recently may be mid-download: never removed


@dataclass
class Removed:
    engine_id: str
    model: str
    target: str
    size: int
    created_at: datetime
    last_fetched_at: datetime | None


@dataclass
class CacheRemoved:
    """A timing-cache blob gc removes (or, in a dry run, would remove)."""

    partition: str
    generation: int | None  # None: a merge that lost its compare-and-swap
    digest: str
    size: int
    reason: str  # superseded, not_installed (lost its swap), partition_unused (the whole partition goes)
    since: datetime  # out of service since (superseded at); partition_unused: last written or used by a build


@dataclass
class GcReport:
    dry_run: bool
    removed: list[Removed] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # reason -> engines kept for it
    blobs_removed: int = 0  # every blob: engines, logs, timing caches
    bytes_freed: int = 0  # by engines
    timing_caches_removed: list[CacheRemoved] = field(default_factory=list)
    timing_caches_kept: dict[str, int] = field(default_factory=dict)  # reason -> partitions kept whole for it
    timing_cache_bytes_freed: int = 0
    inputs_removed: list[input_retention.InputRemoved] = field(default_factory=list)  # calibration, plugins
    input_bytes_freed: int = 0


def gc(db: Database, blobs: BlobStore, keep_last: int, unused_days: float, dry_run: bool = True,
       grace_s: float = GRACE_S, live_s: int = 60) -> GcReport:
    """Engines, then timing caches (see the module's docstring); `live_s`: a worker whose heartbeat is older
    serves nothing (settings.worker_live_s)."""
    now = utcnow()
    used_since, grace_since = now - timedelta(days=unused_days), now - timedelta(seconds=grace_s)
    report = GcReport(dry_run=dry_run)
    _gc_engines(db, blobs, keep_last, unused_days, used_since, grace_since, report)
    _compact_timing_caches(db, blobs, min(used_since, grace_since), grace_since, live_s, report)
    report.inputs_removed, dropped = input_retention.collect(db, lambda d: _drop_unreferenced(db, blobs, d),
                                                              min(used_since, grace_since), dry_run)
    report.blobs_removed += dropped
    report.input_bytes_freed = 0 if dry_run else sum(item.size for item in report.inputs_removed)
    return report


def _gc_engines(db: Database, blobs: BlobStore, keep_last: int, unused_days: float, used_since: datetime,
                grace_since: datetime, report: GcReport) -> None:
    candidates = _candidates(db, keep_last, used_since, grace_since, report)
    if report.dry_run:
        report.removed = candidates
        return
    for item in candidates:
        removed = _remove_engine(db, item, max(used_since, grace_since) if unused_days > 0 else grace_since)
        if removed is None:
            continue  # pinned or fetched meanwhile
        report.removed.append(item)
        log.info("gc removed engine=%s model=%s target=%s size=%d created=%s last_fetched=%s", item.engine_id,
                 item.model, item.target, item.size, item.created_at.isoformat(),
                 item.last_fetched_at.isoformat() if item.last_fetched_at else "never")
        digest, logs = removed
        freed = [d for blob in (digest, *logs) for d in _drop_unreferenced(db, blobs, blob)]
        report.blobs_removed += len(freed)
        report.bytes_freed += item.size if digest in freed else 0


def _candidates(db: Database, keep_last: int, used_since: datetime, grace_since: datetime,
                report: GcReport) -> list[Removed]:
    query = (select(Engine.id, Engine.model_id, Engine.toolchain, Engine.version, Engine.device, Engine.spec_family,
                    Engine.created_at, Engine.pinned, Engine.size, EngineFetch.last_fetched_at)
             .outerjoin(EngineFetch, EngineFetch.engine_id == Engine.id)
             .order_by(Engine.created_at.desc(), Engine.id))
    groups: dict[tuple, int] = defaultdict(int)
    found, kept = [], defaultdict(int)
    with db.read_session() as s:
        for eid, model, kind, version, device, family, created, pinned, size, fetched in s.execute(query):
            group = (model, kind, version, device, family)
            groups[group] += 1
            reason = ("pinned" if pinned else "newest" if groups[group] <= keep_last
                      else "grace" if fetched is not None and fetched >= grace_since
                      else "used" if max(created, fetched or created) >= used_since else None)
            if reason:
                kept[reason] += 1
            else:
                found.append(Removed(eid, model, f"{kind}=={version}@{device}", size, created, fetched))
    report.kept = dict(kept)
    return found


def _remove_engine(db: Database, item: Removed, fetched_before: datetime) -> tuple[str, list[str]] | None:
    """Delete the engine, its build and outbox rows unless it got pinned or fetched since: (the engine's digest,
    its build's log digests), or None."""
    with db.session() as s:
        row = s.get(Engine, item.engine_id, with_for_update=True)
        recent = select(EngineFetch.engine_id).where(EngineFetch.engine_id == item.engine_id,
                                                     EngineFetch.last_fetched_at >= fetched_before)
        if row is None or row.pinned or s.scalar(recent) is not None:
            return None
        digest, build_id = row.digest, row.build_id
        s.delete(row)
        s.execute(delete(EngineFetch).where(EngineFetch.engine_id == item.engine_id))
        s.flush()
        logs = _delete_builds(s, [build_id])
        signatures.rebuild(s, item.model)
        return digest, logs


def _delete_builds(s: Session, build_ids: list[str]) -> list[str]:
    """Delete builds and their outbox rows; the digests of their logs."""
    logs = [d for d in s.scalars(select(Build.log_digest).where(Build.id.in_(build_ids))) if d]
    s.execute(delete(Outbox).where(Outbox.build_id.in_(build_ids)))
    s.execute(delete(Build).where(Build.id.in_(build_ids)))
    return logs


def delete_model(db: Database, blobs: BlobStore, model_id: str) -> dict:
    """Remove a model, its files, builds and engines (refused while a build of it is queued or running)."""
    with db.session() as s:
        if s.get(Model, model_id, with_for_update=True) is None:
            raise ModelNotFound(f"no model {model_id}")
        active = s.scalars(select(Build.id).where(Build.model_id == model_id,
                                                  Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING]))).all()
        if active:
            raise Conflict(f"model {model_id} has {len(active)} queued or running build(s) ({', '.join(active[:5])}); "
                           "cancel them (trtfarm cancel ID) or wait, then delete it")
        engines = s.execute(select(Engine.id, Engine.digest).where(Engine.model_id == model_id)).all()
        files = list(s.scalars(select(ModelFile.digest).where(ModelFile.model_id == model_id)))
        s.execute(delete(EngineFetch).where(EngineFetch.engine_id.in_([e for e, _ in engines])))
        s.execute(delete(Engine).where(Engine.model_id == model_id))
        logs = _delete_builds(s, list(s.scalars(select(Build.id).where(Build.model_id == model_id))))
        s.execute(delete(ModelFile).where(ModelFile.model_id == model_id))
        s.flush()
        signatures.rebuild(s, model_id)  # no engines left: no summary rows (they refer to the model)
        s.execute(delete(Model).where(Model.id == model_id))
    freed = [d for digest in {*(d for _, d in engines), *files, *logs} for d in _drop_unreferenced(db, blobs, digest)]
    log.info("model removed model=%s engines=%d files=%d blobs=%d", model_id, len(engines), len(files), len(freed))
    return {"model": model_id, "engines": len(engines), "files": len(files), "blobs_removed": len(freed)}


def delete_input(db: Database, blobs: BlobStore, digest: str, plugin: bool) -> dict:
    """Remove an uploaded calibration input or plugin library now (registry.services.input_retention)."""
    return input_retention.delete_input(db, lambda d: _drop_unreferenced(db, blobs, d), digest, plugin)


def _drop_unreferenced(db: Database, blobs: BlobStore, digest: str) -> list[str]:
    """Delete the blob unless a row still refers to it; [digest] when deleted."""
    with db.read_session() as s:
        if _referenced(s, digest):
            return []
    blobs.delete(digest)
    log.info("blob removed digest=%s", digest)
    return [digest]


def _referenced(s: Session, digest: str, records: bool = True) -> bool:
    """Whether a row refers to the blob (`records`: counting the timing-cache blob records)."""
    refs = [exists().where(Engine.digest == digest), exists().where(ModelFile.digest == digest),
            exists().where(Build.log_digest == digest), exists().where(TimingCache.digest == digest),
            exists().where(Calibration.digest == digest), exists().where(CalibrationCache.cache_digest == digest),
            exists().where(Plugin.digest == digest)]
    if records:
        refs.append(exists().where(TimingCacheBlob.digest == digest))
    return bool(s.scalar(select(or_(*refs))))


# ------------------------------------------------------------------------------------------ timing caches


def _compact_timing_caches(db: Database, blobs: BlobStore, used_since: datetime, grace_since: datetime,
                           live_s: int, report: GcReport) -> None:
    with db.read_session() as s:
        dead, report.timing_caches_kept = _unused_partitions(s, used_since, live_s)
        superseded = _superseded(s, grace_since, skip=set(dead))
    if report.dry_run:
        report.timing_caches_removed = [item for items in dead.values() for item in items] + superseded
        return
    for partition, planned in dead.items():
        _note_removed(db, blobs, report, _drop_partition(db, partition, planned, used_since, live_s))
    for item in superseded:
        if _forget_superseded(db, item.digest):
            _note_removed(db, blobs, report, [item])


def _note_removed(db: Database, blobs: BlobStore, report: GcReport, items: list[CacheRemoved]) -> None:
    for item in items:
        report.timing_caches_removed.append(item)
        log.info("gc removed timing-cache partition=%s generation=%s digest=%s size=%d reason=%s since=%s",
                 item.partition, item.generation, item.digest, item.size, item.reason, item.since.isoformat())
        if _drop_unreferenced(db, blobs, item.digest):
            report.blobs_removed += 1
            report.timing_cache_bytes_freed += item.size


def _served_versions(s: Session, live_s: int) -> set[str]:
    """The TensorRT versions the live workers (drained ones too: they may resume) have."""
    return {tc["version"] for w in fleet.live_workers(s, live_s) for tc in w.toolchains if tc.get("kind") == "tensorrt"}


def _unused_partitions(s: Session, since: datetime, live_s: int) -> tuple[dict[str, list[CacheRemoved]], dict]:
    """({partition: its blobs} of the partitions that go whole, {reason: partitions kept whole for it})."""
    served = _served_versions(s, live_s)
    pending = set(s.scalars(select(Build.version).distinct().where(
        Build.toolchain == "tensorrt", Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING]))))
    used: dict[str, datetime] = {}  # partition -> the last build that used it (the builds record it as they finish)
    for record, finished in s.execute(select(Build.timing_cache, Build.finished_at).where(
            Build.toolchain == "tensorrt", Build.finished_at >= since)):
        if isinstance(record, dict) and record.get("partition"):
            used[record["partition"]] = max(finished, used.get(record["partition"], finished))
    dead, kept = {}, defaultdict(int)
    for row in s.scalars(select(TimingCache).order_by(TimingCache.partition)):
        version, last = partition_version(row.partition), max(row.updated_at, used.get(row.partition, row.updated_at))
        reason = ("served" if version in served else "queued" if version in pending
                  else "used" if last >= since else None)
        if reason:
            kept[reason] += 1
        else:
            dead[row.partition] = _partition_blobs(s, row, last)
    return dead, dict(kept)


def _partition_blobs(s: Session, row: TimingCache, last: datetime) -> list[CacheRemoved]:
    """The partition's current blob, then each other blob recorded for it (one entry per digest)."""
    found = {row.digest: CacheRemoved(row.partition, row.generation, row.digest, row.size, "partition_unused", last)}
    records = select(TimingCacheBlob).where(TimingCacheBlob.partition == row.partition).order_by(
        TimingCacheBlob.id.desc())
    for r in s.scalars(records):
        found.setdefault(r.digest, CacheRemoved(r.partition, r.generation, r.digest, r.size, "partition_unused", last))
    return list(found.values())


def _superseded(s: Session, grace_since: datetime, skip: set[str]) -> list[CacheRemoved]:
    """One entry per blob recorded for a timing cache that no partition has as its current cache, out of service
    since before `grace_since` and not referred to by any other row; partitions in `skip` left out."""
    moved = dict(s.execute(select(TimingCache.partition, TimingCache.updated_at)).all())
    groups: dict[str, list[TimingCacheBlob]] = defaultdict(list)
    for r in s.scalars(select(TimingCacheBlob).where(TimingCacheBlob.digest.not_in(select(TimingCache.digest)))
                       .order_by(TimingCacheBlob.id)):
        groups[r.digest].append(r)
    found = []
    for digest, group in groups.items():
        # no superseded_at: replaced by a worker that kept no records (an older version): at the last write
        since = max(r.superseded_at or moved.get(r.partition) or r.created_at for r in group)
        if any(r.partition in skip for r in group) or since >= grace_since or _referenced(s, digest, False):
            continue
        last = max(group, key=lambda r: (r.generation or 0, r.id))
        found.append(CacheRemoved(last.partition, last.generation, digest, last.size,
                                  "superseded" if last.generation else "not_installed", since))
    return found


def _forget_superseded(db: Database, digest: str) -> bool:
    """Delete the blob's records unless a partition has installed the same bytes again meanwhile."""
    with db.session() as s:
        if s.scalar(select(exists().where(TimingCache.digest == digest))):
            return False
        s.execute(delete(TimingCacheBlob).where(TimingCacheBlob.digest == digest))
        return True


def _drop_partition(db: Database, partition: str, planned: list[CacheRemoved], since: datetime,
                    live_s: int) -> list[CacheRemoved]:
    """Delete the partition's row and records unless, under the row's lock, it got written or its version
    served meanwhile: its blobs, or []."""
    with db.session() as s:
        row = s.get(TimingCache, partition, with_for_update=True)
        version = partition_version(partition)
        if (row is None or row.generation != planned[0].generation or row.updated_at >= since
                or version in _served_versions(s, live_s)):
            return []
        items = _partition_blobs(s, row, planned[0].since)
        s.execute(delete(TimingCacheBlob).where(TimingCacheBlob.partition == partition))
        s.delete(row)
    log.info("gc removed timing-cache partition=%s version=%s generation=%d last_used=%s: no live worker serves "
             "tensorrt %s", partition, version, planned[0].generation, planned[0].since.isoformat(), version)
    return items
