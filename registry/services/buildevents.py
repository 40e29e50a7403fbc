"""A build's event stream, as rows of `build_events` (migration 0012), appended by the services in the
transaction of each transition:

- `state` (the BuildInfo) when its status changes (submit, requeue, claim, finish, cancel, reaper), followed by
  `end` (the same BuildInfo) when the new status is terminal;
- `stage` ({stage, seconds, at}) when its worker enters a stage (seconds: how long the previous stage took);
- `log` lines, in chunks as the worker renews its lease and when it finishes; a chunk of n lines takes n
  numbers (seq..last_seq), one stream id per line.

Numbers come from `builds.event_seq`, bumped by one UPDATE in the appending transaction: two writers of one
build wait for each other, so a build's ids increase in commit order. The API streams them
(api/routes/events.py); a build that ended before this table existed gets a replay made from its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, BuildEvent, utcnow
from registry.schemas import WorkerInfo

FLEET_TYPES = ("state", "stage")
ROWS_PER_READ = 64  # rows per read of a stream: a chunk holds at most MAX_CHUNK_LINES lines
MAX_CHUNK_LINES = 500
MAX_LINE_CHARS = 4000


@dataclass(frozen=True)
class StreamEvent:
    """One event as a stream sends it: `id` None for events that are not stored (a worker's state)."""

    id: int | None
    type: str
    data: dict[str, Any]


# ----------------------------------------------------------------------------------------- appending


def _append(s: Session, build_id: str, type_: str, data: dict[str, Any], count: int = 1) -> int:
    last = s.execute(update(Build).where(Build.id == build_id).values(event_seq=Build.event_seq + count)
                     .returning(Build.event_seq)).scalar()
    if last is None:
        return 0
    s.add(BuildEvent(build_id=build_id, seq=last - count + 1, last_seq=last, type=type_, data=data, at=utcnow()))
    s.flush()
    return last


def state(s: Session, build_id: str) -> None:
    """The build's status changed in this transaction: its BuildInfo now (and `end` when it is terminal)."""
    from registry.services.builds import build_info  # builds appends events too

    s.flush()
    row = s.get(Build, build_id, populate_existing=True)
    if row is None:
        return
    data = build_info(s, row).model_dump(mode="json")
    _append(s, build_id, "state", data)
    if row.status.terminal:
        _append(s, build_id, "end", data)


def stage(s: Session, build_id: str, name: str, seconds: float | None) -> None:
    _append(s, build_id, "stage", {"stage": name, "seconds": seconds, "at": utcnow().isoformat()})


def log_lines(s: Session, build_id: str, lines: list[str]) -> None:
    """New lines of the build's log, in chunks of at most MAX_CHUNK_LINES."""
    lines = [line[:MAX_LINE_CHARS] for line in lines]
    for i in range(0, len(lines), MAX_CHUNK_LINES):
        chunk = lines[i:i + MAX_CHUNK_LINES]
        _append(s, build_id, "log", {"lines": chunk}, count=len(chunk))


# ------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class BuildPage:
    """Events of one build after a stream id; `ended` when the stream has nothing more to send."""

    build_id: str
    events: list[StreamEvent]
    ended: bool


def build_events(db: Database, build_id: str, after: int, log_text: Any = None) -> BuildPage:
    """The build's events numbered above `after` (at most ROWS_PER_READ rows). `log_text(build_id)` gives the
    stored log of a finished build that has no events (it ended before they were kept)."""
    from registry.services.builds import build_info, get_build

    with db.read_session() as s:
        row = get_build(s, build_id)
        if row.event_seq == 0:
            if not row.status.terminal or after > 0:
                return BuildPage(row.id, [], row.status.terminal)
            info = build_info(s, row).model_dump(mode="json")
            return BuildPage(row.id, _replay(info, log_text(row.id) if log_text else ""), True)
        rows = s.scalars(select(BuildEvent).where(BuildEvent.build_id == row.id, BuildEvent.last_seq > after)
                         .order_by(BuildEvent.seq).limit(ROWS_PER_READ)).all()
        events = [e for r in rows for e in _expand(r) if e.id is not None and e.id > after]
        caught_up = (events[-1].id if events else after) >= row.event_seq
        return BuildPage(row.id, events, caught_up and row.status.terminal)


def _expand(row: BuildEvent) -> list[StreamEvent]:
    if row.type != "log":
        return [StreamEvent(row.seq, row.type, row.data)]
    return [StreamEvent(row.seq + i, "log", {"line": line}) for i, line in enumerate(row.data.get("lines", []))]


def _replay(info: dict[str, Any], log: str) -> list[StreamEvent]:
    """A finished build without events: its state, the stages of its timings, its stored log, its end."""
    events = [StreamEvent(1, "state", info)]
    previous: float | None = None
    for key, name in TIMING_STAGES.items():
        if key in (info.get("timings") or {}):
            events.append(StreamEvent(len(events) + 1, "stage", {"stage": name, "seconds": previous, "at": None}))
            previous = info["timings"][key]
    events += [StreamEvent(len(events) + 1 + i, "log", {"line": line}) for i, line in enumerate(log.splitlines())]
    return [*events, StreamEvent(len(events) + 1, "end", info)]


# the stages a build's recorded timings name (workers/build.py STAGE_TIMINGS), in order
TIMING_STAGES = {"download_s": "downloading model", "sanitize_s": "sanitizing", "build_s": "building",
                 "validate_s": "validating", "bench_s": "benchmarking", "store_s": "storing engine"}


# --------------------------------------------------------------------------------------------- fleet


def fleet_cursor(db: Database) -> int:
    """The fleet stream starts after the last event stored now."""
    with db.read_session() as s:
        return int(s.scalar(select(func.max(BuildEvent.id))) or 0)


def fleet_events(db: Database, after: int) -> tuple[list[StreamEvent], int]:
    """Build status changes (`build`: the BuildInfo) and stages (`stage`: {build, stage, seconds}) stored after
    the fleet cursor `after`; and the new cursor."""
    with db.read_session() as s:
        rows = s.execute(select(BuildEvent.id, BuildEvent.build_id, BuildEvent.type, BuildEvent.data)
                         .where(BuildEvent.id > after, BuildEvent.type.in_(FLEET_TYPES))
                         .order_by(BuildEvent.id).limit(ROWS_PER_READ)).all()
    events = [StreamEvent(r.id, "build", r.data) if r.type == "state" else
              StreamEvent(r.id, "stage", {"build": r.build_id, "stage": r.data.get("stage"),
                                          "seconds": r.data.get("seconds")}) for r in rows]
    return events, (rows[-1].id if rows else after)


def worker_changes(before: dict[str, str], workers: list[WorkerInfo]) -> tuple[list[StreamEvent], dict[str, str]]:
    """`worker` events for the workers whose state differs from `before` ({name: state}); the new states."""
    now = {w.name: w.state for w in workers}
    changed = [StreamEvent(None, "worker", w.model_dump(mode="json")) for w in workers if before.get(w.name) != w.state]
    return changed, now
