"""Per-app state (settings, database, blob store) and FastAPI dependencies to reach it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from fastapi import Request
from sqlalchemy.orm import Session

from registry.blobs import open_blob_store
from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.settings import Settings


@dataclass
class Farm:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.resolved_database_url())

    @cached_property
    def blobs(self) -> BlobStore:
        s = self.settings
        return open_blob_store(s.resolved_blob_url(), s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region)


def farm(request: Request) -> Farm:
    return request.app.state.farm


def session(request: Request) -> Iterator[Session]:
    with farm(request).db.session() as s:
        yield s
