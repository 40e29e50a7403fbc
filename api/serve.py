"""Serve the API with uvicorn (`trtfarm api`; the embedded farm calls it too)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from registry.atomic import sweep
from registry.settings import Settings


def run_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app
    from api.routes.models import UPLOAD_DIR_PREFIX

    sweep(Path(tempfile.gettempdir()), f"{UPLOAD_DIR_PREFIX}*", 6 * 3600)  # uploads an API died in the middle of
    uvicorn.run(create_app(settings, host=host), host=host, port=port, log_level="warning")
