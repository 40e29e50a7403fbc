"""Exactly-once where it matters: submit dedup under concurrency (PostgreSQL's unique key), concurrent uploads
of one model, duplicate queue deliveries (Redis), and completion guarded by the attempt."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from registry.db.tables import Build, Engine, Model, ModelFile, Outbox, utcnow
from registry.queues import BUILD_TASK
from registry.services import attempts
from registry.services.attempts import EngineRecord, Lease, Outcome
from registry.status import BuildStatus
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet

UNSERVED = "onnxruntime==9.9.9@x86_64-avx2"


def _concurrently(n: int, call) -> list:  # noqa: ANN001
    """Run call(i) in n threads released together; return the results in order (exceptions re-raised)."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    return results


def test_fifty_identical_submissions_over_two_apis_and_two_workers_make_one_build(
        farm_factory, ort_runtime: str, tmp_path: Path) -> None:  # noqa: ANN001
    farm = farm_factory(workers=2)
    second = farm.add_api()
    model = farm.client().upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=21))
    body = {"model": model.id, "target": ort_runtime, "spec": batch_profile()}
    # one connection each, alternating between the two APIs: the requests really overlap
    clients = [farm.http() if i % 2 else httpx.Client(base_url=second, timeout=60) for i in range(50)]

    responses = _concurrently(50, lambda i: clients[i].post("/v1/builds", json=body))

    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 200: 49}, [r.text for r in responses if r.status_code not in (200, 201)][:3]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (build_id,) = ids
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Build)) == 1
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build_id)) == 1

    info = farm.wait_build(build_id)
    assert info["status"] == "succeeded" and info["attempt"] == 1
    # submitting again afterwards: the same build, 200, nothing new
    again = clients[0].post("/v1/builds", json=body)
    assert again.status_code == 200 and again.json()["id"] == build_id and again.json()["status"] == "succeeded"
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Engine)) == 1
    for client in clients[::2]:
        client.close()


def test_concurrent_identical_uploads_make_one_model(farm: RunningFarm, tmp_path: Path) -> None:
    path = convnet(tmp_path / "same.onnx", channels=4, layers=1, seed=22)
    data = path.read_bytes()
    clients = [farm.http() for _ in range(12)]
    before = farm.s3_keys()

    responses = _concurrently(12, lambda i: clients[i].post("/v1/models", files={"file": ("same.onnx", data)}))

    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 200: 11}, [r.text for r in responses][:3]
    assert len({r.json()["id"] for r in responses}) == 1
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Model)) == 1
        assert s.scalar(select(func.count()).select_from(ModelFile)) == 1
    new = farm.s3_keys() - before
    assert len(new) == 1 and new.pop().endswith(responses[0].json()["id"].removeprefix("sha256:"))


def _queue_drained(farm: RunningFarm, queue: str, timeout: float = 60) -> None:
    """Every message of `queue` delivered and acked (kombu's Redis transport: the list and 'unacked')."""
    r = farm.redis.client()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if r.llen(queue) == 0 and r.hlen("unacked") == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"queue {queue} not drained: {r.llen(queue)} waiting, {r.hlen('unacked')} unacked")


def test_duplicate_deliveries_build_once(farm_factory, ort_runtime: str, tmp_path: Path) -> None:
    farm = farm_factory(workers=2)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "d.onnx", channels=4, layers=1, seed=23))
    celery = farm.celery()

    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    for _ in range(2):  # the same build id published twice more, while two workers listen
        celery.send_task(BUILD_TASK, args=[build.id], queue=build.queue)
    done = farm.wait_build(build.id)
    _queue_drained(farm, build.queue)

    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    finished_at = done["finished_at"]
    for _ in range(2):  # and twice after it succeeded
        celery.send_task(BUILD_TASK, args=[build.id], queue=build.queue)
    _queue_drained(farm, build.queue)

    after = farm.wait_build(build.id)
    assert (after["status"], after["attempt"], after["finished_at"]) == ("succeeded", 1, finished_at)
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Engine).where(Engine.build_id == build.id)) == 1
        assert s.scalar(select(func.count()).select_from(Engine)) == 1
    assert len(sdk.engines(model.id)) == 1


def _engine_record() -> EngineRecord:
    return EngineRecord(version="1.32.0", digest="sha256:" + "1" * 64, size=1, filename="x.ort", metadata={})


def test_finish_with_a_stale_attempt_is_refused(farm: RunningFarm, tmp_path: Path) -> None:
    """A worker whose lease was taken over cannot complete the build, nor add an engine."""
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "s.onnx", channels=4, layers=1, seed=24))
    build = sdk.submit(model.id, UNSERVED, batch_profile(), wait=False)  # no worker will touch it
    db = farm.db

    first = attempts.claim(db, build.id, "worker-a", lease_s=60)
    assert first is not None and first.attempt == 1
    assert attempts.claim(db, build.id, "worker-b", lease_s=60) is None  # the lease is live
    with db.session() as s:  # worker-a goes silent: its lease runs out
        s.execute(update(Build).where(Build.id == build.id).values(lease_until=utcnow() - timedelta(seconds=1)))
    second = None
    deadline = time.monotonic() + 10
    while second is None and time.monotonic() < deadline:  # either straight away, or after the reaper requeued it
        second = attempts.claim(db, build.id, "worker-b", lease_s=60)
        time.sleep(0.1)
    assert second is not None and second.attempt == 2

    assert attempts.renew(db, first, 60) == Lease.LOST
    assert attempts.finish(db, first, Outcome(BuildStatus.SUCCEEDED, engine=_engine_record())) is False
    with db.session() as s:
        row = s.get(Build, build.id)
        assert (row.status, row.attempt, row.worker) == ("running", 2, "worker-b")
        assert s.scalar(select(func.count()).select_from(Engine)) == 0

    assert attempts.finish(db, second, Outcome(BuildStatus.FAILED, "toolchain_error", "boom")) is True
    assert attempts.finish(db, second, Outcome(BuildStatus.SUCCEEDED)) is False  # finished already
    info = httpx.get(f"{farm.url}/v1/builds/{build.id}").json()
    assert (info["status"], info["attempt"], info["error"]["code"]) == ("failed", 2, "toolchain_error")


def test_a_burst_larger_than_the_pool_waits_its_turn(farm_factory) -> None:
    """One database connection, 60 requests at once: the API runs no more request threads than it has
    connections, so every request is answered 200 (no pool timeout, no 5xx)."""
    farm = farm_factory(workers=0, db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.05)

    def ask(i: int) -> int:
        path = ("/v1/builds", "/v1/workers", f"/v1/builds/{'0' * 31}{i % 10}")[i % 3]
        return httpx.get(f"{farm.url}{path}", timeout=60).status_code

    with ThreadPoolExecutor(60) as pool:
        answers = Counter(pool.map(ask, range(180)))
    assert set(answers) <= {200, 404} and answers[200] == 120, answers
