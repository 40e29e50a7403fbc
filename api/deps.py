"""Per-app state (settings, database, blob store) and FastAPI dependencies to reach it."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request
from sqlalchemy.orm import Session

from registry.stores import FarmStores as Farm  # the app's state: settings, database, blob store


def farm(request: Request) -> Farm:
    return request.app.state.farm


def session(request: Request) -> Iterator[Session]:
    with farm(request).db.session() as s:
        yield s
