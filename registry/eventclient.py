"""The SDK's live build events (mixed into `registry.client.Farm`): `Farm.events(build_id)` follows
`GET /v1/builds/{id}/events` (server-sent events), reconnecting with Last-Event-ID when the connection drops;
`Farm.wait` (and `submit(wait=True)`) follow it too, calling `progress(event)` for each event, and poll a farm
too old to have the route (it answers 404 for it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from registry.errors import BuildNotFound, BuildTimeout, FarmError, Unreachable
from registry.schemas import BuildInfo

RECONNECTS = 5  # dropped connections in a row before Unreachable
STREAM_READ_S = 45.0  # the farm sends a keepalive every 15 s: a silence this long is a dropped connection


@dataclass
class BuildEvent:
    """One event of a build's stream: `type` (state, stage, log, end), `id` (increasing per build), `data` (the
    JSON the farm sent) and `build`, the BuildInfo as of this event (a stage sets its `progress`). Other
    attributes of the BuildInfo read through (`event.status`, `event.progress`), so most progress callbacks
    written for a BuildInfo still work; but `event.id` is the event's id: the build's is `event.build.id`."""

    type: str
    id: int
    data: dict[str, Any]
    build: BuildInfo = field(repr=False)

    def __getattr__(self, name: str) -> Any:
        if name == "build":
            raise AttributeError(name)
        return getattr(self.build, name)

    @property
    def line(self) -> str | None:
        """A `log` event's line."""
        return self.data.get("line") if self.type == "log" else None


Progress = Callable[[BuildEvent], Any]


class NoEventsRoute(Exception):
    """The farm is older than its events route (it answers 404 for it): Farm.events raises this; poll instead."""


class EventOps:
    """Mixed into Farm: it provides _http, build(), sleep, clock."""

    _http: httpx.Client

    def events(self, build_id: str, *, after: int = 0) -> Iterator[BuildEvent]:
        """The build's events (after event id `after`) until its `end` (a finished build replays its events)."""
        info = self.build(build_id)  # type: ignore[attr-defined]
        for event in self._follow_events(info, after):
            if event is not None:
                yield event

    def wait(self, build: str | BuildInfo, *, progress: Progress | None = None, poll_interval: float = 1.0,
             timeout: float | None = None) -> BuildInfo:
        """Follow a build's events until it ends, calling `progress(event)` on each; raise unless it succeeded.
        A farm without the events route is polled (`progress` gets a `state` event per poll)."""
        from registry.client import check_succeeded

        info = build if isinstance(build, BuildInfo) else self.build(build)  # type: ignore[attr-defined]
        deadline = None if timeout is None else self.clock() + timeout  # type: ignore[attr-defined]
        if info.done:  # nothing to follow: one state, as the poll gave
            return self._poll_build(info, progress, poll_interval, deadline, timeout)
        try:
            for event in self._follow_events(info, 0, deadline):
                if event is not None:
                    info = event.build
                    if progress is not None:
                        progress(event)
                    if event.type == "end":
                        return check_succeeded(info)
                if deadline is not None and self.clock() >= deadline:  # type: ignore[attr-defined]
                    raise _timeout(info, timeout)
        except NoEventsRoute:
            pass
        return self._poll_build(info, progress, poll_interval, deadline, timeout)

    def _poll_build(self, info: BuildInfo, progress: Progress | None, poll_interval: float, deadline: float | None,
              timeout: float | None) -> BuildInfo:
        from registry.client import check_succeeded

        while True:
            if progress is not None:
                progress(BuildEvent("state", 0, info.model_dump(mode="json"), info))
            if info.done:
                return check_succeeded(info)
            now = self.clock()  # type: ignore[attr-defined]
            if deadline is not None and now >= deadline:
                raise _timeout(info, timeout)
            self.sleep(poll_interval if deadline is None else max(0.0, min(poll_interval, deadline - now)))  # type: ignore[attr-defined]
            info = self.build(info.id)  # type: ignore[attr-defined]

    def _follow_events(self, info: BuildInfo, after: int, deadline: float | None = None) -> Iterator[BuildEvent | None]:
        """Events (None for a keepalive), reconnecting after `after` on a dropped connection; NoEventsRoute on a 404
        from a farm that has no events route."""
        drops = 0
        while True:
            try:
                for event in self._event_stream(info, after, deadline):
                    if event is not None:
                        info, after, drops = event.build, event.id, 0
                    yield event
                    if event is not None and event.type == "end":
                        return
            except httpx.TransportError as exc:
                drops += 1
                if drops > RECONNECTS:
                    raise Unreachable(f"the event stream of build {info.id} keeps breaking off: {exc}") from exc
                self.sleep(min(5.0, 0.5 * drops))  # type: ignore[attr-defined]
            yield None  # the stream ended without an end: look at the deadline, then reconnect after `after`

    def _event_stream(self, info: BuildInfo, after: int, deadline: float | None) -> Iterator[BuildEvent | None]:
        from registry.client import raise_for_error

        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": str(after)} if after else {})}
        left = STREAM_READ_S if deadline is None else deadline - self.clock()  # type: ignore[attr-defined]
        timeout = httpx.Timeout(self._http.timeout.connect or 30.0, read=max(1.0, min(STREAM_READ_S, left)))
        with self._http.stream("GET", f"/v1/builds/{info.id}/events", headers=headers, timeout=timeout) as response:
            if response.status_code == 404:
                response.read()
                try:
                    raise_for_error(response)
                except BuildNotFound:
                    raise
                except FarmError as exc:  # not the farm's build_not_found: a route this farm lacks
                    raise NoEventsRoute() from exc
            if response.is_error:
                response.read()
                raise_for_error(response)
            yield from parse(response.iter_lines(), info)


def parse(lines: Iterator[str], info: BuildInfo) -> Iterator[BuildEvent | None]:
    """Server-sent events → BuildEvents (None for a comment: a keepalive)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            yield None
        elif line:
            name, _, value = line.partition(":")
            fields[name] = fields.get(name, "") + value.removeprefix(" ") if name == "data" else value.removeprefix(" ")
        elif "data" in fields:
            event = _event(fields, info)
            info = event.build
            fields = {}
            yield event


def _event(fields: dict[str, str], info: BuildInfo) -> BuildEvent:
    kind, data = fields.get("event", "message"), json.loads(fields["data"])
    if kind in ("state", "end"):
        info = BuildInfo.model_validate(data)
    elif kind == "stage":
        info = info.model_copy(update={"progress": data.get("stage")})
    return BuildEvent(kind, int(fields.get("id") or 0), data, info)


def _timeout(info: BuildInfo, timeout: float | None) -> BuildTimeout:
    return BuildTimeout(
        f"build {info.id} is still {info.status} after {timeout:g}s"
        + (f" ({info.waiting_reason})" if info.waiting_reason else "")
        + f"; it goes on at the farm: wait again with Farm.wait({info.id!r})",
        details={"build": info.id, "status": info.status})
