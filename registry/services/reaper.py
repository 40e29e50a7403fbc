"""The reaper: builds whose lease expired go back to the queue (or fail after N attempts); queued builds
that an idle, live worker should have taken by now are published again; waiting reasons are refreshed.

Re-publishing is safe: a duplicate delivery finds no claimable row and is acked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update

from registry import events
from registry.db.session import Database
from registry.db.tables import Build, utcnow
from registry.services import buildevents, fleet, outbox
from registry.settings import Settings
from registry.status import BuildStatus


@dataclass
class ReapReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    republished: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


def reap(db: Database, settings: Settings) -> ReapReport:
    report = ReapReport()
    now = utcnow()
    with db.session() as s:
        expired = s.scalars(select(Build).where(Build.status == BuildStatus.RUNNING, Build.lease_until < now)).all()
        for b in expired:
            _expire(s, b, report)
        workers = fleet.live_workers(s, settings.worker_live_s)
        idle_queues = {q for w in workers if w.current_build is None and not w.drain_requested for q in w.queues}
        stale = now - timedelta(seconds=settings.requeue_stale_s)
        for cancelled in s.scalars(
                update(Build).where(Build.status == BuildStatus.QUEUED, Build.cancel_requested.is_(True))
                .values(status=BuildStatus.CANCELLED, finished_at=now, error_code="cancelled",
                        error_message="cancelled while its attempt was being handed back").returning(Build.id)).all():
            buildevents.state(s, cancelled)
        for b in s.scalars(select(Build).where(Build.status == BuildStatus.QUEUED)).all():
            b.waiting_reason = fleet.waiting_reason(b.queue, workers)
            if b.queue in idle_queues and (b.enqueued_at or b.created_at) < stale and not outbox.has_pending(s, b.id):
                outbox.enqueue(s, b.id, b.queue)
                report.republished.append(b.id)
    return report


def _expire(s, b: Build, report: ReapReport) -> None:  # noqa: ANN001
    guard = (Build.id == b.id) & (Build.attempt == b.attempt) & (Build.status == BuildStatus.RUNNING)
    if b.cancel_requested:  # its worker died before it could stop: the cancel stands, nothing runs it again
        _changed(s, b.id, update(Build).where(guard).values(
            status=BuildStatus.CANCELLED, finished_at=utcnow(), lease_until=None, error_code="cancelled",
            error_message=f"cancelled while running; its worker {b.worker} stopped answering before it stopped"))
        report.cancelled.append(b.id)
        events.event(b.id, "cancelled", reason="lease expired", worker=b.worker, attempt=b.attempt)
        return
    if b.attempt >= b.max_attempts:
        _changed(s, b.id, update(Build).where(guard).values(
            status=BuildStatus.FAILED, finished_at=utcnow(), lease_until=None, error_code="lease_expired",
            error_message=f"the lease expired on attempt {b.attempt} of {b.max_attempts} (last worker {b.worker}); "
                          "workers died or lost the database. Resubmit to try again."))
        report.failed.append(b.id)
        events.event(b.id, "failed", error="lease_expired", worker=b.worker, attempt=b.attempt)
        return
    if s.execute(update(Build).where(guard).values(status=BuildStatus.QUEUED, lease_until=None,
                                                   progress=f"lease expired on {b.worker}; requeued")).rowcount:
        outbox.enqueue(s, b.id, b.queue)
        buildevents.state(s, b.id)
        report.requeued.append(b.id)
        events.event(b.id, "requeued", reason="lease expired", worker=b.worker, attempt=b.attempt)


def _changed(s, build_id: str, statement) -> None:  # noqa: ANN001
    """Run a guarded UPDATE of a build's status; its event when it changed the row."""
    if s.execute(statement).rowcount:
        buildevents.state(s, build_id)
