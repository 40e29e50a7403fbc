"""Server-sent events: a build's stream (`GET /v1/builds/{id}/events`) and the fleet's (`GET /v1/events`).

Events come from `build_events` (registry/services/buildevents.py), read in short read sessions in a worker
thread; between reads a stream waits on registry/eventwake.py (a NOTIFY on PostgreSQL, a timer on SQLite)
holding no connection. A read returns at most a page of events, and each is written before the next page is
read (the response waits on a slow client), so a client costs bounded memory. A client that goes away cancels
its stream: its slot and its waiter go with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import read_scope
from api.deps import stores
from api.errors import COMMON
from api.routes.builds import BuildId
from registry.errors import InvalidInput
from registry.services import buildevents, builds, fleet
from registry.services.buildevents import StreamEvent
from registry.stores import FarmStores

router = APIRouter(tags=["events"], responses=COMMON, dependencies=[Depends(read_scope)])
log = logging.getLogger("trtfarm.events")
MEDIA = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
STREAM = {200: {"content": {MEDIA: {"schema": {"type": "string"}}}, "description": "server-sent events"}}


def frame(event: StreamEvent) -> bytes:
    """One event: `id:` (stored events only), `event:`, and its data as one line of JSON."""
    head = f"id: {event.id}\n" if event.id is not None else ""
    return f"{head}event: {event.type}\ndata: {json.dumps(event.data, separators=(',', ':'))}\n\n".encode()


def _last_id(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    if not value.strip().isdigit():
        raise InvalidInput(f"Last-Event-ID must be an event id (an integer) from this stream, not {value[:40]!r}",
                           details={"last_event_id": value[:40]})
    return int(value.strip())


@router.get("/v1/builds/{build_id}/events", response_model=None, responses=STREAM)
async def build_events(build_id: str = BuildId, last_event_id: str | None = Header(None),
                       farm: FarmStores = Depends(stores)) -> StreamingResponse:
    """The build's events: `state` (its BuildInfo, first and on each status change), `stage`, `log` (one line),
    and `end` (its final BuildInfo), after which the stream ends; a build that has ended replays them all.
    `Last-Event-ID` resumes after that id."""
    after = _last_id(last_event_id)
    full = (await run_in_threadpool(builds.read, farm.db, build_id)).id  # 404 before the stream starts
    farm.events.check()  # 503 now when this process serves its most streams
    return StreamingResponse(_build_stream(farm, full, after), media_type=MEDIA, headers=HEADERS)


@router.get("/v1/events", response_model=None, responses=STREAM)
async def fleet_events(last_event_id: str | None = Header(None),
                       farm: FarmStores = Depends(stores)) -> StreamingResponse:
    """The fleet's events, without end: `worker` (a WorkerInfo: every worker first, then on each change of its
    state), `build` (a BuildInfo, on each status change) and `stage` ({build, stage, seconds})."""
    after = _last_id(last_event_id)
    farm.events.check()
    return StreamingResponse(_fleet_stream(farm, after), media_type=MEDIA, headers=HEADERS)


async def _build_stream(farm: FarmStores, build_id: str, after: int) -> AsyncIterator[bytes]:
    with farm.events.slot(), farm.events.watch(build_id) as wake:
        keepalive = _Keepalive(farm.settings.event_keepalive_s)
        log_text = _stored_log(farm)
        while True:
            wake.clear()  # before the read: an event stored while it runs wakes the next wait
            page = await _read(buildevents.build_events, farm.db, build_id, after, log_text)
            if page is None:
                return
            for event in page.events:
                yield frame(event)
                after = event.id or after
                keepalive.sent()
            if page.ended:
                return
            if not page.events:  # else another page may be there already
                async for beat in keepalive.wait(wake, farm.events.wait_s):
                    yield beat


async def _fleet_stream(farm: FarmStores, after: int) -> AsyncIterator[bytes]:
    with farm.events.slot(), farm.events.watch(None) as wake:
        keepalive = _Keepalive(farm.settings.event_keepalive_s)
        if not after:
            after = await run_in_threadpool(buildevents.fleet_cursor, farm.db)
        states: dict[str, str] = {}
        live_s = farm.settings.worker_live_s
        while True:
            wake.clear()
            found = await _read(buildevents.fleet_events, farm.db, after)
            workers = await _read(farm.events.workers, lambda: fleet.worker_infos(farm.db, live_s))
            if found is None or workers is None:
                return
            changed, states = buildevents.worker_changes(states, workers)
            events, after = found
            for event in [*changed, *events]:
                yield frame(event)
                keepalive.sent()
            if not events:
                async for beat in keepalive.wait(wake, min(1.0, farm.events.wait_s)):  # workers: every second
                    yield beat


def _stored_log(farm: FarmStores) -> Callable[[str], str]:
    return lambda build_id: builds.log_text(farm.db, farm.blobs, build_id)


async def _read(read: Callable[..., Any], *args: Any) -> Any:
    """A read in a worker thread; None (the stream ends: its client reconnects) when it fails."""
    try:
        return await run_in_threadpool(read, *args)
    except Exception as exc:  # noqa: BLE001 - the database went away: end the stream, the client resumes
        log.warning("event stream ends: %s", exc)
        return None


class _Keepalive:
    """`: keepalive` when nothing was sent for `every_s` seconds."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last = time.monotonic()

    def sent(self) -> None:
        self._last = time.monotonic()

    async def wait(self, wake: asyncio.Event, wait_s: float) -> AsyncIterator[bytes]:
        """Wait until woken or `wait_s` passed, yielding a keepalive comment when one is due meanwhile."""
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            due = self._last + self.every_s - time.monotonic()
            if due <= 0:
                self._last = time.monotonic()
                yield b": keepalive\n\n"
                continue
            try:
                await asyncio.wait_for(wake.wait(), timeout=min(left, due))
                return
            except TimeoutError:
                continue
