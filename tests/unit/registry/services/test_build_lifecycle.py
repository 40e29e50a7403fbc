"""registry.services.{builds,attempts,reaper,timing_caches} on a real SQLite database: submit dedup under
threads, claim/renew/finish guarded by attempt, the engine a finish records, the reaper, timing-cache
compare-and-swap."""

from __future__ import annotations

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
from registry.services import attempts, builds, fleet, outbox, reaper, timing_caches
from registry.services.attempts import Claim, EngineRecord, Lease, Outcome
from registry.services.models import register_model
from registry.settings import Settings
from registry.spec import parse_spec
from registry.status import BuildStatus
from tests.models import convnet

TARGET = "onnxruntime==1.32.0@x86_64-avx2"
PROFILE = {"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}


@pytest.fixture
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
    return builds.submit(db, settings, BuildRequest(model=model.id, target=target,
                                                    spec=spec or {"profiles": [PROFILE]}))


def test_submit_dedups_and_waits_with_reason(farm):
    settings, db, model = farm
    first, created = _submit(settings, db, model)
    again, created_again = _submit(settings, db, model)
    assert created and not created_again and first.id == again.id
    assert first.status == "queued" and ("no live worker serves queue build.onnxruntime-1.32.0.x86_64-avx2"
                                         in first.waiting_reason)
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


def test_a_dynamic_input_without_a_range_is_built_at_ones_with_a_warning(farm):
    settings, db, model = farm
    info, created = _submit(settings, db, model, spec={"onnxruntime": {"graph_optimization_level": "all"}})
    assert created and [w.code for w in info.warnings] == ["default_shape"]
    assert "validated at 1x" in info.warnings[0].message and info.spec["profiles"] == []


def test_a_profile_naming_a_missing_input_is_still_refused(farm):
    settings, db, model = farm
    with pytest.raises(InvalidSpec, match="the model has no input 'image'"):
        _submit(settings, db, model, spec={"profiles": [{"image": {"min": [1], "opt": [1], "max": [1]}}]})


def test_claim_once_then_finish_guarded_by_attempt(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    claim = attempts.claim(db, info.id, "w1", 60)
    assert claim is not None and claim.attempt == 1
    assert attempts.claim(db, info.id, "w2", 60) is None  # a duplicate delivery finds nothing to claim
    stale = Claim(info.id, 0, "w0")
    assert attempts.finish(db, stale, Outcome(BuildStatus.SUCCEEDED)) is False
    assert attempts.finish(db, claim, Outcome(BuildStatus.FAILED, "build_error", "x")) is True
    with db.session() as s:
        row = s.get(Build, info.id)
        assert (row.status, row.error_code, row.attempt) == ("failed", "build_error", 1)


def test_expired_lease_is_claimed_again_and_old_owner_loses(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    first = attempts.claim(db, info.id, "w1", 60)
    with db.session() as s:
        s.execute(update(Build).where(Build.id == info.id).values(lease_until=utcnow() - timedelta(seconds=1)))
    second = attempts.claim(db, info.id, "w2", 60)
    assert second is not None and second.attempt == 2
    assert attempts.renew(db, first, 60) == Lease.LOST
    done = Outcome(BuildStatus.SUCCEEDED, engine=_engine())
    assert attempts.finish(db, first, done) is False
    assert attempts.finish(db, second, done) is True
    with db.session() as s:
        engines = s.scalars(select(Engine)).all()
        assert len(engines) == 1
    assert (engines[0].build_id, engines[0].build_key, engines[0].device) == (info.id, info.key, "x86_64-avx2")
    assert engines[0].validation_passed is True and engines[0].spec == info.spec


def _engine() -> EngineRecord:
    return EngineRecord(version="1.32.0", digest="sha256:" + "0" * 64, size=1, filename="e.ort", metadata={},
                        validation={"passed": True, "cases": []}, latency_p50_ms=0.5)


def test_a_failed_attempt_with_retry_is_queued_again_while_attempts_remain(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    for attempt, status in ((1, BuildStatus.QUEUED), (2, BuildStatus.FAILED)):
        claim = attempts.claim(db, info.id, "w", 60)
        assert claim.attempt == attempt
        assert attempts.finish(db, claim, Outcome(BuildStatus.FAILED, "worker_error", "disk full", retry=True))
        assert builds.read(db, info.id).status == status


def test_the_worker_gets_the_spec_parsed_and_the_model_files(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    job = attempts.job(db, info.id)
    assert job.spec == parse_spec({"profiles": [PROFILE]}) and (job.key, job.target) == (info.key, info.target)
    assert [f.path for f in job.model_files] == ["m.onnx"] and job.model_files[0].sha256 == model.id


def test_cancel_queued_and_running(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    assert builds.cancel(db, info.id).status == "cancelled"
    with pytest.raises(BuildStateError):
        builds.cancel(db, info.id)
    again, created = _submit(settings, db, model)  # a cancelled key is queued again on resubmission
    assert not created and again.status == "queued" and again.id == info.id
    claim = attempts.claim(db, info.id, "w1", 60)
    assert builds.cancel(db, info.id).status == "running"
    assert attempts.renew(db, claim, 60) == Lease.CANCEL


def test_reaper_requeues_then_fails_after_max_attempts(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    for attempt in (1, 2):
        assert attempts.claim(db, info.id, f"w{attempt}", 60).attempt == attempt
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
    fleet.heartbeat(db, fleet.Beat(name="w", hostname="h", toolchains=[], devices=[], queues=[info.queue]))
    with db.session() as s:
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
    part = timing_caches.partition_key(version="8.6.0", cc="sm_90", sku="h100-80gb-hbm3",
                                       spec=parse_spec({"precision": ["fp16"]}))
    assert "p=fp16" in part and part.startswith("tensorrt-8.6.0/sm_90/h100-80gb-hbm3/")
    assert timing_caches.newest(db, part).generation == 0
    assert timing_caches.compare_and_swap(db, part, 0, "sha256:" + "1" * 64, 10, "b1")
    assert not timing_caches.compare_and_swap(db, part, 0, "sha256:" + "2" * 64, 11, "b2")
    assert timing_caches.compare_and_swap(db, part, 1, "sha256:" + "2" * 64, 11, "b2")
    assert not timing_caches.compare_and_swap(db, part, 1, "sha256:" + "3" * 64, 12, "b3")
    newest = timing_caches.newest(db, part)
    assert (newest.generation, newest.size) == (2, 11)


def test_outbox_relay_marks_only_what_the_broker_took(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    sent = []

    def broker_down(message):
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        outbox.relay(db, broker_down)
    assert [m.build_id for m in outbox.pending(db)] == [info.id]  # still waiting: published again later
    assert outbox.relay(db, sent.append) == 1
    assert [(m.build_id, m.queue) for m in sent] == [(info.id, info.queue)]
    assert outbox.pending(db) == [] and builds.read(db, info.id).status == BuildStatus.QUEUED
    with db.session() as s:
        assert s.get(Build, info.id).enqueued_at is not None


def test_profile_limits_come_from_the_settings(farm):
    settings, db, model = farm
    big = {"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4096, 3, 16, 16]}}
    with pytest.raises(InvalidSpec, match="TRTFARM_MAX_PROFILE_ELEMENTS"):
        _submit(settings.model_copy(update={"max_profile_elements": 1_000_000}), db, model, spec={"profiles": [big]})
    with pytest.raises(InvalidSpec, match="TRTFARM_MAX_PROFILE_DIM"):
        _submit(settings.model_copy(update={"max_profile_dim": 1024}), db, model, spec={"profiles": [big]})
    info, created = _submit(settings, db, model, spec={"profiles": [big]})  # 3.1 M elements: within the defaults
    assert created and info.status == BuildStatus.QUEUED


def test_a_cancelled_build_whose_worker_died_ends_cancelled(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    attempts.claim(db, info.id, "w1", 60)
    assert builds.cancel(db, info.id).status == BuildStatus.RUNNING  # asked; the worker never answers
    with db.session() as s:
        s.execute(update(Build).where(Build.id == info.id).values(lease_until=utcnow() - timedelta(seconds=1)))
    report = reaper.reap(db, settings)
    assert report.cancelled == [info.id] and report.requeued == [] and report.republished == []
    done = builds.read(db, info.id)
    assert done.status == BuildStatus.CANCELLED and "stopped answering" in done.error.message
    assert attempts.claim(db, info.id, "w2", 60) is None and reaper.reap(db, settings).requeued == []


def test_a_retry_after_a_cancel_request_ends_cancelled(farm):
    settings, db, model = farm
    info, _ = _submit(settings, db, model)
    claim = attempts.claim(db, info.id, "w1", 60)
    builds.cancel(db, info.id)
    assert attempts.finish(db, claim, Outcome(BuildStatus.FAILED, "worker_error", "disk full", retry=True))
    assert builds.read(db, info.id).status == BuildStatus.CANCELLED
    assert len(outbox.pending(db)) == 1  # the submit's message only: no requeue


def test_transient_database_errors_are_retried_then_raised():
    from sqlalchemy.exc import IntegrityError, OperationalError

    from registry.db.session import retry_transient

    calls, slept = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE builds", {}, ConnectionError("terminating connection"))
        return "claimed"

    assert retry_transient(flaky, what="claim", sleep=slept.append) == "claimed" and slept == [0.25, 0.5]
    def down():
        raise OperationalError("UPDATE builds", {}, ConnectionError("the database is down"))

    def duplicate():
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    with pytest.raises(OperationalError):  # still down after the last try
        retry_transient(down, what="claim", tries=3, sleep=slept.append)
    assert slept == [0.25, 0.5, 0.25, 0.5]
    with pytest.raises(IntegrityError):  # not transient: raised at once
        retry_transient(duplicate, what="finish", sleep=lambda _: pytest.fail("slept"))


def test_a_pool_whose_checkout_pings_all_failed_is_transient_too():
    """SQLAlchemy's pool says "This connection is closed" (InvalidRequestError, no DBAPI error) once three
    checkout pings in a row found dead connections: the database keeps dropping them. Seen in the fault test
    that terminates every connection every 0.2 s; any other InvalidRequestError is a bug, raised at once."""
    from sqlalchemy.exc import InvalidRequestError

    from registry.db.session import retry_transient

    calls, slept = [], []

    def exhausted():
        calls.append(1)
        if len(calls) < 2:
            raise InvalidRequestError("This connection is closed")
        return "read"

    assert retry_transient(exhausted, what="poll", sleep=slept.append) == "read" and slept == [0.25]
    with pytest.raises(InvalidRequestError):
        retry_transient(lambda: (_ for _ in ()).throw(InvalidRequestError("Object is already attached")),
                        what="finish", sleep=lambda _: pytest.fail("slept"))
