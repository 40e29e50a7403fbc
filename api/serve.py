"""Serve the API with uvicorn (`trtfarm api`; the embedded farm calls it too)."""

from __future__ import annotations

from registry.settings import Settings


def run_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(settings, host=host), host=host, port=port, log_level="warning")
