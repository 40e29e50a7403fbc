"""Faults of the database under a running farm (docs/reliability.md)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

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


def _drop_every_connection(database_url: str) -> int:
    """What a restart of PostgreSQL does to the farm's pools: every connection to its database is ended by the
    server (pg_terminate_backend sends the same 57P01 a fast shutdown sends). The server stays up for the other
    suites sharing it."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as admin:
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        killed = admin.execute(f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {others}"
                               ).fetchone()[0]
        for _ in range(50):  # gone from the server's side before anything asks again
            if not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                                 "datname = current_database() AND application_name = ''").fetchone()[0]:
                break
            time.sleep(0.05)
    return killed


def test_the_first_requests_after_the_database_dropped_every_connection_succeed(farm_factory, ort_runtime: str,
                                                                                 tmp_path: Path) -> None:
    """The API's pool holds connections the database has ended (as after a restart): the first requests after
    it — a duplicate submit, a resolve, a build's page, a new submit, a list — answer as before, none 503. The
    read cache is off, so each of them reads the database."""
    farm = farm_factory(workers=0, read_cache=False)
    model = farm.sdk.upload(convnet(tmp_path / "r.onnx", channels=4, layers=1, seed=72))
    request = {"model": model.id, "target": ort_runtime, "spec": batch_profile()}
    build = httpx.post(f"{farm.url}/v1/builds", json=request, timeout=30).json()
    with ThreadPoolExecutor(8) as pool:  # several connections in the API's pool
        assert {r.status_code for r in pool.map(
            lambda _: httpx.post(f"{farm.url}/v1/builds", json=request, timeout=30), range(24))} == {200}
    version, cpu = ort_runtime.removeprefix("onnxruntime==").split("@")
    resolve = {"model": model.id, "toolchain": "onnxruntime", "version": version, "cpu": cpu}
    asks = [("POST", "/v1/builds", {"json": request}, {200}), ("GET", f"/v1/builds/{build['id']}", {}, {200}),
            ("GET", "/v1/engines/resolve", {"params": resolve}, {404}),  # resolve's answer: no engine yet
            ("GET", "/v1/builds", {}, {200}),
            ("POST", "/v1/builds", {"json": {**request, "spec": batch_profile(hi=8)}}, {200, 201})]
    with ThreadPoolExecutor(6) as pool:
        for method, path, kwargs, expected in asks:  # six at once, the first requests after the drop
            assert _drop_every_connection(farm.database_url) >= 1
            answers = list(pool.map(lambda _, m=method, p=path, kw=kwargs: httpx.request(
                m, farm.url + p, timeout=30, **kw), range(6)))
            assert {a.status_code for a in answers} <= expected, (method, path, [a.text[:300] for a in answers])
            assert all(a.status_code != 404 or a.json()["code"] == "no_compatible_engine" for a in answers)


def test_a_read_whose_connection_was_dropped_is_tried_again(postgres, monkeypatch) -> None:  # noqa: ANN001
    """Pooled connections the database ended are not handed out (a poll of the socket, no round trip); one that
    dies after that check fails its statement as a disconnect, and `Database.read` tries once more."""
    from registry.db import session as session_module
    from registry.db.session import Database

    url = postgres.clone()
    db = Database(url)
    pid = lambda s: s.scalar(text("SELECT pg_backend_pid()"))  # noqa: E731
    try:
        first = db.read(pid)
        _drop_every_connection(url)
        second = db.read(pid)  # the check at checkout saw the closed socket: a fresh connection, no error
        assert second != first
        monkeypatch.setattr(session_module, "_closed", lambda conn: False)  # as if it died after the check
        _drop_every_connection(url)
        third = db.read(pid)  # the statement failed as a disconnect; tried again on a fresh connection
        assert third not in (first, second)
        _drop_every_connection(url)
        with pytest.raises(DBAPIError) as failed, db.read_session() as s:  # what the retry saved
            pid(s)
        assert failed.value.connection_invalidated
    finally:
        db.engine.dispose()
        postgres.drop(url)
