"""`trtfarm log -f`: a build's log lines from its event stream (registry/eventclient.py), as they are written,
until it ends."""

from __future__ import annotations

from collections.abc import Callable

from registry.eventclient import NoEventsRoute
from registry.status import BuildStatus


def follow_log(farm, build_id: str, show: Callable[[str], object]) -> int | None:  # noqa: ANN001
    """Show each log line of the build until its end; the exit code (0: it succeeded), or None when the farm
    has no event streams (the caller polls)."""
    try:
        for event in farm.events(build_id):
            if event.type == "log":
                show(event.data.get("line", ""))
            elif event.type == "end":
                return 0 if event.build.status == BuildStatus.SUCCEEDED else 1
    except NoEventsRoute:
        return None
    return 1
