"""The Celery app: one per process, made from settings (never at import time).

One worker process per GPU, concurrency 1, prefetch 1, acks late (DESIGN.md): a second build on the
same GPU would make TensorRT time kernels under contention and pick worse ones.
"""

from __future__ import annotations

from celery import Celery

from registry.queues import BUILD_TASK
from registry.settings import Settings


def make_celery(settings: Settings) -> Celery:
    broker = settings.resolved_broker_url()
    if broker.startswith("sqla+sqlite:///"):
        from pathlib import Path

        Path(broker.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app = Celery("trtfarm", broker=broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=BUILD_TASK, bind=False, acks_late=True)(_build_task)
    return app


def _build_task(build_id: str) -> str:
    from workers.tasks import run_build

    return run_build(build_id)
