"""Faults between the database and the broker: Redis restarted (its queued messages gone) while builds
wait, Redis down while builds are submitted, and the API killed after committing a build but before
publishing it. The outbox and the reaper must bring every build to one engine on its first attempt."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy import func, select

from registry.db.tables import Engine, Outbox
from tests.integration.conftest import RunningFarm, batch_profile, wait_for
from tests.models import convnet
from tests.net import free_port


class PrivateRedis:
    """A redis-server of this test alone (nothing on disk), to kill and restart on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.proc = free_port(), folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis(host="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=10, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis_lib.RedisError:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: whatever it held in memory is gone
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


def _builds(farm: RunningFarm, tmp_path: Path, target: str, count: int, seed: int) -> list:
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / f"b{seed}.onnx", channels=4, layers=1, seed=seed))
    return [sdk.submit(model.id, target, batch_profile(opt=1 + i), wait=False) for i in range(count)]


def _one_engine_each_first_attempt(farm: RunningFarm, builds: list, timeout: float = 120) -> None:
    for build in builds:
        done = farm.wait_build(build.id, timeout=timeout)
        assert done["status"] == "succeeded" and done["attempt"] == 1, done
    with farm.db.session() as s:
        counts = [s.scalar(select(func.count()).select_from(Engine).where(Engine.build_id == b.id)) for b in builds]
    assert counts == [1] * len(builds)


def _published(farm: RunningFarm, build_id: str) -> bool:
    with farm.db.session() as s:
        return s.scalar(select(func.count()).select_from(Outbox)
                        .where(Outbox.build_id == build_id, Outbox.published_at.is_not(None))) > 0


def test_redis_restarted_with_builds_queued(farm_factory, ort_runtime: str, broker: PrivateRedis,  # noqa: ANN001
                                            tmp_path: Path) -> None:
    """Three builds published and waiting in Redis; Redis is killed and comes back empty; a worker then
    joins: the reaper sees queued builds nobody takes while a worker of their queue idles, and publishes
    them again."""
    farm = farm_factory(workers=0, broker_url=broker.url, requeue_stale_s=2)
    builds = _builds(farm, tmp_path, ort_runtime, 3, seed=81)
    wait_for(lambda: all(_published(farm, b.id) for b in builds), what="the relay published the builds")
    assert broker.client().llen(builds[0].queue) == 3

    broker.kill()
    broker.start()
    assert broker.client().llen(builds[0].queue) == 0  # the messages are gone with the old server

    farm.add_worker()
    _one_engine_each_first_attempt(farm, builds)


def test_redis_down_while_builds_are_submitted(farm_factory, broker: PrivateRedis, tmp_path: Path) -> None:  # noqa: ANN001
    """Redis is down: submits still answer 201 (the outbox holds the message), the API stays ready, the worker
    keeps trying to reconnect; Redis comes back: every build runs once, on the worker that was waiting."""
    farm = farm_factory(workers=1, broker_url=broker.url)
    worker = farm.workers[0]
    broker.kill()
    builds = _builds(farm, tmp_path, "onnxruntime", 2, seed=82)
    assert all(b.status == "queued" for b in builds)
    assert httpx.get(f"{farm.url}/readyz").status_code == 200
    time.sleep(3)  # the relay fails a few times, the worker's consumer loses its connection
    assert not any(_published(farm, b.id) for b in builds)

    broker.start()
    _one_engine_each_first_attempt(farm, builds)
    assert worker.alive and {farm.wait_build(b.id)["worker"] for b in builds} == {worker.env["TRTFARM_WORKER_NAME"]}


def test_the_api_killed_between_commit_and_publish(farm_factory, ort_runtime: str, broker: PrivateRedis,  # noqa: ANN001
                                                    tmp_path: Path) -> None:
    """The API commits a build with its outbox row, then dies (SIGKILL) before its dispatcher could publish it
    (the broker was down). The next API's dispatcher publishes it: built once, attempt 1."""
    farm = farm_factory(workers=1, broker_url=broker.url)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "k.onnx", channels=4, layers=1, seed=83))
    broker.kill()
    build = sdk.submit(model.id, ort_runtime, batch_profile(), wait=False)
    time.sleep(1)
    assert not _published(farm, build.id)
    farm.api.kill()
    broker.start()
    assert broker.client().llen(build.queue) == 0

    farm.start_api()
    _one_engine_each_first_attempt(farm, [build])
    assert _published(farm, build.id)
