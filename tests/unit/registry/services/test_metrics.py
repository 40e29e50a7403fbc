"""registry.services.metrics on a seeded SQLite database, and api.metrics.FarmCollector's exposition of it
(the real PostgreSQL path: tests/integration/test_metrics.py)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import FarmCollector
from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.db.tables import Build, Engine, Worker, utcnow
from registry.services.metrics import farm_metrics
from registry.services.models import register_model
from registry.settings import Settings
from tests.models import convnet

Q_ORT, Q_TRT = "build.onnxruntime-1.23.2.x86_64-avx2", "build.tensorrt-10.3.0.h100"


@pytest.fixture
def seeded(tmp_path):
    settings = Settings(home=tmp_path)
    upgrade(settings.resolved_database_url())
    db = Database(settings.resolved_database_url())
    convnet(tmp_path / "up" / "m.onnx")
    model, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), tmp_path / "up", "m.onnx")
    now = utcnow()
    rows = [
        _build(model.id, "queued", Q_ORT, created_at=now - timedelta(minutes=10)),
        _build(model.id, "queued", Q_ORT, created_at=now - timedelta(minutes=2)),
        _build(model.id, "queued", Q_TRT, created_at=now - timedelta(hours=2), enqueued_at=now - timedelta(hours=1)),
        _build(model.id, "running", Q_ORT, worker="cpu-a"),
        _build(model.id, "succeeded", Q_ORT, timings={"download_s": 0.2, "build_s": 3.0, "store_s": 0.1}),
        _build(model.id, "failed", Q_ORT, timings={"build_s": 700.0}),
        _build(model.id, "succeeded", Q_TRT, timings={"build_s": 40.0}, timing_cache=_cache(4096)),
        _build(model.id, "succeeded", Q_TRT, timing_cache=_cache(4096, partial_miss=True, written=6, used=3)),
        _build(model.id, "succeeded", Q_TRT, timing_cache=_cache(0)),
        _build(model.id, "succeeded", Q_TRT, timing_cache=_cache(4096, rejected=True)),
        _build(model.id, "succeeded", Q_TRT, timing_cache=_cache(4096, blob_missing=True)),
    ]
    workers = [Worker(name="cpu-a", hostname="h", toolchains=[], devices=[], queues=[Q_ORT]),
               Worker(name="cpu-b", hostname="h", toolchains=[], devices=[], queues=[Q_ORT], drain_requested=True),
               Worker(name="gone", hostname="h", toolchains=[], devices=[], queues=[Q_TRT],
                      last_seen=now - timedelta(minutes=5)),
               Worker(name="long-gone", hostname="h", toolchains=[], devices=[], queues=[Q_TRT],
                      last_seen=now - timedelta(days=3))]
    with db.session() as s:
        s.add_all(rows + workers)
        s.flush()
        s.add_all([_engine(rows[4], True), _engine(rows[6], False), _engine(rows[7], None)])
    return db


def _build(model_id: str, status: str, queue: str, **values):
    toolchain, version, device = ("tensorrt", "10.3.0", "h100") if "tensorrt" in queue else (
        "onnxruntime", "1.23.2", "x86_64-avx2")
    finished = utcnow() if status in ("succeeded", "failed") else None
    return Build(id=uuid.uuid4().hex, key=uuid.uuid4().hex, model_id=model_id, toolchain=toolchain, version=version,
                 device=device, target=f"{toolchain}=={version}@{device}", queue=queue, spec={}, spec_family="f",
                 plugins=[], status=status, max_attempts=3, finished_at=finished, **values)


def _cache(size_before: int, *, partial_miss=False, rejected=False, blob_missing=False, written=None, used=1):
    record = {"partition": "p", "generation_used": used, "size_before": size_before, "rejected": rejected,
              "partial_miss": partial_miss, "written_generation": written if written is not None else used + 1}
    return {**record, **({"blob_missing": True} if blob_missing else {})}


def _engine(build: Build, passed: bool | None) -> Engine:
    return Engine(id=uuid.uuid4().hex, build_id=build.id, build_key=build.key, model_id=build.model_id,
                  toolchain=build.toolchain, version=build.version, device=build.device, hardware_compatibility="none",
                  version_compatible=False, spec={}, spec_family="f", profile_width=0.0, digest="sha256:" + "0" * 64,
                  size=1, filename="e", meta={}, validation_passed=passed)


def test_snapshot_of_a_seeded_farm(seeded) -> None:
    found = farm_metrics(seeded, live_s=60)
    ort = ("onnxruntime", "1.23.2", "x86_64-avx2")
    assert found.builds[("queued", Q_ORT, *ort)] == 2 and found.builds[("succeeded", Q_TRT, "tensorrt", "10.3.0",
                                                                         "h100")] == 5
    ort_q, trt_q = found.queues[Q_ORT], found.queues[Q_TRT]
    assert (ort_q.depth, ort_q.running, ort_q.workers) == (2, 1, 1)  # cpu-b is drained: it takes nothing
    assert 599 <= ort_q.oldest_wait_s < 700
    assert (trt_q.depth, trt_q.workers) == (1, 0) and 3599 <= trt_q.oldest_wait_s < 3700  # since enqueued
    assert found.workers == {"idle": 0, "building": 1, "draining": 0, "drained": 1, "lost": 1}  # long-gone: forgotten
    assert found.live_workers == 2
    build = found.phases[("build", "onnxruntime")]
    assert (build.count, build.sum) == (2, 703.0)
    assert build.buckets[:4] == (0, 0, 0, 1) and build.buckets[-1] == 2  # 3 s <= 5; 700 s <= 1200
    assert found.phases[("download", "onnxruntime")].count == 1 and ("bench", "onnxruntime") not in found.phases
    assert found.timing_cache == {"hit": 1, "partial_miss": 1, "miss": 2, "rejected": 1}
    assert found.timing_cache_merges == 1  # generation 3 used, 6 written: others wrote meanwhile
    assert found.validations == {("onnxruntime", "1.23.2", "passed"): 1, ("tensorrt", "10.3.0", "failed"): 1,
                                 ("tensorrt", "10.3.0", "unchecked"): 1}
    assert found.engines == {"onnxruntime": 1, "tensorrt": 2}


def test_the_collector_exposes_the_snapshot_and_caches_it(seeded) -> None:
    reads = []

    def read():
        reads.append(1)
        return farm_metrics(seeded, live_s=60)

    registry = CollectorRegistry()
    registry.register(FarmCollector(read, cache_s=60))
    assert not reads  # registering does not query
    text = generate_latest(registry).decode()
    generate_latest(registry)
    assert len(reads) == 1
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("trtfarm_queue_depth", (("queue", Q_TRT),))] == 1
    assert samples[("trtfarm_queue_workers", (("queue", Q_TRT),))] == 0
    assert samples[("trtfarm_workers_live", ())] == 2
    assert samples[("trtfarm_timing_cache_lookups_total", (("result", "miss"),))] == 2
    assert samples[("trtfarm_timing_cache_merges_total", ())] == 1
    assert samples[("trtfarm_builds_finished_total", (("device", "x86_64-avx2"), ("queue", Q_ORT),
                                                      ("status", "failed"), ("toolchain", "onnxruntime"),
                                                      ("version", "1.23.2")))] == 1
    phase = (("phase", "build"), ("toolchain", "onnxruntime"))
    assert samples[("trtfarm_build_phase_duration_seconds_bucket", (("le", "5.0"), *phase))] == 1
    assert samples[("trtfarm_build_phase_duration_seconds_bucket", (("le", "+Inf"), *phase))] == 2
    assert samples[("trtfarm_build_phase_duration_seconds_sum", phase)] == 703.0
    assert samples[("trtfarm_engine_validations_total", (("result", "failed"), ("toolchain", "tensorrt"),
                                                         ("version", "10.3.0")))] == 1


def test_the_cache_expires() -> None:
    reads = []
    collector = FarmCollector(lambda: reads.append(1) or object(), cache_s=0)
    collector.snapshot()
    collector.snapshot()
    assert len(reads) == 2
