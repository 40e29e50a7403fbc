"""/openapi.json and /docs: behind the `read` scope unless TRTFARM_DOCS_PUBLIC (a schema tells a stranger
every route there is)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api.auth import require_unless


def install(app: FastAPI, public: bool) -> None:
    guard = require_unless(public, "read")

    @app.get("/openapi.json", include_in_schema=False, dependencies=guard)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=guard)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")
