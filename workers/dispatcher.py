"""The dispatcher: relays the outbox to the broker and runs the reaper.

One per farm is enough and more are harmless (publishing twice only makes a duplicate delivery, which
finds no claimable build). It runs as its own process (`trtfarm dispatcher`) or as a thread of the API
process (`trtfarm api`, the default; `trtfarm up`).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import suppress
from typing import Any

from registry import events
from registry.db.session import Database
from registry.notify import listen, postgres_dsn
from registry.queues import BUILD_TASK
from registry.services import outbox, reaper
from registry.settings import Settings
from workers.celery_app import make_celery

log = logging.getLogger("trtfarm.dispatcher")
OUTBOX_CHANNEL = "trtfarm_outbox"  # migration 0005


class Publisher:
    """Sends "build X" tasks over one broker connection, opened on first use and after any error."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_celery(settings)
        self._conn: Any = None
        self._producer: Any = None

    def __call__(self, message: outbox.Message) -> None:
        if self._conn is None:
            self._conn = self.app.connection_for_write()
            self._producer = self.app.amqp.Producer(self._conn)
        self.app.send_task(BUILD_TASK, args=[message.build_id], queue=message.queue, producer=self._producer)
        events.event(message.build_id, "queued", queue=message.queue)

    def reset(self) -> None:
        """Drop the connection: after an error it may stay unusable (kombu's SQLAlchemy transport keeps a
        session that failed a flush); unpublished outbox rows are retried on a fresh one."""
        if self._conn is not None:
            with suppress(Exception):  # closing a broken connection may fail too
                self._conn.release()
        self._conn = self._producer = None


def run_dispatcher(settings: Settings, stop: threading.Event) -> None:
    """Publish outbox rows to their queues; run the reaper every reaper_interval_s; until `stop` is set.
    On PostgreSQL a new outbox row wakes it at once (NOTIFY trtfarm_outbox); relay_interval_s is the poll
    that remains (SQLite, or while the listener reconnects)."""
    db = Database(settings.resolved_database_url())
    publish = Publisher(settings)
    woken = _outbox_wakeups(settings, stop)
    next_reap = 0.0
    while not stop.is_set():
        try:
            outbox.relay(db, publish)
            if time.monotonic() >= next_reap:
                reaper.reap(db, settings)
                next_reap = time.monotonic() + settings.reaper_interval_s
        except Exception as exc:  # noqa: BLE001 - the dispatcher outlives broker/database hiccups
            log.warning("dispatcher: %s", exc)
            publish.reset()
            stop.wait(2.0)
        woken.wait(settings.relay_interval_s)
        woken.clear()
    publish.reset()


def _outbox_wakeups(settings: Settings, stop: threading.Event) -> threading.Event:
    """An event set by each outbox notification (PostgreSQL) and when `stop` is; never set otherwise."""
    woken = threading.Event()
    dsn = postgres_dsn(settings.resolved_database_url())
    if dsn:
        threading.Thread(target=listen, args=(dsn, [OUTBOX_CHANNEL], lambda _: woken.set(), lambda _: None, stop),
                         kwargs={"application": "trtfarm-dispatcher"}, daemon=True, name="outbox-listener").start()
    threading.Thread(target=lambda: (stop.wait(), woken.set()), daemon=True, name="dispatcher-stop").start()
    return woken


def start_dispatcher_thread(settings: Settings) -> threading.Event:
    """Run the dispatcher in a daemon thread of this process; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=run_dispatcher, args=(settings, stop), daemon=True, name="dispatcher").start()
    return stop
