"""PostgreSQL notifications: a loop that LISTENs on channels over its own connection and calls back, and
tells its caller when it is (dis)connected, reconnecting with backoff. Used by the API's read cache
(`registry/readcache.py`) and the dispatcher's outbox relay (`workers/dispatcher.py`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

log = logging.getLogger("trtfarm.notify")


def listen(dsn: str, channels: Sequence[str], on_notify: Callable[..., None], on_connected: Callable[[bool], None],
           stop: threading.Event, *, application: str, ping_s: float = 2.0, payloads: bool = False) -> None:
    """Until `stop`: LISTEN on `channels`, call `on_notify(channel)` per notification (`on_notify(channel,
    payload)` with `payloads`), `on_connected(True)` once listening and `on_connected(False)` whenever the
    connection is lost (and at the end). A connection lost without a word is found within `ping_s`."""
    import psycopg

    delay = 0.5
    while not stop.is_set():
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5, application_name=application) as conn:
                for channel in channels:
                    conn.execute(f"LISTEN {channel}")
                on_connected(True)  # changes before LISTEN are in whatever the caller does from now on
                delay = 0.5
                while not stop.is_set():
                    for note in conn.notifies(timeout=ping_s):
                        on_notify(*((note.channel, note.payload) if payloads else (note.channel,)))
                    conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure: report it, wait, connect again
            on_connected(False)
            log.warning("%s: not listening until reconnected: %s", application, exc)
            stop.wait(delay)
            delay = min(10.0, delay * 2)
    on_connected(False)


def postgres_dsn(database_url: str) -> str | None:
    """A libpq DSN for a PostgreSQL (psycopg) SQLAlchemy URL; None for any other database."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() not in ("psycopg", ""):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
