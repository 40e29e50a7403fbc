"""Live build events (GET /v1/builds/{id}/events, GET /v1/events) on a production-mode farm (PostgreSQL:
streams woken by NOTIFY), and the SDK that follows them. The embedded (SQLite, polling) farm:
tests/e2e/test_live_events_embedded.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet

STAGES = ["downloading model", "building", "validating", "benchmarking", "storing engine"]


def read_sse(response: httpx.Response, stop: Any = None) -> list[dict[str, Any]]:
    """Events of an SSE response ({id, event, data}, comments as {"comment"}) until it ends or `stop(events)`."""
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            events.append({"comment": line})
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        elif fields:
            events.append({"id": int(fields["id"]) if "id" in fields else None, "event": fields["event"],
                           "data": json.loads(fields["data"])})
            fields = {}
        if stop is not None and stop(events):
            break
    return events


def stream(farm: RunningFarm, path: str, last_id: int | None = None, stop: Any = None) -> list[dict[str, Any]]:
    headers = {**farm.auth_headers, **({"Last-Event-ID": str(last_id)} if last_id is not None else {})}
    with httpx.stream("GET", f"{farm.url}{path}", headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"), r.read()
        return [e for e in read_sse(r, stop) if "event" in e]


def check_build_stream(events: list[dict[str, Any]], log: str) -> None:
    """state first, stages in order, the log's lines in order, end last; ids increasing."""
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    kinds = [e["event"] for e in events]
    assert kinds[0] == "state" and kinds[-1] == "end" and kinds.count("end") == 1, kinds
    statuses = [e["data"]["status"] for e in events if e["event"] == "state"]
    assert statuses == ["queued", "running", "succeeded"], statuses
    assert [e["data"]["stage"] for e in events if e["event"] == "stage"] == STAGES
    assert all(isinstance(e["data"]["seconds"], (float, type(None))) for e in events if e["event"] == "stage")
    lines = [e["data"]["line"] for e in events if e["event"] == "log"]
    assert lines == log.splitlines(), (lines[:5], log.splitlines()[:5])
    first_stage = kinds.index("stage")
    assert kinds.index("log") > kinds.index("state") and first_stage < len(kinds) - 2
    assert events[-1]["data"]["status"] == "succeeded" and events[-1]["data"]["engine_id"]


def test_a_running_build_streams_its_events_then_replays_them(farm: RunningFarm, ort_runtime: str,
                                                              tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=71))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    live = stream(farm, f"/v1/builds/{build.id}/events")  # ends by itself with the build
    log = farm.http().get(f"/v1/builds/{build.id}/log").text
    check_build_stream(live, log)

    replay = stream(farm, f"/v1/builds/{build.id[:10]}/events")  # a prefix, as the other build routes take
    assert [(e["id"], e["event"]) for e in replay] == [(e["id"], e["event"]) for e in live]
    middle = live[len(live) // 2]["id"]
    resumed = stream(farm, f"/v1/builds/{build.id}/events", last_id=middle)
    assert [e["id"] for e in resumed] == [e["id"] for e in live if e["id"] > middle]
    assert stream(farm, f"/v1/builds/{build.id}/events", last_id=live[-1]["id"]) == []

    missing = farm.http().get("/v1/builds/0123456789abcdef0123456789abcdef/events")
    assert missing.status_code == 404 and missing.json()["code"] == "build_not_found"
    bad = farm.http().get(f"/v1/builds/{build.id}/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status_code == 422 and bad.json()["code"]


def test_sdk_follows_events_with_a_progress_callback(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "s.onnx", channels=4, layers=1, seed=72))
    seen: list[Any] = []
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True, progress=seen.append)
    assert build.status == "succeeded"
    kinds = [e.type for e in seen]
    assert kinds[-1] == "end" and {"state", "stage", "log"} <= set(kinds), kinds
    assert seen[-1].build.engine_id == build.engine_id and seen[-1].status == "succeeded"  # reads through
    stages = [e.build.progress for e in seen if e.type == "stage"]
    assert stages == STAGES
    replay = list(sdk.events(build.id))
    assert [e.id for e in replay] == sorted(e.id for e in replay) and replay[-1].type == "end"
    assert [e.line for e in replay if e.type == "log"] == sdk.log(build.id).splitlines()
    assert [e.id for e in sdk.events(build.id, after=replay[-3].id)] == [e.id for e in replay[-2:]]


def test_fleet_stream_sees_a_drain_a_resume_and_a_build(farm_factory: Any, ort_runtime: str, tmp_path: Path) -> None:
    farm = farm_factory(event_streams=2)
    sdk = farm.client()
    worker = sdk.workers()[0].name
    model = sdk.upload(convnet(tmp_path / "f.onnx", channels=4, layers=1, seed=73))
    found: list[dict[str, Any]] = []
    done = threading.Event()

    def enough(events: list[dict[str, Any]]) -> bool:
        found[:] = events
        return done.is_set()

    reader = threading.Thread(target=lambda: stream(farm, "/v1/events", stop=enough), daemon=True)
    reader.start()
    _until(lambda: any(e.get("event") == "worker" for e in found), "the workers' first states")
    build = farm.http().get("/v1/builds/0123456789abcdef0123456789abcdef/events")
    assert build.status_code == 404  # refused before it counts as a stream
    sdk.drain(worker)
    _until(lambda: _worker_states(found, worker)[-1:] == ["drained"], "drained")
    sdk.resume(worker)
    _until(lambda: _worker_states(found, worker)[-1:] == ["idle"], "idle again")
    info = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    _until(lambda: [e["data"]["status"] for e in found if e.get("event") == "build"
                    and e["data"]["id"] == info.id][-1:] == ["succeeded"], "the build's end")
    statuses = [e["data"]["status"] for e in found if e.get("event") == "build" and e["data"]["id"] == info.id]
    assert statuses == ["queued", "running", "succeeded"], statuses
    stages = [e["data"]["stage"] for e in found if e.get("event") == "stage" and e["data"]["build"] == info.id]
    assert stages == STAGES
    assert "building" in _worker_states(found, worker)

    with httpx.stream("GET", f"{farm.url}/v1/events", headers=farm.auth_headers, timeout=10) as second:
        assert second.status_code == 200
        third = farm.http().get("/v1/events")  # the third stream of a farm that serves two
        assert third.status_code == 503 and third.json()["code"] == "too_many_streams"
    done.set()
    reader.join(timeout=20)


def _worker_states(events: list[dict[str, Any]], name: str) -> list[str]:
    states = [e["data"]["state"] for e in events if e.get("event") == "worker" and e["data"]["name"] == name]
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


def _until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"the fleet stream never showed {what}")
