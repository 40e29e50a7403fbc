"""The dispatcher on PostgreSQL is woken by the outbox's NOTIFY (migration 0005): with a poll interval of a
minute, a submitted build is still published within a second."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from registry.db.tables import Outbox
from tests.integration.conftest import batch_profile, wait_for
from tests.models import convnet


def test_a_new_build_is_published_at_once_not_at_the_next_poll(farm_factory, ort_runtime: str,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    farm = farm_factory(workers=0, relay_interval_s=60, reaper_interval_s=60)
    sdk = farm.client()
    model = sdk.upload(convnet(tmp_path / "w.onnx", channels=4, layers=1, seed=91))
    time.sleep(1)  # the dispatcher's first pass is over: from now on only a wake-up or the minute's poll
    for i in range(3):
        submitted = time.monotonic()
        build = sdk.submit(model.id, ort_runtime, batch_profile(opt=1 + i), wait=False)

        wait_for(lambda b=build.id: _published(farm, b), timeout=5, what="the build published")
        assert time.monotonic() - submitted < 1.0
        assert farm.redis.client().llen(build.queue) == i + 1


def _published(farm, build_id: str) -> bool:  # noqa: ANN001
    with farm.db.session() as s:
        return s.scalar(select(Outbox.published_at).where(Outbox.build_id == build_id)) is not None
