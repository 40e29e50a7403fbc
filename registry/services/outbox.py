"""The outbox: "publish build X to queue Q" rows written in the same transaction as the state change that
needs them (a submit, a requeue), relayed to the broker by the dispatcher (`workers/dispatcher.py`).

A row is marked published only after the broker took the message, so a relay that dies in between
publishes it again; a duplicate delivery finds no claimable build and is acked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, Outbox, utcnow


@dataclass(frozen=True)
class Message:
    outbox_id: int
    build_id: str
    queue: str


def enqueue(session: Session, build_id: str, queue: str) -> None:
    """Add "publish build_id to queue" to the caller's transaction."""
    session.add(Outbox(build_id=build_id, queue=queue))


def has_pending(session: Session, build_id: str) -> bool:
    """Whether a message for the build is still waiting to be published."""
    query = select(Outbox.id).where(Outbox.build_id == build_id, Outbox.published_at.is_(None))
    return session.scalar(query) is not None


def _pending_query(limit: int):  # noqa: ANN202 - a Select
    return (select(Outbox.id, Outbox.build_id, Outbox.queue).where(Outbox.published_at.is_(None))
            .order_by(Outbox.id).limit(limit))


def pending(db: Database, limit: int = 100) -> list[Message]:
    with db.session() as s:
        return [Message(*r) for r in s.execute(_pending_query(limit)).all()]


def _mark_published(session: Session, message: Message) -> None:
    now = utcnow()
    session.execute(update(Outbox).where(Outbox.id == message.outbox_id).values(published_at=now))
    session.execute(update(Build).where(Build.id == message.build_id).values(enqueued_at=now))


def relay(db: Database, publish: Callable[[Message], None], limit: int = 100) -> int:
    """Publish pending messages in order (`publish` raises when the broker refuses); returns how many.

    The rows are taken with FOR UPDATE SKIP LOCKED (PostgreSQL) and marked in the same transaction: a second
    dispatcher (another API replica running one) skips the rows this one is publishing instead of publishing
    them again. When a publish fails, the messages before it are committed as published and the rest stay
    pending. (SQLite has one writer at a time and ignores the lock clause.)"""
    sent = 0
    with db.session() as s:
        for row in s.execute(_pending_query(limit).with_for_update(skip_locked=True)).all():
            message = Message(*row)
            try:
                publish(message)
            except BaseException:
                s.commit()  # what the broker took stays published
                raise
            _mark_published(s, message)
            sent += 1
    return sent
