"""What /metrics reports about the farm's state, read from SQL at scrape time (docs/design.md "Metrics").

Builds, queues, workers, engines, build phase durations, timing-cache outcomes and validations all live in
the database (workers write their results there directly), so every API replica computes the same numbers
from it; nothing here is a process-local counter. Totals are counts of rows: `trtfarm gc` removing builds
or engines lowers them, which Prometheus' rate()/increase() read as a counter reset.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select, type_coerce
from sqlalchemy.orm import Session

from registry.db.session import Database
from registry.db.tables import Build, Engine, UTCDateTime, Worker, utcnow
from registry.services import fleet
from registry.status import BuildStatus

# the build's recorded timings (workers/build.py STAGE_TIMINGS) -> the phase label
PHASES = {"download_s": "download", "sanitize_s": "sanitize", "build_s": "build", "validate_s": "validate",
          "bench_s": "bench", "store_s": "store"}
PHASE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
TIMING_CACHE_RESULTS = ("hit", "partial_miss", "miss", "rejected")
VALIDATION_RESULTS = {True: "passed", False: "failed", None: "unchecked"}
LOST_WORKERS_FORGOTTEN_AFTER = timedelta(days=1)  # a worker gone longer is no longer counted as lost


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts at each of PHASE_BUCKETS' upper bounds, the count (+Inf) and the sum."""

    buckets: tuple[int, ...]
    count: int
    sum: float


@dataclass(frozen=True)
class QueueState:
    """One queue as the metrics and the dashboard's Fleet page show it."""

    depth: int = 0  # builds queued
    oldest_wait_s: float = 0.0  # how long the oldest queued build has waited (0: none waits)
    running: int = 0
    served_by: tuple[str, ...] = ()  # the live workers serving the queue and taking builds (not drained)

    @property
    def workers(self) -> int:
        return len(self.served_by)


@dataclass(frozen=True)
class FarmMetrics:
    builds: dict[tuple[str, str, str, str, str], int]  # (status, queue, toolchain, version, device) -> builds
    queues: dict[str, QueueState]
    workers: dict[str, int]  # state (idle, building, draining, drained, lost) -> workers
    phases: dict[tuple[str, str], Histogram]  # (phase, toolchain) -> seconds
    timing_cache: dict[str, int]  # TIMING_CACHE_RESULTS -> TensorRT builds
    timing_cache_merges: int  # builds that combined their cache into one another build wrote meanwhile
    validations: dict[tuple[str, str, str], int]  # (toolchain, version, result) -> engines
    engines: dict[str, int] = field(default_factory=dict)  # toolchain -> engines

    @property
    def live_workers(self) -> int:
        return sum(n for state, n in self.workers.items() if state != "lost")


def farm_metrics(db: Database, live_s: int) -> FarmMetrics:
    """One snapshot, a handful of aggregate queries (the API caches it for a few seconds)."""
    def read(s: Session) -> FarmMetrics:
        hits, merges = _timing_cache(s)
        return FarmMetrics(builds=_builds(s), queues=queue_states(s, live_s), workers=_workers(s, live_s),
                           phases=_phases(s), timing_cache=hits, timing_cache_merges=merges,
                           validations=_validations(s), engines=_engines(s))
    return db.read(read)


def _builds(s: Session) -> dict[tuple[str, str, str, str, str], int]:
    cols = (Build.status, Build.queue, Build.toolchain, Build.version, Build.device)
    return {(str(status), *rest): n for status, *rest, n in s.execute(select(*cols, func.count()).group_by(*cols))}


