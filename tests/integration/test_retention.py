"""Retention's inputs: downloads counted per engine (not cache hits, not resumed ranges), pins (admin)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from registry.errors import Forbidden
from registry.services import keys
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet


def test_downloads_are_counted_and_pins_need_admin(farm_factory, ort_runtime: str, tmp_path: Path) -> None:  # noqa: ANN001
    farm: RunningFarm = farm_factory(blobs="file", auth="required")
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "p.onnx", channels=4, layers=1, seed=81))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    (listed,) = sdk.engines(model.id)
    assert listed.fetches == 0 and listed.last_fetched_at is None and listed.pinned is False
    sdk.fetch(model.id, runtime=ort_runtime)
    sdk.fetch(model.id, runtime=ort_runtime)  # a local cache hit: the farm hands nothing out
    farm.client().fetch(model.id, runtime=ort_runtime)  # another host: a second download
    url = f"{farm.url}/v1/engines/{build.engine_id}/artifact"
    headers = farm.auth_headers
    assert httpx.get(url, headers={**headers, "Range": "bytes=10-20"}).status_code == 206  # a resumed download
    (listed,) = sdk.engines(model.id)
    assert listed.fetches == 2 and listed.last_fetched_at is not None

    reader = keys.create_key(farm.db, "reader", ["read"]).token
    with pytest.raises(Forbidden, match="needs 'admin'"):
        farm.client(token=reader).pin(build.engine_id)
    assert sdk.pin(build.engine_id).pinned is True
    assert sdk.engines(model.id)[0].pinned is True and sdk.engine(build.engine_id).pinned is True
    assert sdk.unpin(build.engine_id).pinned is False


def test_gc_dry_run_then_removal_keeps_pinned_recent_and_fetched(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                   tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory(blobs="file")
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "g.onnx", channels=4, layers=1, seed=82))
    basic = {"onnxruntime": {"graph_optimization_level": "basic", "optimized_model_format": "ort"}}
    specs = [batch_profile(hi=4), batch_profile(hi=5), {**batch_profile(hi=6), **basic}]  # the last: its own bytes
    built = [sdk.submit(model.id, ort_runtime, spec, wait=True) for spec in specs]
    assert len({sdk.engine(b.engine_id).digest for b in built[1:]}) == 2
    pinned, fetched, doomed = (b.engine_id for b in built)
    sdk.pin(pinned)
    farm.client().fetch(model.id, runtime=ort_runtime, spec=batch_profile(hi=5))  # handed out: within the grace

    assert sdk.gc(keep_last=5, unused_days=0).removed == []  # each is the newest of its spec: kept
    plan = sdk.gc(keep_last=0, unused_days=30)
    assert plan.removed == [] and plan.kept == {"pinned": 1, "grace": 1, "used": 1}
    plan = sdk.gc(keep_last=0, unused_days=0)
    assert plan.dry_run and [r.engine_id for r in plan.removed] == [doomed]
    assert plan.kept == {"pinned": 1, "grace": 1}
    assert sdk.engine(doomed).id == doomed  # a dry run removes nothing
    digest = sdk.engine(doomed).digest
    blob = farm.blob_path(digest)
    assert blob.exists()

    done = sdk.gc(keep_last=0, unused_days=0, dry_run=False)
    assert [r.engine_id for r in done.removed] == [doomed] and done.blobs_removed == 2  # the engine and its log
    assert done.bytes_freed == plan.removed[0].size and not blob.exists()
    assert {e.id for e in sdk.engines(model.id)} == {pinned, fetched}
    assert farm.blob_path(sdk.engine(pinned).digest).exists()  # shared by the two kept engines: untouched
    assert "gc removed engine=" + doomed in farm.api.log.read_text()
    again = sdk.submit(model.id, ort_runtime, specs[2], wait=True)  # the same request builds again
    assert again.id != built[2].id and again.status == "succeeded"
    assert sdk.resolve(model.id, runtime=ort_runtime).engine.id in {pinned, fetched, again.engine_id}


def test_deleting_a_model_removes_its_builds_engines_and_blobs(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    from registry.errors import ModelNotFound

    farm: RunningFarm = farm_factory(blobs="file")
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "x.onnx", channels=4, layers=1, seed=83))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    engine_blob = farm.blob_path(sdk.engine(build.engine_id).digest)
    done = sdk.delete_model(model.id)
    assert (done.engines, done.files) == (1, 1) and done.blobs_removed == 3  # engine, log, model file
    assert not engine_blob.exists()
    with pytest.raises(ModelNotFound):
        sdk.model(model.id)
    assert sdk.builds(model=model.id).items == []


def test_gc_compacts_timing_caches_through_the_api_and_the_cli(farm_factory, tmp_path: Path) -> None:  # noqa: ANN001
    """POST /v1/gc and `trtfarm gc`: a superseded generation and an unused partition of a version no live worker
    serves are listed by the dry run and removed by the real one, with a log line each."""
    import json
    import os
    import subprocess
    import sys
    from datetime import timedelta

    from sqlalchemy import update

    from registry.blobs.local import LocalBlobStore
    from registry.db.tables import TimingCache, TimingCacheBlob, utcnow
    from registry.services import fleet, timing_caches
    from registry.spec import parse_spec

    farm: RunningFarm = farm_factory(blobs="file", workers=0)
    blobs = LocalBlobStore(farm.blob_url.removeprefix("file://"))

    def beat() -> None:  # a live TensorRT 8.6 worker (its heartbeat stays live for 20 s in the test farm)
        fleet.heartbeat(farm.db, fleet.Beat(name="host:gpu0", hostname="h", queues=[], devices=[{"sku": "h100"}],
                                            toolchains=[{"kind": "tensorrt", "version": "8.6.0"}]))

    served, dead = (timing_caches.partition_key(version=v, cc="sm_90", sku="h100", spec=parse_spec({}))
                    for v in ("8.6.0", "8.5.3.1"))
    digests = {}
    for part, payload in ((served, b"TC old"), (served, b"TC new"), (dead, b"TC 8.5")):
        blob = blobs.put_bytes(payload)
        timing_caches.compare_and_swap(farm.db, part, timing_caches.newest(farm.db, part).generation, blob.digest,
                                       blob.size, "b" * 32)
        digests[payload] = blob.digest
    with farm.db.session() as s:
        s.execute(update(TimingCacheBlob).where(TimingCacheBlob.digest == digests[b"TC old"])
                  .values(superseded_at=utcnow() - timedelta(hours=1)))
        s.execute(update(TimingCache).values(updated_at=utcnow() - timedelta(days=40)))

    def cli(*args: str) -> subprocess.CompletedProcess:
        beat()
        env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(tmp_path)}
        return subprocess.run([sys.executable, "-m", "registry.cli", "gc", "--keep-last", "1", "--unused-days", "30",
                               *args], capture_output=True, text=True, env=env, timeout=120)

    planned = cli("--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(planned.stdout)
    assert plan["dry_run"] and plan["timing_caches_kept"] == {"served": 1}
    assert sorted((c["partition"], c["digest"], c["reason"]) for c in plan["timing_caches_removed"]) == sorted(
        [(served, digests[b"TC old"], "superseded"), (dead, digests[b"TC 8.5"], "partition_unused")])
    assert blobs.exists(digests[b"TC old"]) and blobs.exists(digests[b"TC 8.5"])

    done = cli()
    assert done.returncode == 0, done.stderr
    assert "timing caches: removed 2 blob(s)" in done.stdout and "1 whole partition(s)" in done.stdout
    assert "partitions kept whole: 1 served" in done.stdout and "2 blob(s) deleted" in done.stdout
    assert not blobs.exists(digests[b"TC old"]) and not blobs.exists(digests[b"TC 8.5"])
    assert blobs.exists(digests[b"TC new"]) and timing_caches.newest(farm.db, dead).generation == 0
    log = farm.api.log.read_text()
    assert f"gc removed timing-cache partition={dead} version=8.5.3.1" in log
    assert f"digest={digests[b'TC old']} size=6 reason=superseded" in log
    beat()
    assert farm.client().gc(keep_last=1, unused_days=30).timing_caches_removed == []
