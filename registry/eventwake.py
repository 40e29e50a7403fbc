"""What wakes the API's event streams (api/routes/events.py), one per API process.

On PostgreSQL every stored build event sends `NOTIFY trtfarm_events, '<build id>'` (migration 0012). A
listener thread (registry/notify.py) LISTENs on its own connection and wakes, on the event loop, the streams
of that build and the fleet streams: a stream holds no database connection while it waits. While the listener
is not connected (and always on SQLite, which has no notifications) streams look every `poll_s` instead.

It also counts the open streams (at most `limit`: TooManyStreams beyond) and shares one read of the fleet's
workers per second among the fleet streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from registry.errors import TooManyStreams
from registry.notify import listen, postgres_dsn

CHANNEL = "trtfarm_events"
APPLICATION = "trtfarm-events"
FALLBACK_S = 5.0  # with the listener connected, a stream still looks this often (a notification lost in a hiccup)


class EventWaker:
    def __init__(self, database_url: str, *, limit: int, poll_s: float) -> None:
        self._dsn = postgres_dsn(database_url)
        self.limit, self.poll_s = limit, poll_s
        self.live = False
        self.open = 0
        self._waiters: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Event, str | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: tuple[float, Any] | None = None
        self._workers_lock = threading.Lock()

    @property
    def wait_s(self) -> float:
        """How long a stream waits for a notification before it looks anyway."""
        return FALLBACK_S if self.live else self.poll_s

    def check(self) -> None:
        """TooManyStreams when this process serves its most streams (before a new one starts)."""
        if self.open >= self.limit:
            raise TooManyStreams(f"this API process already serves {self.limit} event streams "
                                 "(TRTFARM_EVENT_STREAMS); try again later, or poll GET /v1/builds/{id}",
                                 details={"limit": self.limit})

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One open stream, counted for as long as it is open (check() refused those over the limit)."""
        with self._lock:
            self.open += 1
        try:
            yield
        finally:
            with self._lock:
                self.open -= 1

    @contextlib.contextmanager
    def watch(self, build_id: str | None) -> Iterator[asyncio.Event]:
        """An asyncio.Event set when an event of `build_id` (None: of any build) is stored."""
        if self._dsn and self._thread is None:
            self._start()
        wake = asyncio.Event()
        with self._lock:
            self._waiters[id(wake)] = (asyncio.get_running_loop(), wake, build_id)
        try:
            yield wake
        finally:
            with self._lock:
                self._waiters.pop(id(wake), None)

    def workers(self, read: Callable[[], Any], max_age_s: float = 1.0) -> Any:
        """The fleet's workers, read at most once per `max_age_s` for all the fleet streams of this process
        (called in a worker thread)."""
        with self._workers_lock:
            now = time.monotonic()
            if self._workers is None or now - self._workers[0] >= max_age_s:
                self._workers = (now, read())
            return self._workers[1]

    def close(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name=APPLICATION, daemon=True)
                self._thread.start()

    def _listen(self) -> None:
        listen(self._dsn or "", [CHANNEL], self._notified, self._connected, self._stop, application=APPLICATION,
               payloads=True)

    def _connected(self, up: bool) -> None:
        self.live = up
        self._wake_all(None)  # a stream looks again: events stored before LISTEN are found that way

    def _notified(self, channel: str, payload: str) -> None:
        self._wake_all(payload or None)

    def _wake_all(self, build_id: str | None) -> None:
        with self._lock:
            waiters = list(self._waiters.values())
        for loop, wake, wanted in waiters:
            if wanted is None or build_id is None or wanted == build_id:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    loop.call_soon_threadsafe(wake.set)