def queue_states(s: Session, live_s: int) -> dict[str, QueueState]:
    """Every queue with queued or running builds or a live worker serving it: depth, oldest wait, running
    builds, the workers taking its builds."""
    waited = type_coerce(func.min(func.coalesce(Build.enqueued_at, Build.created_at)), UTCDateTime())
    now = utcnow()
    states: dict[str, dict[str, Any]] = {}
    for queue, status, n, oldest in s.execute(
            select(Build.queue, Build.status, func.count(), waited)
            .where(Build.status.in_([BuildStatus.QUEUED, BuildStatus.RUNNING])).group_by(Build.queue, Build.status)):
        state = states.setdefault(queue, {})
        if status == BuildStatus.QUEUED:
            state.update(depth=n, oldest_wait_s=_age(now, oldest))
        else:
            state["running"] = n
    serving: dict[str, list[str]] = {}
    for w in fleet.live_workers(s, live_s):
        for queue in (w.queues or ()) if not w.drain_requested else ():
            serving.setdefault(queue, []).append(w.name)
    for queue in serving:
        states.setdefault(queue, {})
    return {queue: QueueState(**state, served_by=tuple(sorted(serving.get(queue, ()))))
            for queue, state in states.items()}


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


def _workers(s: Session, live_s: int) -> dict[str, int]:
    live = {w.name for w in fleet.live_workers(s, live_s)}
    running = dict(s.execute(select(Build.worker, Build.id).where(Build.status == BuildStatus.RUNNING)).all())
    found = Counter({state: 0 for state in ("idle", "building", "draining", "drained", "lost")})
    recent = utcnow() - LOST_WORKERS_FORGOTTEN_AFTER
    for w in s.scalars(select(Worker).where(Worker.last_seen >= recent)):
        found[fleet.worker_state(w, w.name in live, running.get(w.name))] += 1
    return dict(found)


def _phases(s: Session) -> dict[tuple[str, str], Histogram]:
    """Per toolchain and phase, the histogram of finished builds' recorded phase seconds (one query)."""
    columns = []
    for key in PHASES:
        seconds = Build.timings[key].as_float()
        columns += [func.count(seconds), func.coalesce(func.sum(seconds), 0.0)]
        columns += [func.sum(case((seconds <= bound, 1), else_=0)) for bound in PHASE_BUCKETS]
    width = 2 + len(PHASE_BUCKETS)
    found = {}
    for toolchain, *values in s.execute(select(Build.toolchain, *columns).where(Build.finished_at.is_not(None))
                                        .group_by(Build.toolchain)):
        for i, phase in enumerate(PHASES.values()):
            count, total, *buckets = values[i * width:(i + 1) * width]
            if count:
                found[(phase, toolchain)] = Histogram(tuple(int(b or 0) for b in buckets), int(count), float(total))
    return found


def _timing_cache(s: Session) -> tuple[dict[str, int], int]:
    """TensorRT builds by what their timing cache did (workers/timing_sync.py's record): `rejected` by TensorRT,
    a `miss` (the partition had none, or its blob was gone), a `partial_miss` (some layers were timed again),
    else a `hit`; and how many combined theirs with a generation written meanwhile (a merge)."""
    record = Build.timing_cache
    rejected, partial = record["rejected"].as_boolean(), record["partial_miss"].as_boolean()
    cold = (func.coalesce(record["size_before"].as_integer(), 0) == 0) | (record["blob_missing"].as_boolean() == True)  # noqa: E712
    result = case((rejected == True, "rejected"), (cold, "miss"), (partial == True, "partial_miss"),  # noqa: E712
                  else_="hit")
    merged = record["written_generation"].as_integer() - record["generation_used"].as_integer() > 1
    found = Counter({r: 0 for r in TIMING_CACHE_RESULTS})
    merges = 0
    rows = s.execute(select(result, func.count(), func.sum(case((merged, 1), else_=0)))
                     .where(and_(Build.toolchain == "tensorrt", record.is_not(None))).group_by(result))
    for outcome, n, merged_n in rows:
        found[outcome] += n
        merges += int(merged_n or 0)
    return dict(found), merges


def _validations(s: Session) -> dict[tuple[str, str, str], int]:
    cols = (Engine.toolchain, Engine.version, Engine.validation_passed)
    return {(tc, version, VALIDATION_RESULTS[passed]): n
            for tc, version, passed, n in s.execute(select(*cols, func.count()).group_by(*cols))}


def _engines(s: Session) -> dict[str, int]:
    return dict(s.execute(select(Engine.toolchain, func.count()).group_by(Engine.toolchain)).all())
