"""Celery tasks: thin. The worker's context is set up once by workers.worker before consuming."""

from __future__ import annotations

from registry.services import workerstate
from workers.build import execute_build
from workers.context import WorkerContext

_context: WorkerContext | None = None


def set_context(ctx: WorkerContext) -> None:
    global _context
    _context = ctx


def run_build(build_id: str) -> str:
    if _context is None:
        raise RuntimeError("worker context not set: start workers with `trtfarm worker`")
    if workerstate.drain_requested(_context.db, _context.name):  # asked since the last heartbeat: take nothing
        from celery.exceptions import Reject

        from workers.worker import set_draining

        if not _context.draining:
            set_draining(_context, True)
        raise Reject(f"worker {_context.name} is drained", requeue=True)  # back to the queue, for another worker
    _context.current_build = build_id
    try:
        return execute_build(_context, build_id)
    finally:
        _context.current_build = None
