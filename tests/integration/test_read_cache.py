"""The API's read cache on real PostgreSQL: emptied by the tables' change notifications (migration 0003),
off while its listener is disconnected, never keeping an answer computed across a change; and through a
real API process, a resolve that said 404 answers 200 once the engine exists, a revoked key stops."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text

from registry.readcache import APPLICATION, MISSING, ReadCache, open_read_cache
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
    with farm.db.session() as s:  # a change to a table no cached answer comes from leaves it alone
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
