"""Retention: `gc` removes engines nobody needs, `delete_model` removes a model with everything built from it.

An engine is kept when any of these holds: it is pinned; it is among the newest `keep_last` of its group
(model, toolchain, version, device, spec family: the engines a client asking for that target and spec could
get); it was downloaded, or built, within `unused_days`; it was handed out within the grace period (a
download may be under way). The rest go: the engine row, its build (so that submitting the same request
builds it again instead of answering with a build whose engine is gone) and the build's outbox rows, in
one transaction per engine that checks the pin and the last download again under the row lock; then
each blob no row refers to any more (engines, model files, build logs, timing caches). Every removal is
logged (`trtfarm.retention`). The model's signature summary is rebuilt in the same transaction.
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
from registry.db.tables import Build, Engine, EngineFetch, Model, ModelFile, Outbox, TimingCache, utcnow
from registry.errors import Conflict, ModelNotFound
from registry.services import signatures
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
class GcReport:
    dry_run: bool
    removed: list[Removed] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # reason -> engines kept for it
    blobs_removed: int = 0
    bytes_freed: int = 0


def gc(db: Database, blobs: BlobStore, keep_last: int, unused_days: float, dry_run: bool = True,
       grace_s: float = GRACE_S) -> GcReport:
    now = utcnow()
    used_since, grace_since = now - timedelta(days=unused_days), now - timedelta(seconds=grace_s)
    report = GcReport(dry_run=dry_run)
    candidates = _candidates(db, keep_last, used_since, grace_since, report)
    if dry_run:
        report.removed = candidates
        return report
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
    return report


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


def _drop_unreferenced(db: Database, blobs: BlobStore, digest: str) -> list[str]:
    """Delete the blob unless a row still refers to it; [digest] when deleted."""
    with db.read_session() as s:
        used = s.scalar(select(or_(exists().where(Engine.digest == digest), exists().where(ModelFile.digest == digest),
                                   exists().where(Build.log_digest == digest),
                                   exists().where(TimingCache.digest == digest))))
    if used:
        return []
    blobs.delete(digest)
    log.info("blob removed digest=%s", digest)
    return [digest]
