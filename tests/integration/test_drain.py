"""Drain and resume (issue 8): a drained worker finishes the build it runs and takes no new one, queued
builds go to the other worker, the fleet view says so; resumed, it builds again. A drain outlives a
worker restart. Worker names stay unique: a second process given a live worker's name gets a suffix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from registry.errors import WorkerNotFound
from tests.integration.conftest import RunningFarm, batch_profile, wait_for
from tests.models import convnet

SLOWISH = {"TRTFARM_BENCH_ITERATIONS": 30_000, "TRTFARM_BENCH_MAX_S": 4}  # a build of about 4-5 s


def state(farm: RunningFarm, name: str) -> str:
    return next(w.state for w in farm.client().workers() if w.name == name)


def test_a_drained_worker_finishes_its_build_and_the_queue_moves_to_another(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                            tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory(workers=0)
    first = farm.add_worker(**SLOWISH).env["TRTFARM_WORKER_NAME"]
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "d.onnx", channels=4, layers=1, seed=71))
    running = sdk.submit(model.id, ort_runtime, batch_profile(hi=4), wait=False)
    farm.wait_build(running.id, lambda b: b["status"] == "running")
    drained = sdk.drain(first)
    assert drained.drain_requested and drained.state == "draining" and drained.current_build == running.id
    later = [sdk.submit(model.id, ort_runtime, batch_profile(hi=h), wait=False) for h in (5, 6)]
    assert farm.wait_build(running.id, timeout=60)["status"] == "succeeded"  # the running build ran to its end
    wait_for(lambda: state(farm, first) == "drained", what="the first worker to show drained", timeout=20)
    time.sleep(3)
    for b in later:  # nobody serves them now: queued, and the reason names the drained worker
        info = farm.wait_build(b.id, lambda i: True)
        assert info["status"] == "queued" and f"served only by drained worker(s) {first}" in info["waiting_reason"]
    second = farm.add_worker().env["TRTFARM_WORKER_NAME"]
    for b in later:
        done = farm.wait_build(b.id, timeout=90)
        assert done["status"] == "succeeded" and done["worker"] == second, done
    assert "drained" in farm.workers[0].log.read_text()

    resumed = sdk.resume(first)
    assert not resumed.drain_requested and resumed.state in ("idle", "building")
    farm.workers[1].stop()
    again = sdk.submit(model.id, ort_runtime, batch_profile(hi=7), wait=False)
    done = farm.wait_build(again.id, timeout=90)
    assert done["status"] == "succeeded" and done["worker"] == first


def test_a_drain_outlives_a_restart_and_unknown_workers_are_404(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    farm: RunningFarm = farm_factory(workers=0)
    worker = farm.add_worker()
    name = worker.env["TRTFARM_WORKER_NAME"]
    sdk = farm.client()
    sdk.drain(name)
    worker.stop()
    farm.add_worker(TRTFARM_WORKER_NAME=name)  # the same name again: still drained
    model = sdk.upload(convnet(tmp_path / "r.onnx", channels=4, layers=1, seed=72))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    time.sleep(4)
    assert farm.wait_build(build.id, lambda i: True)["status"] == "queued" and state(farm, name) == "drained"
    sdk.resume(name)
    assert farm.wait_build(build.id, timeout=90)["status"] == "succeeded"
    with pytest.raises(WorkerNotFound, match="no worker 'nobody'"):
        sdk.drain("nobody")


def test_a_second_process_with_a_live_workers_name_gets_a_suffix(farm_factory) -> None:  # noqa: ANN001
    farm: RunningFarm = farm_factory(workers=0)
    name = farm.add_worker().env["TRTFARM_WORKER_NAME"]
    farm.add_worker(wait=False, TRTFARM_WORKER_NAME=name)
    wait_for(lambda: {name, f"{name}-2"} <= farm.live_workers(), what="both workers live", timeout=60)
    assert len([w for w in farm.client().workers() if w.live]) == 2
