"""Reading an artifact from the farm's own disk, for an SDK on the API's host (mixed into `registry.client.Farm`).

A farm whose blob store is a folder tells a client on its host where an engine's blob lies
(`GET /v1/engines/{id}/artifact/local`, counted as a fetch; TRTFARM_LOCAL_READS): the SDK copies the file into
its cache while a second thread hashes the very bytes it writes, the check every download gets, instead of
having the API stream it over a socket. The SDK asks only a farm at a loopback address, and stops asking one
that answers no_local_path (another store, a proxy in between). A file it cannot open or whose bytes do not
match leaves the download to the API, which checks (and quarantines) the blob itself.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

from registry.auth import is_loopback
from registry.digests import CHUNK
from registry.errors import EngineNotFound, FarmError, NotFound
from registry.schemas import EngineInfo, LocalArtifact

RING = 8


def on_this_host(url: str) -> bool:
    return is_loopback(httpx.URL(url).host)


def copy_hashed(source: Path, out: IO[bytes], limit: int) -> tuple[str, int]:
    """Copy a file into `out` while a second thread hashes what was written: ("sha256:<hex>", size); stops past
    `limit` bytes. RING buffers of CHUNK go round between the two threads (no allocation per chunk)."""
    h, free, full = hashlib.sha256(), queue.SimpleQueue(), queue.SimpleQueue()
    for _ in range(RING):
        free.put(bytearray(CHUNK))

    def hash_them() -> None:
        while (item := full.get()) is not None:
            h.update(memoryview(item[0])[:item[1]])
            free.put(item[0])

    hasher = threading.Thread(target=hash_them, name="sha256", daemon=True)
    hasher.start()
    size = 0
    try:
        with open(source, "rb", buffering=0) as f:
            while size <= limit and (n := f.readinto(buf := free.get())):
                out.write(memoryview(buf)[:n])
                full.put((buf, n))
                size += n
    finally:
        full.put(None)
        hasher.join()
    return f"sha256:{h.hexdigest()}", size


class LocalReads:
    url: str
    _local_reads: bool | None = None  # None: not decided yet for this Farm

    _get: Callable[..., Any]  # registry.client.Farm's

    def _read_local(self, engine: EngineInfo, out: IO[bytes]) -> tuple[str, int] | None:
        """The engine copied from the farm's disk into `out` (digest, size), or None: download it."""
        if self._local_reads is None:
            self._local_reads = on_this_host(self.url)
        if not self._local_reads:
            return None
        try:
            where = LocalArtifact.model_validate(self._get(f"/v1/engines/{engine.id}/artifact/local"))
            return copy_hashed(Path(where.path), out, limit=engine.size)
        except EngineNotFound:
            raise
        except NotFound:  # no_local_path, or a farm without the route: not asked again
            self._local_reads = False
        except (OSError, FarmError):
            pass
        return None
