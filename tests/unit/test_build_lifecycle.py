"""Build state machine on a real SQLite database: claim/renew/finish guarded by attempt, the reaper,
submit dedup under threads, timing-cache compare-and-swap."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from registry.blobs.local import LocalBlobStore
from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.db.tables import Build, Engine, Outbox, utcnow
from registry.errors import BuildStateError, InvalidSpec, UnservedTarget
from registry.schemas import BuildRequest
from registry.services import builds, fleet, reaper, timing_caches
from registry.services.models import register_model
from registry.settings import Settings
from tests.models import convnet

TARGET = "onnxruntime==1.32.0@x86_64-avx2"
PROFILE = {"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}


@pytest.fixture()
def farm(tmp_path):
    settings = Settings(home=tmp_path, max_attempts=2, lease_s=60)
    upgrade(settings.resolved_database_url())
    db = Database(settings.resolved_database_url())
    blobs = LocalBlobStore(tmp_path / "blobs")
    folder = tmp_path / "upload"
    convnet(folder / "m.onnx")
    model, _ = register_model(db, blobs, folder, "m.onnx")
    return settings, db, model


def _submit(settings, db, model, spec=None, target=TARGET):
    return builds.submit(db, settings, BuildRequest(model=model.id, target=target, spec=spec or {"profiles": [PROFILE]}))


def test_submit_dedups_and_waits_with_reason(farm):
    settings, db, model = farm
    first, created = _submit(settings, db, model)
    again, created_again = _submit(settings, db, model)
    assert created and not created_again and first.id == again.id
    assert first.status == "queued" and "no live worker serves queue build.onnxruntime-1.32.0.x86_64-avx2" in first.waiting_reason
    with db.session() as s:
        assert len(s.scalars(select(Outbox)).all()) == 1


def test_concurrent_submissions_make_one_build(farm):
    settings, db, model = farm
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _submit(settings, db, model), range(16)))
    assert sum(created for _, created in results) == 1
    assert len({info.id for info, _ in results}) == 1


def test_partial_target_without_fleet_is_refused(farm):
    settings, db, model = farm
    with pytest.raises(UnservedTarget, match="no live worker"):
        _submit(settings, db, model, target="onnxruntime")


def test_dynamic_input_needs_a_profile(farm):
    settings, db, model = farm
    with pytest.raises(InvalidSpec, match="dynamic input"):
        _submit(settings, db, model, spec={"onnxruntime": {"graph_optimization_level": "all"}})


def test_claim_once_then_finish_guarded_by_attempt(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    claim = builds.claim(db, info.id, "w1", 60)
    assert claim is not None and claim.attempt == 1
    assert builds.claim(db, info.id, "w2", 60) is None  # a duplicate delivery finds nothing to claim
    stale = builds.Claim(info.id, 0, "w0")
    assert builds.finish(db, stale, "succeeded") is False
    assert builds.finish(db, claim, "failed", error_code="build_error", error_message="x") is True
    with db.session() as s:
        row = s.get(Build, info.id)
        assert (row.status, row.error_code, row.attempt) == ("failed", "build_error", 1)


def test_expired_lease_is_claimed_again_and_old_owner_loses(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    first = builds.claim(db, info.id, "w1", 60)
    with db.session() as s:
        s.execute(update(Build).where(Build.id == info.id).values(lease_until=utcnow() - timedelta(seconds=1)))
    second = builds.claim(db, info.id, "w2", 60)
    assert second is not None and second.attempt == 2
    assert builds.renew(db, first, 60) == "lost"
    engine = _engine(info)
    assert builds.finish(db, first, "succeeded", engine=engine) is False
    assert builds.finish(db, second, "succeeded", engine=_engine(info)) is True
    with db.session() as s:
        assert len(s.scalars(select(Engine)).all()) == 1


def _engine(info):
    return Engine(id=uuid.uuid4().hex, build_id=info.id, build_key=info.key, model_id=info.model,
                  toolchain="onnxruntime", version="1.32.0", device="x86_64-avx2", hardware_compatibility="none",
                  version_compatible=False, spec={}, spec_family="f", digest="sha256:" + "0" * 64, size=1,
                  filename="e.ort", meta={})


def test_cancel_queued_and_running(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    assert builds.cancel(db, info.id).status == "cancelled"
    with pytest.raises(BuildStateError):
        builds.cancel(db, info.id)
    again, created = _submit(settings, db, model)  # a cancelled key is queued again on resubmission
    assert not created and again.status == "queued" and again.id == info.id
    claim = builds.claim(db, info.id, "w1", 60)
    assert builds.cancel(db, info.id).status == "running"
    assert builds.renew(db, claim, 60) == "cancel"


def test_reaper_requeues_then_fails_after_max_attempts(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    for attempt in (1, 2):
        assert builds.claim(db, info.id, f"w{attempt}", 60).attempt == attempt
        with db.session() as s:
            s.execute(update(Build).where(Build.id == info.id).values(lease_until=utcnow() - timedelta(seconds=1)))
        report = reaper.reap(db, settings)
        expected = ("queued", "requeued") if attempt == 1 else ("failed", "failed")
        assert info.id in getattr(report, expected[1])
        with db.session() as s:
            row = s.get(Build, info.id)
            assert row.status == expected[0]
    assert row.error_code == "lease_expired" and "attempt 2 of 2" in row.error_message


def _queued_for(farm, seconds: float):
    """A queued build whose message went out `seconds` ago, with an idle worker on its queue."""
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    with db.session() as s:
        fleet.heartbeat(s, name="w", hostname="h", toolchains=[], devices=[], queues=[info.queue])
        s.execute(update(Outbox).values(published_at=utcnow()))
        s.execute(update(Build).values(enqueued_at=utcnow() - timedelta(seconds=seconds)))
    return info


def test_reaper_republishes_stale_queued_build_for_idle_worker(farm):
    settings, db, _ = farm
    info = _queued_for(farm, 120)
    report = reaper.reap(db, settings)
    assert report.republished == [info.id]
    assert reaper.reap(db, settings).republished == []  # an unpublished row is pending: no second copy
    with db.session() as s:
        assert s.get(Build, info.id).waiting_reason is None


def test_requeue_stale_s_sets_how_long_a_queued_build_may_wait(farm):
    settings, db, _ = farm
    info = _queued_for(farm, 120)
    patient = settings.model_copy(update={"requeue_stale_s": 600.0})
    assert reaper.reap(db, patient).republished == []  # 120 s < 600 s: still fresh
    assert reaper.reap(db, settings).republished == [info.id]  # 120 s > the default 30 s


def test_timing_cache_compare_and_swap(farm):
    _, db, _ = farm
    part = timing_caches.partition_key(version="8.6.0", cc="sm_90", sku="h100-80gb-hbm3", spec={"precision": ["fp16"]})
    assert "p=fp16" in part and part.startswith("tensorrt-8.6.0/sm_90/h100-80gb-hbm3/")
    assert timing_caches.newest(db, part).generation == 0
    assert timing_caches.compare_and_swap(db, part, 0, "sha256:" + "1" * 64, 10, "b1")
    assert not timing_caches.compare_and_swap(db, part, 0, "sha256:" + "2" * 64, 11, "b2")
    assert timing_caches.compare_and_swap(db, part, 1, "sha256:" + "2" * 64, 11, "b2")
    assert not timing_caches.compare_and_swap(db, part, 1, "sha256:" + "3" * 64, 12, "b3")
    newest = timing_caches.newest(db, part)
    assert (newest.generation, newest.size) == (2, 11)
