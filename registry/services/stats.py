"""Counts for /metrics, read from SQL (the truth), not from process-local counters: every API replica
reports the same numbers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from registry.db.session import Database
from registry.db.tables import Build, Engine
from registry.services import fleet


@dataclass(frozen=True)
class FarmStats:
    builds: dict[tuple[str, str], int]  # (status, queue) -> count
    engines: dict[str, int]  # toolchain -> count
    live_workers: int


def farm_stats(db: Database, live_s: int) -> FarmStats:
    with db.session() as s:
        builds = {(str(status), queue): n for status, queue, n in
                  s.execute(select(Build.status, Build.queue, func.count()).group_by(Build.status, Build.queue))}
        engines = dict(s.execute(select(Engine.toolchain, func.count()).group_by(Engine.toolchain)).all())
        live = len(fleet.live_workers(s, live_s))
    return FarmStats(builds, engines, live)
