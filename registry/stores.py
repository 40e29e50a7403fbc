"""The database and blob store of one farm process (API or worker), built from its settings on first use."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from registry.blobs import open_blob_store
from registry.blobs.base import BlobStore
from registry.db.session import Database
from registry.eventwake import EventWaker
from registry.readcache import NoCache, open_read_cache
from registry.settings import Settings


@dataclass
class FarmStores:
    settings: Settings

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.resolved_database_url(), self.settings.pool())

    @cached_property
    def blobs(self) -> BlobStore:
        s = self.settings
        return open_blob_store(s.resolved_blob_url(), s3_endpoint_url=s.s3_endpoint_url, s3_region=s.s3_region)

    @cached_property
    def reads(self) -> NoCache:
        """The API's read cache (a NoCache on SQLite or when TRTFARM_READ_CACHE=false)."""
        s = self.settings
        return open_read_cache(s.resolved_database_url(), s.read_cache, s.read_cache_entries)

    @cached_property
    def events(self) -> EventWaker:
        """What wakes the API's event streams (registry/eventwake.py), and their count."""
        s = self.settings
        return EventWaker(s.resolved_database_url(), limit=s.event_streams, poll_s=s.event_poll_s)
