"""Build transitions as structured log lines, one per event, from every farm process (logfmt):

    2026-12-05 09:12:03,114 INFO trtfarm.builds build=5f0c… event=claimed worker=host:gpu0 attempt=1

Events: `queued` (published to a queue: dispatcher), `claimed`, `stage` (with the previous stage's
seconds), `finished` (status, seconds, error code) by the worker; `requeued` / `failed` / `cancelled` by
the reaper. The processes' entry points call `configure()`; `trtfarm up` shows its workers' lines too.
"""

from __future__ import annotations

import json
import logging
from typing import Any

LOGGER = "trtfarm.builds"
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_log = logging.getLogger(LOGGER)


def configure(level: int = logging.INFO) -> None:
    """Send the `trtfarm.*` loggers to stderr at `level`, once per process (uvicorn and Celery leave the
    root logger to us or to themselves; these lines must not depend on either)."""
    root = logging.getLogger("trtfarm")
    if any(getattr(h, "trtfarm", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.trtfarm = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def event(build_id: str, name: str, **fields: Any) -> None:
    """One line: `build=<id> event=<name> key=value ...` (None values left out, others quoted as needed)."""
    if not _log.isEnabledFor(logging.INFO):
        return
    parts = [f"build={build_id}", f"event={name}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    _log.info(" ".join(parts))


def _value(value: Any) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text
