"""The embedded broker (kombu's SQLAlchemy transport on SQLite) under the farm's real concurrency.

Found by the README-command e2e test: a worker starting while the dispatcher publishes the first build
for its queue both INSERT the queue row; kombu handles only OperationalError there, the loser's session is
unusable after the IntegrityError, and the dispatcher then failed every publish forever (the demo hung)."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
from pathlib import Path

from registry.settings import Settings
from workers.celery_app import declare_queues, make_celery

QUEUES = [f"build.onnxruntime-1.0.{i}.x86_64-avx2" for i in range(20)]


def _declare(home: str, barrier, results) -> None:  # noqa: ANN001
    app = make_celery(Settings(home=Path(home)))
    barrier.wait()
    try:
        declare_queues(app, QUEUES)
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_declaring_the_same_queues_at_once_all_succeed(tmp_path):
    app = make_celery(Settings(home=tmp_path))
    with app.connection_for_write() as conn:  # the broker's tables exist, as once the farm is up
        conn.default_channel.queue_declare(queue="warmup")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_declare, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [results.get(timeout=5) for _ in procs] == ["ok"] * 4
    names = {r[0] for r in sqlite3.connect(tmp_path / "broker.db").execute("SELECT name FROM kombu_queue")}
    assert set(QUEUES) <= names


def test_dispatcher_takes_a_fresh_broker_connection_after_an_error(tmp_path, monkeypatch):
    from workers import dispatcher

    settings = Settings(home=tmp_path, relay_interval_s=0.01, reaper_interval_s=3600)
    stop = threading.Event()
    connections = []

    def relay(db, publish):  # noqa: ANN001
        publish(dispatcher.outbox.Message(len(connections), "b", QUEUES[0]))  # opens a connection if none
        connections.append(publish._conn)
        if len(connections) == 1:
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: kombu_queue.name")
        stop.set()

    monkeypatch.setattr(dispatcher.outbox, "relay", relay)
    monkeypatch.setattr(dispatcher.reaper, "reap", lambda db, settings: None)
    thread = threading.Thread(target=dispatcher.run_dispatcher, args=(settings, stop), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert len(connections) == 2
    assert connections[0] is not connections[1]
