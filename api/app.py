"""The app factory. `create_app()` builds everything from settings; nothing happens at import time."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.limits import BodySizeLimit
from api.routes import builds, engines, health, models
from registry import __version__
from registry.settings import Settings, get_settings
from registry.stores import FarmStores


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="trtfarm",
        version=__version__,
        description="Build farm and registry for TensorRT (and ONNX Runtime) engines: upload an ONNX model once, "
                    "get the engine your runtime can load.",
    )
    app.state.stores = FarmStores(settings)
    errors.install(app)
    for module in (models, builds, engines, health):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, limit=settings.max_upload_mib << 20)
    return app
