"""Answers from the process's read cache (registry/readcache.py): a hit is served on the event loop, a miss
is computed in a worker thread and kept unless the database changed meanwhile. "Not found" answers are kept
too (a fleet asking for a model that is not built yet): the change that creates it empties the cache."""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import TypeVar

from fastapi import Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from registry.errors import NotFound
from registry.readcache import MISSING
from registry.stores import FarmStores

T = TypeVar("T")


class _Raised:
    def __init__(self, error: NotFound) -> None:
        self.error = error

    def fresh(self) -> NotFound:
        error = copy.copy(self.error)
        error.__traceback__ = error.__context__ = error.__cause__ = None
        return error


async def cached(farm: FarmStores, key: Hashable, compute: Callable[[], T]) -> T:
    """compute()'s answer for `key`, from the cache when it holds one."""
    found = farm.reads.get(key)
    if found is MISSING:
        token = farm.reads.token()
        try:
            found = await run_in_threadpool(compute)
        except NotFound as exc:
            farm.reads.put(key, _Raised(exc), token)
            raise
        farm.reads.put(key, found, token)
    if isinstance(found, _Raised):
        raise found.fresh()
    return found


async def cached_json(farm: FarmStores, key: Hashable, compute: Callable[[], BaseModel]) -> Response:
    """compute()'s public schema as a JSON response; the cache keeps the serialized body."""
    body = await cached(farm, key, lambda: compute().model_dump_json().encode())
    return Response(body, media_type="application/json")
