"""The outbox relay on real PostgreSQL with two dispatchers at once (two API replicas each running one): the rows
one relay is publishing are locked (FOR UPDATE SKIP LOCKED), so the other skips them and every message is
published exactly once; a publish that fails keeps what went before it as published."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from registry.blobs.local import LocalBlobStore
from registry.db.session import Database
from registry.schemas import BuildRequest
from registry.services import builds, outbox
from registry.services.models import register_model
from registry.settings import Settings
from tests.integration.conftest import Postgres
from tests.models import convnet

TARGET = "onnxruntime==1.32.0@x86_64-avx2"


@pytest.fixture
def db(postgres: Postgres, tmp_path: Path):  # noqa: ANN201
    url = postgres.clone()
    database = Database(url)
    yield database
    database.engine.dispose()
    postgres.drop(url)


def submit_many(db: Database, tmp_path: Path, count: int) -> list[str]:
    settings = Settings(home=tmp_path)
    convnet(tmp_path / "upload" / "m.onnx", channels=4, layers=1)
    model, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), tmp_path / "upload", "m.onnx")
    ids = []
    for n in range(1, count + 1):
        profile = {"input": {"min": [1, 3, 16, 16], "opt": [n, 3, 16, 16], "max": [count, 3, 16, 16]}}
        info, created = builds.submit(db, settings, BuildRequest(model=model.id, target=TARGET,
                                                                 spec={"profiles": [profile]}))
        assert created
        ids.append(info.id)
    return ids


def test_two_relays_at_once_publish_every_message_once(db: Database, tmp_path: Path) -> None:
    ids = submit_many(db, tmp_path, 12)
    first_inside, release = threading.Event(), threading.Event()
    published: dict[str, list[str]] = {"a": [], "b": []}

    def slow(message: outbox.Message) -> None:  # relay a holds its rows while relay b runs
        published["a"].append(message.build_id)
        first_inside.set()
        assert release.wait(10)

    a = threading.Thread(target=outbox.relay, args=(db, slow, 5))
    a.start()
    assert first_inside.wait(10)
    sent_b = outbox.relay(db, lambda m: published["b"].append(m.build_id))  # while a holds 5 rows
    release.set()
    a.join(10)
    assert sent_b == 7 and not set(published["a"]) & set(published["b"])
    assert outbox.relay(db, lambda m: published["b"].append(m.build_id)) == 0
    assert sorted(published["a"] + published["b"]) == sorted(ids) and outbox.pending(db) == []


def test_a_failed_publish_keeps_what_went_before_it(db: Database, tmp_path: Path) -> None:
    ids = submit_many(db, tmp_path, 3)
    taken: list[str] = []

    def third_refused(message: outbox.Message) -> None:
        if len(taken) == 2:
            raise ConnectionError("broker went away")
        taken.append(message.build_id)

    with pytest.raises(ConnectionError):
        outbox.relay(db, third_refused)
    assert [m.build_id for m in outbox.pending(db)] == ids[2:]  # the first two stay published
    assert outbox.relay(db, lambda m: taken.append(m.build_id)) == 1 and taken == ids
