"""A worker's name and its drain state: who holds a name, and whether it should take new builds.

A worker process claims its name with an instance token (its pid and a nonce): the base name (`host:gpu0`)
when nobody live holds it, else `host:gpu0-2`, `-3`, …; a name whose holder stopped beating, or whose
holder on this same host has exited (a restart), is taken over. Its
heartbeat then updates the row only while it still holds the instance, so two processes never share a
row. A drain is a flag on the name: it outlives the process (a drained GPU stays drained across worker
restarts) until it is resumed.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from registry.db.session import Database
from registry.db.tables import Worker, utcnow
from registry.errors import WorkerNotFound
from registry.schemas import WorkerInfo
from registry.services.fleet import worker_infos

MAX_SUFFIX = 100


def claim_name(db: Database, base: str, hostname: str, instance: str, live_s: int) -> str:
    """The first of base, base-2, base-3, … that nobody live holds, now held by `instance`."""
    for n in range(1, MAX_SUFFIX + 1):
        name = base if n == 1 else f"{base}-{n}"
        if _take(db, name, hostname, instance, live_s):
            return name
    raise RuntimeError(f"worker names {base} to {base}-{MAX_SUFFIX} are all held by live workers")


def _take(db: Database, name: str, hostname: str, instance: str, live_s: int) -> bool:
    stale = utcnow() - timedelta(seconds=live_s)
    try:
        with db.session() as s:
            row = s.get(Worker, name, with_for_update=True)
            if row is None:
                s.add(Worker(name=name, hostname=hostname, instance=instance, toolchains=[], devices=[], queues=[]))
                return True
            if row.instance not in (None, instance) and row.last_seen >= stale and not _gone(row, hostname):
                return False
            row.instance, row.hostname, row.last_seen, row.current_build = instance, hostname, utcnow(), None
            return True
    except IntegrityError:  # another process inserted that name first
        return False


def new_instance() -> str:
    """This process's token: its pid (a restart on the same host can tell its predecessor is gone) and a nonce."""
    return f"{os.getpid()}.{secrets.token_hex(6)}"


def _gone(row: Worker, hostname: str) -> bool:
    """The holder ran on this host and its process is no more (a worker restarted before its name went stale)."""
    pid = (row.instance or "").split(".")[0]
    if row.hostname != hostname or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def set_drain(db: Database, name: str, drain: bool, live_s: int) -> WorkerInfo:
    """Ask a worker to take no new build (`drain`), or to take builds again; its view after the change."""
    with db.session() as s:
        if not s.execute(update(Worker).where(Worker.name == name).values(drain_requested=drain)).rowcount:
            known = ", ".join(s.scalars(select(Worker.name).order_by(Worker.name))) or "none"
            raise WorkerNotFound(f"no worker {name!r}; workers the farm knows: {known} (trtfarm workers)")
    return next(w for w in worker_infos(db, live_s) if w.name == name)


def drain_requested(db: Database, name: str) -> bool:
    with db.session() as s:
        return bool(s.scalar(select(Worker.drain_requested).where(Worker.name == name)))
