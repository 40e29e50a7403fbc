"""Serve the API with uvicorn (`trtfarm api`; the embedded farm calls it too)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from registry import events
from registry.atomic import sweep
from registry.settings import Settings

HOST_ENV = "TRTFARM_API_BIND_HOST"


def run_api(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    """Serve until stopped; `workers` > 1 runs that many server processes on the port (uvicorn's supervisor),
    each building its app from the environment (`api.app.app_from_environment`)."""
    import os

    import uvicorn

    from api.app import create_app
    from api.uploads import UPLOAD_DIR_PREFIX

    events.configure()
    sweep(Path(tempfile.gettempdir()), f"{UPLOAD_DIR_PREFIX}*", 6 * 3600)  # uploads an API died in the middle of
    if workers == 1:
        uvicorn.run(create_app(settings, host=host), host=host, port=port, log_level="warning")
        return
    os.environ[HOST_ENV] = host  # the processes decide about API keys by the address they serve
    # the processes' request metrics, shared (prometheus-client's multiprocess mode; api/metrics.py)
    shared = None if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.mkdtemp(prefix="trtfarm-metrics-")
    if shared:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        uvicorn.run("api.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
