"""Engine and session factory. Built on demand from settings, never at import time."""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, DisconnectionError, InvalidRequestError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")
log = logging.getLogger("trtfarm.db")


@dataclass(frozen=True)
class PoolSize:
    """Connections per process: `size` kept open, `overflow` more under load, `timeout_s` to wait for one."""

    size: int = 10
    overflow: int = 20
    timeout_s: float = 10.0

    @property
    def most(self) -> int:
        return self.size + self.overflow


def make_engine(url: str, pool: PoolSize = PoolSize()) -> Engine:  # noqa: B008 - a frozen value
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=pool.size, max_overflow=pool.overflow, pool_timeout=pool.timeout_s)
    event.listen(engine, "checkout", _refuse_closed)  # instead of pool_pre_ping: no round trip per checkout
    return engine


def _refuse_closed(dbapi_conn, _record, _proxy) -> None:  # noqa: ANN001
    """The pool hands out no connection whose server has gone: a server that restarted or ended the session
    closed the socket (its last words, or the end of the stream, wait unread on it), which a zero-timeout poll
    sees without a round trip. The pool then connects afresh. A connection that dies after this check fails
    its statement as a disconnect: reads are tried once more (`Database.read`), workers retry transient
    errors (`retry_transient`), anything else answers 503."""
    if _closed(dbapi_conn):
        raise DisconnectionError("the database closed this pooled connection")


def _closed(conn) -> bool:  # noqa: ANN001 - a psycopg connection
    try:
        if conn.closed or conn.broken:
            return True
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))  # an idle connection has nothing to read
    except Exception:  # noqa: BLE001 - a connection that cannot say is not handed out
        return True


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """The engine plus a session factory; one per process."""

    def __init__(self, url: str, pool: PoolSize = PoolSize()) -> None:  # noqa: B008 - a frozen value
        self.url = url
        self.pool = pool
        self.engine = make_engine(url, pool)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        reads = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._reads = sessionmaker(reads, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessionmaker() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session that only reads: on PostgreSQL each statement runs on its own (autocommit), so there is
        no BEGIN and no COMMIT round trip; nothing it does is committed."""
        with self._reads() as session:
            yield session

    def read(self, work: Callable[[Session], T]) -> T:
        """`work(session)` in a read session; if its connection turns out to have been dropped (a database
        restart the pool had not seen), once more on a fresh connection: a read has nothing to undo. The
        disconnect also marks every older pooled connection stale, so the retry does not meet another."""
        try:
            with self.read_session() as session:
                return work(session)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.info("a read lost its connection (%s); trying once more on a fresh one", exc.orig)
        with self.read_session() as session:
            return work(session)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"


# What SQLAlchemy's pool raises when every connection it checked out was found dead (its checkout pings failed
# three times in a row: the database keeps dropping new connections, e.g. while it restarts).
POOL_EXHAUSTED = "This connection is closed"


def is_transient(exc: BaseException) -> bool:
    """A database that is restarting, unreachable or dropped our connection: worth trying again."""
    if isinstance(exc, InvalidRequestError) and not isinstance(exc, DBAPIError):
        return str(exc).startswith(POOL_EXHAUSTED)
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def retry_transient(call: Callable[[], T], *, what: str, tries: int = 8, first_delay: float = 0.25,
                    max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, again after transient database errors (backoff 0.25 s doubling to 5 s: about 25 s in all);
    any other error, or the last transient one, is raised."""
    delay = first_delay
    for attempt in range(1, tries + 1):
        try:
            return call()
        except (DBAPIError, InvalidRequestError) as exc:
            if not is_transient(exc) or attempt == tries:
                raise
            log.warning("%s: transient database error (try %d of %d): %s", what, attempt, tries,
                        getattr(exc, "orig", None) or exc)
            sleep(delay)
            delay = min(max_delay, delay * 2)
    raise AssertionError("unreachable")
