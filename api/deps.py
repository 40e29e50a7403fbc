"""FastAPI dependencies: the app's stores (settings, database, blob store), built once per app."""

from __future__ import annotations

from fastapi import Request

from registry.stores import FarmStores


def stores(request: Request) -> FarmStores:
    return request.app.state.stores
