"""The Celery app: one per process, made from settings (never at import time).

One worker process per GPU, concurrency 1, prefetch 1, acks late (docs/design.md): a second build on the
same GPU would make TensorRT time kernels under contention and pick worse ones.
"""

from __future__ import annotations

import time

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


def declare_queues(app: Celery, queues: list[str], attempts: int = 6) -> None:
    """Create the broker's queues before consuming from them.

    With kombu's SQLAlchemy transport, two processes creating one queue at the same moment (a worker
    starting while the dispatcher publishes its first build for that queue) collide on the unique
    kombu_queue.name; kombu only handles OperationalError there and its session stays unusable after the
    IntegrityError. A fresh connection then finds the queue the other process made, so: retry on a new one.
    """
    for attempt in range(attempts):
        try:
            with app.connection_for_write() as conn:
                channel = conn.default_channel
                for queue in queues:
                    channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            return
        except Exception:  # noqa: BLE001 - IntegrityError, a locked SQLite file, a broker restarting
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
