"""The broker is a transport, SQL is the truth: builds whose worker died come back, builds whose message was
lost are published again, and a build whose lease keeps expiring fails with lease_expired."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from registry.db.tables import Build, Engine, Outbox, utcnow
from registry.services import attempts
from tests.integration.conftest import SLOW_WORKER, RunningFarm, batch_profile, pid_alive, runner_pids, wait_for
from tests.models import convnet

UNSERVED = "onnxruntime==9.9.9@x86_64-avx2"


def test_build_of_a_killed_worker_completes_on_another(farm_factory, ort_runtime: str, tmp_path: Path) -> None:
    farm = farm_factory(workers=0, lease_s=3)
    victim = farm.add_worker(**SLOW_WORKER)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "k.onnx", channels=4, layers=1, seed=31))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    running = farm.wait_build(build.id, lambda b: b["status"] == "running")
    assert running["worker"] == victim.env["TRTFARM_WORKER_NAME"] and running["attempt"] == 1
    rescuer = farm.add_worker(wait=False)  # it will be idle: the victim holds the only message, unacked
    farm.wait_build(build.id, lambda b: b["progress"] == "benchmarking")
    farm.wait_live([rescuer.env["TRTFARM_WORKER_NAME"]])
    runners = wait_for(lambda: runner_pids(farm), what="the victim's benchmark runner process")

    victim.kill_alone()  # SIGKILL: no goodbye, the lease simply stops being renewed
    # the orphaned runner (its own session) dies with its worker: nothing keeps the GPU busy
    wait_for(lambda: not any(pid_alive(p) for p in runners), what="the orphaned runner to die by itself", timeout=10)

    done = farm.wait_build(build.id, timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2 and done["worker"] == rescuer.env["TRTFARM_WORKER_NAME"]
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Engine).where(Engine.build_id == build.id)) == 1
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build.id)) == 2
    log = sdk.log(build.id)
    assert f"attempt 2 on {rescuer.env['TRTFARM_WORKER_NAME']}" in log
    assert sdk.engine(done["engine_id"]).validation_passed is True


def test_a_queued_build_whose_message_was_lost_is_published_again(farm_factory, ort_runtime: str,
                                                                    tmp_path: Path) -> None:
    farm = farm_factory(workers=0)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "l.onnx", channels=4, layers=1, seed=32))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    assert ort_runtime.split("@")[0].replace("==", "-") in build.waiting_reason  # nobody serves it yet
    r = farm.redis.client()

    def published() -> bool:
        with farm.db.session() as s:
            return s.scalar(select(Outbox.published_at).where(Outbox.build_id == build.id)) is not None

    wait_for(published, what="the relay to publish the build")  # the relay published it...
    assert r.llen(build.queue) == 1
    r.flushdb()  # ...and the broker lost it
    with farm.db.session() as s:  # long enough ago for the reaper to call it stale
        s.execute(update(Build).where(Build.id == build.id).values(enqueued_at=utcnow() - timedelta(minutes=5)))

    farm.add_worker()
    done = farm.wait_build(build.id, timeout=60)

    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build.id)) == 2


def test_expired_leases_requeue_then_fail_after_max_attempts(farm: RunningFarm, tmp_path: Path) -> None:
    """Workers that claim the build and vanish (a short lease, nobody renews it)."""
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "e.onnx", channels=4, layers=1, seed=33))
    build = sdk.submit(model.id, UNSERVED, batch_profile(), wait=False)
    assert build.max_attempts == 3

    for attempt in (1, 2, 3):
        claim = attempts.claim(farm.db, build.id, f"ghost-{attempt}", lease_s=1)
        assert claim is not None and claim.attempt == attempt
        after = farm.wait_build(build.id, lambda b: b["status"] != "running", timeout=20)
        if attempt < 3:
            assert after["status"] == "queued" and after["attempt"] == attempt, after
            assert after["progress"] == f"lease expired on ghost-{attempt}; requeued"
            assert after["waiting_reason"] and build.queue in after["waiting_reason"]

    assert after["status"] == "failed", after
    assert after["error"]["code"] == "lease_expired" and after["attempt"] == 3
    assert "attempt 3 of 3" in after["error"]["message"] and "ghost-3" in after["error"]["message"]
    assert attempts.claim(farm.db, build.id, "ghost-4", lease_s=1) is None
    with farm.db.session() as s:  # requeued twice: three messages in all
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build.id)) == 3


def _lease_until(farm: RunningFarm, build_id: str):  # noqa: ANN202
    with farm.db.session() as s:
        return s.scalar(select(Build.lease_until).where(Build.id == build_id))


def test_a_build_longer_than_its_lease_keeps_it(farm_factory, ort_runtime: str, tmp_path: Path) -> None:  # noqa: ANN001
    """A 3 s lease and a build of several times that: the worker renews the lease while it builds, so the
    reaper never takes the build away (attempt 1, one message, one engine)."""
    farm = farm_factory(workers=0, lease_s=3, reaper_interval_s=0.5)
    farm.add_worker(TRTFARM_BENCH_ITERATIONS=300_000, TRTFARM_BENCH_MAX_S=3600)  # a benchmark of several seconds
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "long.onnx", channels=8, layers=2, seed=34))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    running = farm.wait_build(build.id, lambda b: b["status"] == "running")
    farm.add_worker()  # a second, idle worker that would take the build if its lease lapsed
    leases = {_lease_until(farm, build.id)}
    started = time.monotonic()
    while farm.wait_build(build.id, lambda b: True)["status"] == "running":
        leases.add(_lease_until(farm, build.id))
        time.sleep(0.5)
    took = time.monotonic() - started
    done = farm.wait_build(build.id)
    assert done["status"] == "succeeded" and done["attempt"] == 1 and done["worker"] == running["worker"], done
    assert took > 2 * 3, f"the build took {took:.1f} s: not longer than two leases, the test proves nothing"
    assert len(leases - {None}) >= 3  # renewed again and again
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build.id)) == 1
        assert s.scalar(select(func.count()).select_from(Engine).where(Engine.build_id == build.id)) == 1


def test_cancel_then_worker_death_ends_cancelled(farm_factory, ort_runtime: str, tmp_path: Path) -> None:  # noqa: ANN001
    """The worker of a running build dies (SIGKILL) and the build is then cancelled: when its lease lapses
    the reaper ends it `cancelled` instead of queueing it again, though an idle worker waits."""
    farm = farm_factory(workers=0, lease_s=3, reaper_interval_s=0.5)
    victim = farm.add_worker(**SLOW_WORKER)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "c.onnx", channels=4, layers=1, seed=35))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    farm.wait_build(build.id, lambda b: b["progress"] == "benchmarking")
    victim.kill_alone()
    farm.add_worker()
    cancelled = sdk.cancel(build.id)
    assert cancelled.status == "running"  # the dead worker cannot stop it: asked, not yet done
    done = farm.wait_build(build.id, timeout=30)
    assert done["status"] == "cancelled" and done["attempt"] == 1, done
    time.sleep(3)  # a reaper pass or two later: still cancelled, never published again
    assert farm.wait_build(build.id)["status"] == "cancelled"
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.build_id == build.id)) == 1
        assert s.scalar(select(func.count()).select_from(Engine)) == 0


def test_a_warm_runner_killed_mid_benchmark_costs_the_build_nothing(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                     tmp_path: Path) -> None:
    """The worker's warm runner process is SIGKILLed while it benchmarks: the worker runs the command
    again in a fresh process and the build succeeds on its first attempt; the next build gets a new warm
    runner."""
    farm = farm_factory(workers=0)
    farm.add_worker(TRTFARM_BENCH_ITERATIONS=200_000, TRTFARM_BENCH_MAX_S=3600)  # a benchmark of a few seconds
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "wr.onnx", channels=4, layers=1, seed=36))
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    farm.wait_build(build.id, lambda b: b["progress"] == "benchmarking")
    warm = runner_pids(farm)
    assert len(warm) == 1, warm  # one process did the build and the validation runs, and now benchmarks
    os.kill(warm[0], signal.SIGKILL)
    done = farm.wait_build(build.id, timeout=120)
    assert done["status"] == "succeeded" and done["attempt"] == 1, done
    assert "died during bench; running it again in a fresh process" in sdk.log(build.id)
    again = sdk.submit(model.id, ort_runtime, batch_profile(hi=5), wait=False)
    assert farm.wait_build(again.id, timeout=120)["status"] == "succeeded"
    assert warm[0] not in runner_pids(farm) and len(runner_pids(farm)) == 1
