"""Faults of the database under a running farm (docs/reliability.md)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
from sqlalchemy import func, select

from registry.db.session import retry_transient
from registry.db.tables import Build, Engine
from registry.errors import FarmError
from registry.status import BuildStatus
from tests.integration.conftest import batch_profile
from tests.models import convnet


def status_of(farm, build_id: str) -> BuildStatus:
    with farm.db.session() as s:
        return s.get(Build, build_id).status


def test_connections_killed_all_through_a_build_cost_no_attempt(farm_factory, ort_runtime: str,
                                                                 tmp_path: Path) -> None:
    """Every connection to the farm's database is terminated (pg_terminate_backend) every 0.2 s from
    before the claim until the build ends: the build still succeeds on its first attempt, with one engine."""
    farm = farm_factory(workers=1, bench_iterations=20000, bench_max_s=3600)  # a build of several seconds
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "d.onnx", channels=4, layers=1, seed=71))
    dsn = farm.database_url.replace("postgresql+psycopg://", "postgresql://")
    killed, stop = [], threading.Event()

    def kill_connections() -> None:
        with psycopg.connect(dsn, autocommit=True) as admin:
            while not stop.is_set():
                rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
                killed.append(len(rows))
                time.sleep(0.2)

    killer = threading.Thread(target=kill_connections, daemon=True)
    killer.start()
    try:
        build = None
        for _ in range(50):  # the API's connections die too: a submit may get a 503 and is simply repeated
            try:
                build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
                break
            except FarmError:  # Unavailable (503) while the API's connection was just killed
                time.sleep(0.2)
        assert build is not None
        deadline = time.monotonic() + 180
        while True:
            if retry_transient(lambda: status_of(farm, build.id), what="poll").terminal:
                break
            assert time.monotonic() < deadline, "the build did not finish"
            time.sleep(0.5)
    finally:
        stop.set()
        killer.join(10)
    assert sum(killed) > 10, killed  # connections really were killed, again and again
    with farm.db.session() as s:
        row = s.get(Build, build.id)
        assert (row.status, row.attempt) == (BuildStatus.SUCCEEDED, 1), (row.status, row.attempt, row.error_message)
        assert s.scalar(select(func.count()).select_from(Engine).where(Engine.build_id == build.id)) == 1
