"""Start a worker process (`trtfarm worker`) and the dispatcher (outbox relay + reaper)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from registry.services import fleet, reaper
from registry.settings import Settings
from workers.celery_app import declare_queues, make_celery
from workers.context import WorkerContext, discover
from workers.tasks import set_context

log = logging.getLogger("trtfarm.worker")
HEARTBEAT_S = 5.0


def run_worker(settings: Settings) -> None:
    """Probe toolchains, advertise the queues this worker serves, consume builds one at a time."""
    ctx = discover(settings)
    queues = ctx.queues
    if not queues:
        raise SystemExit(f"worker {ctx.name}: no queue to serve (toolchains {settings.toolchains!r}, GPUs {ctx.gpus})")
    set_context(ctx)
    _beat(ctx)
    threading.Thread(target=_heartbeat_loop, args=(ctx,), daemon=True).start()
    log.info("worker %s serves %s", ctx.name, ", ".join(queues))
    print(f"worker {ctx.name} serves: {', '.join(queues)}", flush=True)
    app = make_celery(settings)
    declare_queues(app, queues)  # before consuming: see declare_queues for the race it avoids
    app.worker_main(argv=[
        "worker", "-Q", ",".join(queues), "-c", "1", "-P", "solo", "--prefetch-multiplier=1",
        "-n", f"{ctx.name.replace(':', '-')}@{socket.gethostname()}", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-l", "WARNING",
    ])


def _beat(ctx: WorkerContext) -> None:
    with ctx.db.session() as s:
        fleet.heartbeat(s, name=ctx.name, hostname=socket.gethostname(), toolchains=[t.public() for t in ctx.toolchains],
                        devices=ctx.devices, queues=ctx.queues, current_build=ctx.current_build)


def _heartbeat_loop(ctx: WorkerContext) -> None:
    parent = int(os.environ.get("TRTFARM_PARENT_PID", "0"))
    while True:
        time.sleep(HEARTBEAT_S)
        if parent and not _alive(parent):
            log.warning("the embedded farm (pid %s) is gone; worker %s stops", parent, ctx.name)
            os._exit(0)
        try:
            _beat(ctx)
        except Exception as exc:  # noqa: BLE001 - keep beating through database hiccups
            log.warning("heartbeat failed: %s", exc)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_dispatcher(settings: Settings, stop: threading.Event) -> None:
    """Publish outbox rows to their queues; run the reaper every reaper_interval_s."""
    from registry.db.session import Database

    db = Database(settings.resolved_database_url())
    app = make_celery(settings)
    next_reap = 0.0
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = app.connection_for_write()
                producer = app.amqp.Producer(conn)
            _relay(db, app, producer)
            if time.monotonic() >= next_reap:
                reaper.reap(db, settings)
                next_reap = time.monotonic() + settings.reaper_interval_s
        except Exception as exc:  # noqa: BLE001 - the dispatcher outlives broker/database hiccups
            log.warning("dispatcher: %s", exc)
            # a fresh broker connection next time: after an error the old one may stay unusable (kombu's
            # SQLAlchemy transport keeps a session that failed a flush); unpublished outbox rows are retried
            conn = _discard(conn)
            stop.wait(2.0)
        stop.wait(settings.relay_interval_s)
    _discard(conn)


def _discard(conn) -> None:  # noqa: ANN001
    if conn is not None:
        try:
            conn.release()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail too
            pass
    return None


def _relay(db, app, producer) -> None:  # noqa: ANN001
    from registry.queues import BUILD_TASK

    for outbox_id, build_id, queue in reaper.pending_outbox(db):
        app.send_task(BUILD_TASK, args=[build_id], queue=queue, producer=producer)
        reaper.mark_published(db, outbox_id, build_id)
