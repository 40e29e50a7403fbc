"""Each farm process logs the builds it handles as structured lines (registry/events.py): the API's
dispatcher when it queues one, the worker when it claims it, enters each stage and finishes it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.conftest import RunningFarm, batch_profile, wait_for
from tests.models import convnet, unbuildable_model


def events_of(text: str, build_id: str) -> list[dict[str, str]]:
    found = []
    for line in text.splitlines():
        if " trtfarm.builds " in line and f"build={build_id} " in line:
            found.append(dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line.split(" trtfarm.builds ", 1)[1])))
    return found


def test_api_and_worker_log_each_transition_of_a_build(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "e.onnx", channels=4, layers=1, seed=51))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=True)
    assert build.status == "succeeded"
    api = events_of(farm.api.log.read_text(), build.id)
    assert [e["event"] for e in api] == ["queued"] and api[0]["queue"] == build.queue
    # the build's end reaches the client (its event stream) as the worker's finish commits: the worker's own
    # "finished" line follows a moment later
    worker = wait_for(lambda: (found := events_of(farm.workers[0].log.read_text(), build.id))
                      and found[-1]["event"] == "finished" and found, what="the worker's finished line")
    names = [e["event"] for e in worker]
    assert names[0] == "claimed" and names[-1] == "finished", names
    assert worker[0]["worker"] == build.worker and worker[0]["attempt"] == "1"
    stages = [e["stage"].strip('"') for e in worker if e["event"] == "stage"]
    assert stages == ["downloading model", "building", "validating", "benchmarking", "storing engine"], stages
    building = next(e for e in worker if e.get("stage") == "validating")
    assert building["previous"] == "building" and float(building["seconds"]) > 0
    assert worker[-1]["status"] == "succeeded" and float(worker[-1]["seconds"]) > 0


def test_a_failed_build_logs_its_error_code(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    sdk = farm.client()
    model = sdk.upload(unbuildable_model(tmp_path / "f.onnx"))
    build = sdk.submit(model.id, ort_runtime, {}, wait=False)
    build = farm.wait_build(build.id)
    assert build["status"] == "failed", build
    finished = wait_for(lambda: [e for e in events_of(farm.workers[0].log.read_text(), build["id"])
                                 if e["event"] == "finished"], what="the worker's finished line")
    assert len(finished) == 1 and finished[0]["status"] == "failed"
    assert finished[0]["error"] == build["error"]["code"]

