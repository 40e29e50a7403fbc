"""The API's read cache on real PostgreSQL: emptied by the tables' change notifications (migration 0003),
a build's answer forgotten when its row changes (0006), off while its listener is disconnected, never
keeping an answer computed across a change; and through a real API process, a resolve that said 404 answers
200 once the engine exists, a revoked key stops, a duplicate submit follows its build's changes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from registry.readcache import APPLICATION, MISSING, ReadCache, build_answer, open_read_cache
from registry.services import keys
from tests.integration.conftest import RunningFarm, batch_profile, wait_for
from tests.models import convnet


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def cache(farm_factory) -> tuple[ReadCache, RunningFarm]:  # noqa: ANN001
    farm = farm_factory(workers=0)
    found = open_read_cache(farm.database_url)
    assert isinstance(found, ReadCache)
    found.get("warm-up")  # starts the listener
    wait_for(lambda: found.live, what="the change listener connected")
    yield found, farm
    found.close()


def test_a_committed_change_empties_the_cache(cache: tuple[ReadCache, RunningFarm]) -> None:
    reads, farm = cache
    reads.put("answer", 42, reads.token())
    assert reads.get("answer") == 42
    keys.create_key(farm.db, "someone", ["read"])  # a row in api_keys: its trigger notifies
    wait_for(lambda: reads.get("answer") is MISSING, timeout=5, what="the notification emptied the cache")
    reads.put("answer", 43, reads.token())
    with farm.db.session() as s:  # a build's change forgets only that build's answer (below)
        s.execute(text("UPDATE builds SET progress = progress"))
    time.sleep(0.5)  # a notification would have arrived by now
    assert reads.get("answer") == 43


def test_an_answer_computed_across_a_change_is_not_kept(cache: tuple[ReadCache, RunningFarm]) -> None:
    reads, farm = cache
    token = reads.token()  # taken before computing, as api/cached.py does
    keys.create_key(farm.db, "during", ["read"])
    wait_for(lambda: reads.token() != token, timeout=5, what="the notification")
    reads.put("stale", "computed before the change", token)
    assert reads.get("stale") is MISSING


def test_the_cache_is_off_while_its_listener_is_disconnected(cache: tuple[ReadCache, RunningFarm]) -> None:
    reads, farm = cache
    reads.put("answer", 1, reads.token())
    dbname = farm.database_url.rsplit("/", 1)[-1]
    with psycopg.connect(_dsn(farm.database_url).rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s AND application_name = %s", (dbname, APPLICATION)).fetchone()[0]
    assert killed == 1
    wait_for(lambda: not reads.live, timeout=5, what="the cache noticed its listener's connection died")
    assert reads.get("answer") is MISSING
    reads.put("while-off", 2, reads.token())
    assert reads.get("while-off") is MISSING  # nothing is kept while changes could go unheard
    wait_for(lambda: reads.live, timeout=10, what="the listener reconnected")
    assert reads.get("answer") is MISSING  # what was cached before the gap is gone


def test_resolve_follows_new_engines_and_revocation_through_the_api(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                      tmp_path: Path) -> None:
    farm = farm_factory(workers=1, auth="required")
    sdk = farm.sdk
    model = sdk.upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=3))
    reader = keys.create_key(farm.db, "reader", ["read"]).token
    http = farm.http(headers={"Authorization": f"Bearer {reader}"})
    version, cpu = ort_runtime.removeprefix("onnxruntime==").split("@")
    query = {"model": model.id, "toolchain": "onnxruntime", "version": version, "cpu": cpu}
    for _ in range(3):  # answered from the cache after the first: still the 404 with its reasons
        missing = http.get("/v1/engines/resolve", params=query)
        assert missing.status_code == 404 and missing.json()["code"] == "no_compatible_engine", missing.text
    build = sdk.submit(model.id, "onnxruntime", batch_profile(), timeout=120)
    assert build.status == "succeeded"
    found = wait_for(lambda: (r := http.get("/v1/engines/resolve", params=query)).status_code == 200 and r,
                     timeout=2, what="resolve sees the new engine")
    assert found.json()["engine"]["id"] == build.engine_id
    assert http.get(f"/v1/engines/{build.engine_id}").json()["id"] == build.engine_id
    keys.revoke_key(farm.db, "reader")
    wait_for(lambda: http.get("/v1/engines/resolve", params=query).status_code == 401, timeout=2,
             what="a revoked key is refused")
    assert httpx.get(f"{farm.url}/readyz").status_code == 200


def _queued_build(farm: RunningFarm, target: str, tmp_path: Path, hi: int = 4) -> tuple[dict, dict]:
    """A build request with a full target (its key follows from the request) and the 201 that queued it."""
    model = farm.sdk.upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=5))
    request = {"model": model.id, "target": target, "spec": batch_profile(hi=hi)}
    created = farm.http().post("/v1/builds", json=request)
    assert created.status_code == 201, created.text
    return request, created.json()


def test_a_build_change_forgets_that_builds_answer_alone(cache: tuple[ReadCache, RunningFarm], ort_runtime: str,
                                                        tmp_path: Path) -> None:
    reads, farm = cache
    _, one = _queued_build(farm, ort_runtime, tmp_path)
    _, other = _queued_build(farm, ort_runtime, tmp_path, hi=8)
    time.sleep(0.5)  # the inserts' notifications have come and gone
    token = reads.token()
    for key, value in ((build_answer(one["id"]), "one"), (build_answer(other["id"]), "other"), ("answer", 1)):
        reads.put(key, value, token)
    with farm.db.session() as s:
        s.execute(text("UPDATE builds SET progress = 'moved' WHERE id = :id"), {"id": one["id"]})
    wait_for(lambda: reads.get(build_answer(one["id"])) is MISSING, timeout=5, what="the build's answer forgotten")
    assert (reads.get(build_answer(other["id"])), reads.get("answer")) == ("other", 1)
    reads.put("computed before the change", 2, token)
    assert reads.get("computed before the change") is MISSING


def test_duplicate_submits_follow_their_build_through_the_api(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    farm = farm_factory(workers=0)
    request, created = _queued_build(farm, ort_runtime, tmp_path)
    http = farm.http()
    time.sleep(0.5)  # the insert's notification has come and gone
    for _ in range(2):  # the first is read from the database and kept, the second answered from the cache
        again = http.post("/v1/builds", json=request)
        assert again.status_code == 200 and again.json() == created
    with farm.db.session() as s:  # a change the cache is not told of (its trigger off for this transaction)
        s.execute(text("ALTER TABLE builds DISABLE TRIGGER builds_notify_build"))
        s.execute(text("UPDATE builds SET progress = 'unheard' WHERE id = :id"), {"id": created["id"]})
        s.execute(text("ALTER TABLE builds ENABLE TRIGGER builds_notify_build"))
    assert http.post("/v1/builds", json=request).json()["progress"] != "unheard"  # it was the cache's answer
    with farm.db.session() as s:
        s.execute(text("UPDATE builds SET progress = 'heard' WHERE id = :id"), {"id": created["id"]})
    wait_for(lambda: http.post("/v1/builds", json=request).json()["progress"] == "heard", timeout=5,
             what="the duplicate submit sees the build's change")
    assert http.post(f"/v1/builds/{created['id']}/cancel").json()["status"] == "cancelled"
    requeued = http.post("/v1/builds", json=request)  # at once: a cancelled build is queued again, not a cached answer
    assert (requeued.status_code, requeued.json()["status"], requeued.json()["id"]) == (200, "queued", created["id"])
    assert http.get(f"/v1/builds/{created['id']}").json()["status"] == "queued"
