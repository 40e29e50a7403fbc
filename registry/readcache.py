"""A per-process cache of read answers (resolve, engine info, API keys, duplicate submits) that the database
invalidates.

On PostgreSQL, triggers on the tables these answers come from (`models`, `engines`, `api_keys`;
migration 0003) send `NOTIFY trtfarm_changes` with every committed change. A listener thread of this
process holds its own connection, LISTENs, and empties the cache on each notification. While the listener
is not connected (starting, or reconnecting after its connection was lost) the cache answers nothing and
keeps nothing, so an answer is at most one notification's delivery (milliseconds) behind a commit.

Builds change all the time (leases, progress), so they have a channel of their own: each committed change
of a build row sends `NOTIFY trtfarm_builds, '<build id>'` (migration 0006), which forgets only that build's
answer (`build_answer(id)`); the rest of the cache stays.

On SQLite (the embedded farm) there is no notification channel and no cache: every read goes to the
database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from registry.notify import listen, postgres_dsn

T = TypeVar("T")
CHANNEL = "trtfarm_changes"
BUILDS_CHANNEL = "trtfarm_builds"  # payload: the id of the build that changed ('' after a TRUNCATE)
APPLICATION = "trtfarm-readcache"  # the listener's connection, as pg_stat_activity names it
MISSING: Any = object()


class NoCache:
    """Every lookup misses (SQLite, or TRTFARM_READ_CACHE=false)."""

    live = False

    def get(self, key: Hashable) -> Any:
        return MISSING

    def token(self) -> int:
        return 0

    def put(self, key: Hashable, value: object, token: int) -> None:
        pass

    def lookup(self, key: Hashable, compute: Callable[[], T]) -> T:
        return compute()

    def forget_build(self, build_id: str) -> None:
        pass

    def close(self) -> None:
        pass


class ReadCache(NoCache):
    """Answers by key, emptied on every database change notification; `token()` before computing an answer
    and `put(…, token)` after keeps an answer computed across a change out of the cache."""

    def __init__(self, dsn: str, max_entries: int = 10_000, ping_s: float = 2.0) -> None:
        self._dsn, self._max, self._ping_s = dsn, max_entries, ping_s
        self._entries: dict[Hashable, object] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.live = False

    def get(self, key: Hashable) -> Any:
        if self._thread is None:
            self._start()
        return self._entries.get(key, MISSING) if self.live else MISSING

    def token(self) -> int:
        return self._generation

    def put(self, key: Hashable, value: object, token: int) -> None:
        with self._lock:
            if not self.live or token != self._generation:
                return
            if len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value

    def lookup(self, key: Hashable, compute: Callable[[], T]) -> T:
        found = self.get(key)
        if found is not MISSING:
            return found
        token = self.token()
        value = compute()
        self.put(key, value, token)
        return value

    def close(self) -> None:
        self._stop.set()

    def _invalidate(self, live: bool) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self.live = live

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen, name="trtfarm-readcache", daemon=True)
                self._thread.start()

    def forget_build(self, build_id: str) -> None:
        """A build changed: its answer goes, and no answer being computed now is kept (it may predate the change).
        The notification does this in every process; a process that made the change may do it at once."""
        with self._lock:
            self._generation += 1
            self._entries.pop(build_answer(build_id), None)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == BUILDS_CHANNEL and payload:
            self.forget_build(payload)
        else:
            self._invalidate(live=True)

    def _listen(self) -> None:
        listen(self._dsn, [CHANNEL, BUILDS_CHANNEL], self._notified, lambda up: self._invalidate(live=up),
               self._stop, application=APPLICATION, ping_s=self._ping_s, payloads=True)


def build_answer(build_id: str) -> tuple[str, str]:
    """The cache key of a build's answer (forgotten whenever the build's row changes)."""
    return ("build", build_id)


def open_read_cache(database_url: str, enabled: bool = True, max_entries: int = 10_000) -> NoCache:
    """A ReadCache for a PostgreSQL database (psycopg), else a NoCache."""
    dsn = postgres_dsn(database_url)
    return ReadCache(dsn, max_entries) if enabled and dsn else NoCache()
