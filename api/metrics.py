"""Prometheus metrics of the API (docs/design.md "Metrics"), all prefixed `trtfarm_`.

- The farm's state (builds, queues, workers, phase durations, timing-cache outcomes, validations) comes from
  the database at scrape time (`FarmCollector`, cached TRTFARM_METRICS_CACHE_S so that scrapes do not hammer
  it): every API replica reports the same truth.
- Requests (latency by route template, response bytes) are measured where they are served, by this process
  (`RequestMetrics`); with `trtfarm api --workers N` the processes share them through prometheus-client's
  multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by api/serve.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from api.auth import require_unless
from registry.services.metrics import PHASE_BUCKETS, FarmMetrics, farm_metrics
from registry.settings import Settings
from registry.stores import FarmStores

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
UNMATCHED = "unmatched"  # the route label of requests no route matched (404s): never the raw path


class FarmCollector(Collector):
    """The farm's state as metric families, from one `farm_metrics` snapshot at most `cache_s` old."""

    def __init__(self, read: Callable[[], FarmMetrics], cache_s: float) -> None:
        self.read, self.cache_s = read, cache_s
        self._lock = threading.Lock()
        self._taken = -float("inf")
        self._snapshot: FarmMetrics | None = None

    def snapshot(self) -> FarmMetrics:
        with self._lock:  # concurrent scrapes wait for one query instead of each running it
            if self._snapshot is None or time.monotonic() - self._taken >= self.cache_s:
                self._snapshot, self._taken = self.read(), time.monotonic()
            return self._snapshot

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        found = self.snapshot()
        yield from _build_families(found)
        yield from _queue_families(found)
        yield from _worker_families(found)
        yield from _outcome_families(found)


def _build_families(found: FarmMetrics) -> Iterator[Metric]:
    labels = ["status", "queue", "toolchain", "version", "device"]
    builds = GaugeMetricFamily("trtfarm_builds", "builds in the database by status", labels=labels)
    finished = CounterMetricFamily("trtfarm_builds_finished", "builds that ended (succeeded, failed, cancelled)",
                                   labels=labels)
    for key, n in sorted(found.builds.items()):
        builds.add_metric(list(key), n)
        if key[0] in ("succeeded", "failed", "cancelled"):
            finished.add_metric(list(key), n)
    phases = HistogramMetricFamily("trtfarm_build_phase_duration_seconds",
                                   "seconds each phase of a finished build took", labels=["phase", "toolchain"])
    for (phase, toolchain), h in sorted(found.phases.items()):
        buckets = [(_bound(b), n) for b, n in zip(PHASE_BUCKETS, h.buckets)] + [("+Inf", h.count)]
        phases.add_metric([phase, toolchain], buckets, h.sum)
    engines = GaugeMetricFamily("trtfarm_engines", "engines in the registry by toolchain", labels=["toolchain"])
    for toolchain, n in sorted(found.engines.items()):
        engines.add_metric([toolchain], n)
    return iter((builds, finished, phases, engines))


def _bound(value: float) -> str:
    return repr(float(value))


def _queue_families(found: FarmMetrics) -> Iterator[Metric]:
    depth = GaugeMetricFamily("trtfarm_queue_depth", "builds queued, waiting for a worker", labels=["queue"])
    wait = GaugeMetricFamily("trtfarm_queue_oldest_wait_seconds", "how long the oldest queued build has waited",
                             labels=["queue"])
    running = GaugeMetricFamily("trtfarm_queue_running", "builds running", labels=["queue"])
    workers = GaugeMetricFamily("trtfarm_queue_workers", "live workers taking builds from the queue (not drained)",
                                labels=["queue"])
    for queue, state in sorted(found.queues.items()):
        depth.add_metric([queue], state.depth)
        wait.add_metric([queue], state.oldest_wait_s)
        running.add_metric([queue], state.running)
        workers.add_metric([queue], state.workers)
    return iter((depth, wait, running, workers))


def _worker_families(found: FarmMetrics) -> Iterator[Metric]:
    by_state = GaugeMetricFamily("trtfarm_workers", "workers by state (lost: no heartbeat, seen within a day)",
                                 labels=["state"])
    for state, n in sorted(found.workers.items()):
        by_state.add_metric([state], n)
    live = GaugeMetricFamily("trtfarm_workers_live", "workers whose heartbeat is recent", value=found.live_workers)
    return iter((by_state, live))


def _outcome_families(found: FarmMetrics) -> Iterator[Metric]:
    cache = CounterMetricFamily("trtfarm_timing_cache_lookups", "TensorRT builds by what their timing cache did",
                                labels=["result"])
    for result, n in sorted(found.timing_cache.items()):
        cache.add_metric([result], n)
    merges = CounterMetricFamily("trtfarm_timing_cache_merges",
                                 "builds that combined their timing cache with one written meanwhile",
                                 value=found.timing_cache_merges)
    validations = CounterMetricFamily("trtfarm_engine_validations", "engines by validation result",
                                      labels=["toolchain", "version", "result"])
    for key, n in sorted(found.validations.items()):
        validations.add_metric(list(key), n)
    return iter((cache, merges, validations))


class RequestMetrics:
    """ASGI middleware: each request's seconds (until its last byte is sent) and response bytes, labelled by
    the route template that served it (`/v1/engines/{engine_id}/artifact`), its method and status class. An
    event stream (text/event-stream) lasts as long as its client listens: its seconds are those until the
    response started, which is what a client waits for."""

    def __init__(self, app: Any, registry: CollectorRegistry | None) -> None:
        self.app = app
        self.seconds = Histogram("trtfarm_http_request_duration_seconds", "request seconds, until the last byte",
                                 ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=registry)
        self.bytes = Counter("trtfarm_http_response_bytes", "response body bytes sent",
                             ["route", "method", "status"], registry=registry)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, sent, status, streamed = time.perf_counter(), 0, 500, None

        async def counted(message: dict) -> None:
            nonlocal sent, status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                    streamed = time.perf_counter()
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            labels = (route, scope["method"], f"{status // 100}xx")
            self.seconds.labels(*labels).observe((streamed or time.perf_counter()) - started)
            self.bytes.labels(*labels).inc(sent)


def install(app: FastAPI, settings: Settings) -> None:
    """/metrics (behind the `read` scope unless TRTFARM_METRICS_PUBLIC) and the request middleware."""
    registry = CollectorRegistry()
    stores: FarmStores = app.state.stores
    registry.register(FarmCollector(lambda: farm_metrics(stores.db, settings.worker_live_s), settings.metrics_cache_s))
    shared = os.environ.get(MULTIPROC_ENV)
    if shared:  # several server processes: each writes its request metrics there, any of them reads them all
        MultiProcessCollector(registry, path=shared)
    app.add_middleware(RequestMetrics, registry=None if shared else registry)
    app.state.metrics = registry
    app.add_api_route("/metrics", scrape, include_in_schema=False, dependencies=require_unless(
        settings.metrics_public, "read"))


def scrape(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)

