"""The app factory. `create_app()` builds everything from settings; nothing happens at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, metrics, ui
from api.limits import BodySizeLimit, RejectNul
from api.routes import builds, calibration, docs, engines, events, health, keys, models, plugins, retention
from registry import __version__, auth, intake
from registry.settings import Settings, get_settings
from registry.stores import FarmStores


@asynccontextmanager
async def _threads_within_the_pool(app: FastAPI) -> AsyncIterator[None]:
    """Sync routes run in anyio's thread pool; it gets no more threads than the database pool has
    connections, so a burst queues in the event loop instead of timing out inside a thread. The model
    intake's fork server starts with the process (it imports onnx meanwhile) and stops with it."""
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = app.state.stores.settings.pool().most
    intake.warm_up()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(intake.shut_down)


def create_app(settings: Settings | None = None, host: str = "127.0.0.1") -> FastAPI:
    """The API for a server bound to `host`: API keys are required unless it listens on loopback only
    (TRTFARM_AUTH decides: auto, required, or off on loopback)."""
    settings = settings or get_settings()
    app = FastAPI(
        lifespan=_threads_within_the_pool,
        title="trtfarm",
        version=__version__,
        description="Build farm and registry for TensorRT (and ONNX Runtime) engines: upload an ONNX model once, "
                    "get the engine your runtime can load.",
        docs_url=None, redoc_url=None, openapi_url=None,  # served by api/routes/docs.py, behind the read scope
    )
    app.state.stores = FarmStores(settings)
    app.state.auth_required = auth.auth_required(settings.auth, host)
    errors.install(app)
    for module in (models, calibration, plugins, builds, events, engines, keys, health, retention):
        app.include_router(module.router)
    docs.install(app, public=settings.docs_public)
    ui.install(app)  # the web dashboard at /ui
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_mib << 20, paths={calibration.PREFIX: (
        settings.max_calibration_mib << 20, "TRTFARM_MAX_CALIBRATION_MIB",
        "calibrate with fewer samples (a few hundred calibrate well) or raise the limit"), plugins.PREFIX: (
        settings.max_plugin_mib << 20, "TRTFARM_MAX_PLUGIN_MIB", "strip its debug symbols or raise the limit")})
    app.add_middleware(RejectNul)
    metrics.install(app, settings)  # its middleware outermost: it times every request
    return app


def app_from_environment() -> FastAPI:
    """The app of one server process of `trtfarm api --workers N` (uvicorn calls it in each process)."""
    import os

    from api.serve import HOST_ENV

    return create_app(Settings(), host=os.environ.get(HOST_ENV, "127.0.0.1"))
