"""A target nobody serves stays queued and says why; cancelling a queued and a running build."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import BuildCancelled, BuildTimeout
from tests.integration.conftest import SLOW_WORKER, RunningFarm, batch_profile, pid_alive, runner_pids, wait_for
from tests.models import convnet

UNSERVED = "onnxruntime==9.9.9@x86_64-avx2"


def test_unserved_target_waits_with_a_reason_and_cancels(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "u.onnx", channels=4, layers=1, seed=41))

    build = sdk.submit(model.id, UNSERVED, batch_profile(), wait=False)

    assert build.status == "queued" and build.queue == "build.onnxruntime-9.9.9.x86_64-avx2"
    served = f"build.{ort_runtime.replace('==', '-').replace('@', '.')}"
    for info in (build, sdk.build(build.id)):
        assert f"no live worker serves queue {build.queue}" in info.waiting_reason
        assert served in info.waiting_reason  # it also says what is served
    with pytest.raises(BuildTimeout) as exc:  # several reaper rounds later: still queued, still saying why
        sdk.wait(build.id, poll_interval=0.5, timeout=3)
    assert build.queue in str(exc.value)
    assert sdk.build(build.id).status == "queued"
    assert [b.id for b in sdk.builds(status="queued").items] == [build.id]

    cancelled = sdk.cancel(build.id)
    assert cancelled.status == "cancelled" and cancelled.error.code == "cancelled"
    assert cancelled.waiting_reason is None and cancelled.finished_at is not None
    with farm.http() as http:
        again = http.post(f"/v1/builds/{build.id}/cancel")
        assert again.status_code == 409 and again.json()["code"] == "build_state"
        assert "already cancelled" in again.json()["message"]
    with pytest.raises(BuildCancelled):
        sdk.wait(build.id)

    # submitting the same key again puts the cancelled build back in the queue (same id, 200)
    with farm.http() as http:
        r = http.post("/v1/builds", json={"model": model.id, "target": UNSERVED, "spec": batch_profile()})
    assert r.status_code == 200 and r.json()["id"] == build.id and r.json()["status"] == "queued"
    assert r.json()["attempt"] == 0 and r.json()["error"] is None


def test_cancel_a_running_build(farm_factory, ort_runtime: str, tmp_path: Path) -> None:
    # lease_s=4: the worker's lease keeper looks for a cancel request every second
    farm = farm_factory(workers=1, worker_env=SLOW_WORKER, lease_s=4)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "c.onnx", channels=4, layers=1, seed=42))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    farm.wait_build(build.id, lambda b: b["progress"] == "benchmarking")
    runners = wait_for(lambda: runner_pids(farm), what="the benchmark runner process")

    asked = sdk.cancel(build.id)

    assert asked.status == "running"  # the worker is told; it stops the runner and marks it
    done = farm.wait_build(build.id, timeout=30)
    assert done["status"] == "cancelled" and done["error"]["code"] == "cancelled", done
    assert done["engine_id"] is None and done["finished_at"]
    wait_for(lambda: not any(pid_alive(p) for p in runners), what="the runner to be stopped")
    assert "cancelled" in sdk.log(build.id)
    assert sdk.engines(model.id) == []
    assert farm.workers[0].alive  # the worker survives and is idle again
    wait_for(lambda: [w.current_build for w in sdk.workers()] == [None], what="the worker to report itself idle")
