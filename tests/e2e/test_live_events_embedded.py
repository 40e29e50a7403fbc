"""Live build events on the embedded farm (`trtfarm up`: SQLite, streams that poll): a running build's stream,
a finished build's replay, resuming with Last-Event-ID, the fleet stream, the SDK, and `trtfarm log -f`."""

from __future__ import annotations

import threading

import pytest

from tests.embedded import EmbeddedFarm, cli, user_env
from tests.integration.test_live_events import STAGES, _until, _worker_states, check_build_stream, read_sse
from tests.models import convnet


def spec(hi: int) -> dict:
    """A batch profile up to `hi` (another `hi`, another build key)."""
    return {"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [hi, 3, 16, 16]}}]}


SPEC = spec(3)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    running = EmbeddedFarm(tmp_path_factory.mktemp("events-farm")).start()
    yield running
    running.stop()


def _stream(url: str, last_id: int | None = None, stop=None) -> list[dict]:  # noqa: ANN001
    import httpx

    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(10, read=60)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        return [e for e in read_sse(r, stop) if "event" in e]


def test_build_and_fleet_streams_on_sqlite(farm: EmbeddedFarm, tmp_path) -> None:  # noqa: ANN001
    import httpx

    sdk = farm.client()
    worker = sdk.workers()[0].name
    found: list[dict] = []
    done = threading.Event()

    def enough(events: list[dict]) -> bool:
        found[:] = events
        return done.is_set()

    threading.Thread(target=lambda: _stream(f"{farm.url}/v1/events", stop=enough), daemon=True).start()
    _until(lambda: _worker_states(found, worker), "the worker's first state")
    sdk.drain(worker)
    _until(lambda: _worker_states(found, worker)[-1:] == ["drained"], "drained")
    sdk.resume(worker)
    _until(lambda: _worker_states(found, worker)[-1:] == ["idle"], "idle again")

    model = sdk.upload(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=81))
    build = sdk.submit(model.id, "onnxruntime", SPEC, wait=False)
    live = _stream(f"{farm.url}/v1/builds/{build.id}/events")
    check_build_stream(live, httpx.get(f"{farm.url}/v1/builds/{build.id}/log").text)
    replay = _stream(f"{farm.url}/v1/builds/{build.id}/events")
    assert [e["id"] for e in replay] == [e["id"] for e in live]
    middle = live[len(live) // 2]["id"]
    assert [e["id"] for e in _stream(f"{farm.url}/v1/builds/{build.id}/events", middle)] == [
        e["id"] for e in live if e["id"] > middle]
    missing = httpx.get(f"{farm.url}/v1/builds/0123456789abcdef0123456789abcdef/events")
    assert missing.status_code == 404 and missing.json()["code"] == "build_not_found"

    _until(lambda: [e["data"]["status"] for e in found if e.get("event") == "build"
                    and e["data"]["id"] == build.id][-1:] == ["succeeded"], "the build's end")
    assert [e["data"]["stage"] for e in found if e.get("event") == "stage" and e["data"]["build"] == build.id] == STAGES
    done.set()

    seen: list = []
    again = sdk.submit(model.id, "onnxruntime", spec(4), wait=True, progress=seen.append)
    assert again.status == "succeeded" and seen[-1].type == "end" and "log" in {e.type for e in seen}


def test_log_follow_uses_the_event_stream(farm: EmbeddedFarm, tmp_path) -> None:  # noqa: ANN001
    env = user_env(tmp_path, farm.url)
    model = convnet(tmp_path / "f.onnx", channels=4, layers=1, seed=82)
    import json

    queued = json.loads(cli("submit", str(model), "--target", "onnxruntime", "--spec", json.dumps(SPEC), "--json",
                            env=env, cwd=tmp_path).stdout)
    done = cli("log", "-f", queued["id"], env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr
    whole = cli("log", queued["id"], env=env, cwd=tmp_path).stdout.splitlines()
    assert done.stdout.splitlines() == [line for line in whole if line]
    waited = cli("submit", str(model), "--target", "onnxruntime", "--spec", json.dumps(spec(5)), "--wait",
                 env=env, cwd=tmp_path, timeout=180)
    assert waited.returncode == 0, waited.stderr
    progress = [line for line in waited.stderr.splitlines() if line.startswith("[")]
    assert any("running: building" in line for line in progress) and progress[-1].endswith("succeeded"), progress
    assert len(progress) == len(set(line.split("] ", 1)[1] for line in progress))  # one line per change
