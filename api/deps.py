"""FastAPI dependencies: the app's stores (settings, database, blob store), built once per app."""

from __future__ import annotations

from fastapi import Request

from registry.stores import FarmStores


async def stores(request: Request) -> FarmStores:
    """Async: a sync dependency would cost every request a hop through the thread pool."""
    return request.app.state.stores
