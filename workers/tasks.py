"""Celery tasks: thin. The worker's context is set up once by workers.worker before consuming."""

from __future__ import annotations

from workers.build import execute_build
from workers.context import WorkerContext

_context: WorkerContext | None = None


def set_context(ctx: WorkerContext) -> None:
    global _context
    _context = ctx


def run_build(build_id: str) -> str:
    if _context is None:
        raise RuntimeError("worker context not set: start workers with `trtfarm worker`")
    _context.current_build = build_id
    try:
        return execute_build(_context, build_id)
    finally:
        _context.current_build = None
