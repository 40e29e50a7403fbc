"""The web dashboard at /ui: server-rendered pages (Jinja2 templates in templates/, one JS and one CSS file in
static/), calling the same services as the API routes. docs/design.md, "Web dashboard"."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.ui import routes, session

HERE = Path(__file__).resolve().parent


def install(app: FastAPI) -> None:
    app.include_router(routes.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.add_exception_handler(session.SignInNeeded, session.to_sign_in)
