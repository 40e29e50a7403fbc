"""A worker process (`trtfarm worker`): probe its toolchains, advertise the queues its devices serve,
beat its heartbeat, and consume builds one at a time."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from celery.signals import worker_ready

from registry import events
from registry.atomic import sweep
from registry.services import fleet, workerstate
from registry.settings import Settings
from workers.build import BUILD_DIR_PREFIX
from workers.celery_app import declare_queues, make_celery
from workers.context import WorkerContext, discover
from workers.tasks import set_context

log = logging.getLogger("trtfarm.worker")
HEARTBEAT_S = 5.0


def run_worker(settings: Settings) -> None:
    """Probe toolchains, advertise the queues this worker serves, consume builds one at a time."""
    events.configure()
    swept = sweep(Path(tempfile.gettempdir()), f"{BUILD_DIR_PREFIX}*", settings.build_timeout_s + 3600)
    if swept:
        log.info("swept %d build folder(s) that killed workers left behind", swept)
    ctx = discover(settings)
    queues = ctx.queues
    if not queues:
        raise SystemExit(f"worker {ctx.name}: no queue to serve (toolchains {settings.toolchains!r}, GPUs {ctx.gpus})")
    ctx.claimed = workerstate.claim_name(ctx.db, ctx.base_name, socket.gethostname(), ctx.instance,
                                         settings.worker_live_s)
    set_context(ctx)
    worker_ready.connect(lambda sender, **_: _ready(ctx, sender), weak=False)
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
    reply = fleet.heartbeat(ctx.db, fleet.Beat(name=ctx.name, hostname=socket.gethostname(),
                                               toolchains=[t.public() for t in ctx.toolchains], devices=ctx.devices,
                                               queues=ctx.queues, current_build=ctx.current_build,
                                               instance=ctx.instance))
    if reply.name_lost:  # we were taken for dead (a long pause) and another process holds the name now
        old = ctx.name
        ctx.claimed = workerstate.claim_name(ctx.db, ctx.base_name, socket.gethostname(), ctx.instance,
                                             ctx.settings.worker_live_s)
        log.warning("worker %s: another process holds that name now; this one is %s", old, ctx.name)
        return
    if reply.drain != ctx.draining:
        set_draining(ctx, reply.drain)


def _ready(ctx: WorkerContext, consumer: object) -> None:
    """Celery's consumer is up: keep it (drain cancels its queues), and apply a drain already requested."""
    ctx.consumer = consumer
    if ctx.draining:
        ctx.draining = False
        set_draining(ctx, True)


def set_draining(ctx: WorkerContext, drain: bool) -> None:
    """Stop (or start again) consuming this worker's queues. A build running now runs to its end: the
    consumer runs the change in its own thread between messages (call_soon)."""
    if ctx.consumer is None:  # not consuming yet: _ready applies it
        ctx.draining = drain
        return
    consumer, queues = ctx.consumer, list(ctx.queues)
    if drain:
        consumer.call_soon(lambda: [consumer.cancel_task_queue(q) for q in queues])
    else:
        consumer.call_soon(lambda: [consumer.add_task_queue(q) for q in queues])
    ctx.draining = drain
    log.info("worker %s %s", ctx.name, "drains: takes no new build" if drain else "resumed: takes builds again")
    print(f"worker {ctx.name} {'drained' if drain else 'resumed'}", flush=True)


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
