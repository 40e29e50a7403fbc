"""Issue 10: within a match class resolve prefers the engine whose profiles hold the most shapes (its profile
width), then the newest, with or without `shape`; an ONNX Runtime engine without profiles holds any shape.
Engines are written the way workers write them (submit, claim, finish); answered by the service and, once per
question, by the SDK's fetch through the API (in process). On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from registry.blobs.local import LocalBlobStore
from registry.client import Farm
from registry.db.session import Database
from registry.runtime import parse_runtime
from registry.schemas import BuildRequest
from registry.services import attempts, builds, engines
from registry.services.attempts import Claim, EngineRecord, Outcome
from registry.services.models import register_model
from registry.services.resolution import resolve
from registry.settings import Settings
from registry.status import BuildStatus
from tests.models import convnet

H100 = "tensorrt==10.3.0@h100-80gb-hbm3"
RUNTIME = "tensorrt==10.3.0@h100-80gb-hbm3/sm_90"
CPU = "onnxruntime==1.32.0@x86_64-avx2"


def batch(lo: int, hi: int, opt: int | None = None, level: int = 3) -> dict[str, Any]:
    shape = lambda n: [n, 3, 16, 16]  # noqa: E731
    return {"profiles": [{"input": {"min": shape(lo), "opt": shape(opt or lo), "max": shape(hi)}}],
            "optimization_level": level}


class Fleet:
    def __init__(self, settings: Settings) -> None:
        self.settings, self.db = settings, Database(settings.resolved_database_url())
        self.blobs = LocalBlobStore(settings.home / "blobs")
        convnet(settings.home / "upload" / "m.onnx")  # input [N, 3, 16, 16]
        self.model, _ = register_model(self.db, self.blobs, settings.home / "upload", "m.onnx")

    def built(self, spec: dict, target: str = H100) -> str:
        """An engine of the spec for the target, written as a worker's finish writes it (newer than the last)."""
        info, _ = builds.submit(self.db, self.settings, BuildRequest(model=self.model.id, target=target, spec=spec))
        claim = attempts.claim(self.db, info.id, "w", 60)
        assert isinstance(claim, Claim)
        blob = self.blobs.put_bytes(f"engine of build {info.id}".encode())
        gpu = {"sku": "h100-80gb-hbm3", "cc": "sm_90"} if target.startswith("tensorrt") else {}
        record = EngineRecord(version=target.split("==")[1].split("@")[0], digest=blob.digest, size=blob.size,
                              filename="e.plan" if gpu else "e.ort", metadata={"hardware_specific": True}, **gpu)
        assert attempts.finish(self.db, claim, Outcome(BuildStatus.SUCCEEDED, engine=record))
        return next(e.id for e in engines.list_engines(self.db, self.model.id) if e.build_id == info.id)

    def resolved(self, runtime: str = RUNTIME, **shapes: tuple[int, ...]) -> str:
        return resolve(self.db, self.model.id, parse_runtime(runtime), shapes=shapes or None).engine.id


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    url = None
    if request.param == "postgresql":
        postgres = request.getfixturevalue("postgres")
        url = postgres.clone()
    else:
        from registry.db.migrate import upgrade

        upgrade(Settings(home=tmp_path).resolved_database_url())
    # the read cache is left out: a question is asked again after an engine is added (its invalidation by
    # NOTIFY is tested elsewhere)
    fleet = Fleet(Settings(home=tmp_path, database_url=url, auth="off", read_cache=False))
    try:
        yield fleet
    finally:
        fleet.db.engine.dispose()
        if url:
            postgres.drop(url)


def _sdk_fetch(fleet: Fleet, tmp_path: Path, **shapes: tuple[int, ...]) -> str:
    """The engine the SDK's fetch hands out (by the digest of the file it returns)."""
    with TestClient(create_app(fleet.settings)) as client:
        farm = Farm("http://testserver", cache_dir=tmp_path / "sdk-cache", transport=client._transport)
        path = farm.fetch(fleet.model.id, runtime=RUNTIME, shapes={n: list(s) for n, s in shapes.items()} or None,
                          refresh=True)
    digest = "sha256:" + Path(path).name.split(".")[0]
    return next(e.id for e in engines.list_engines(fleet.db, fleet.model.id) if e.digest == digest)


def test_the_widest_engine_wins_its_class_then_the_newest(fleet: Fleet, tmp_path: Path) -> None:
    wide = fleet.built(batch(1, 16))
    narrow = fleet.built(batch(1, 4))  # newer, same target, same class: narrower profiles
    assert fleet.resolved() == wide  # no shapes: the one holding batches 1..16, not the newest
    assert fleet.resolved(input=(2, 3, 16, 16)) == wide  # both hold batch 2: the wider still wins
    assert fleet.resolved(input=(8, 3, 16, 16)) == wide  # only the wide one holds batch 8
    assert fleet.resolved(input=(4, 3, 16, 16)) == wide
    answer = resolve(fleet.db, fleet.model.id, parse_runtime(RUNTIME))
    assert answer.match_class == "exact"
    assert answer.reason.endswith("; widest profiles of its class (input: 1x3x16x16..16x3x16x16)"), answer.reason
    assert _sdk_fetch(fleet, tmp_path) == wide
    assert _sdk_fetch(fleet, tmp_path, input=(2, 3, 16, 16)) == wide

    same_width = fleet.built(batch(1, 16, opt=8))  # newer and as wide (another spec, same shapes held)
    assert fleet.resolved() == same_width  # equally wide: the newer wins
    assert fleet.resolved(input=(2, 3, 16, 16)) == same_width
    assert {wide, narrow, same_width} == {e.id for e in engines.list_engines(fleet.db, fleet.model.id)}
    wider = fleet.built(batch(1, 32, level=2))  # batches 1..32: wider than every other
    assert fleet.resolved() == wider and fleet.resolved(input=(1, 3, 16, 16)) == wider
    worse_class = fleet.built({**batch(1, 64), "hardware_compatibility": "same_compute_capability"},
                              target="tensorrt==10.3.0@sm_90")
    assert fleet.resolved() == wider  # the class decides first (exact), width only within it
    assert fleet.resolved(input=(64, 3, 16, 16)) == worse_class  # the only one that holds batch 64


def test_overlapping_profiles_count_once(fleet: Fleet) -> None:
    two = {"profiles": [batch(1, 8)["profiles"][0], batch(4, 12)["profiles"][0]]}  # batches 1..12: 12 shapes
    one = batch(1, 12)  # the same 12 shapes in one profile, built later
    first = fleet.built(two)
    later = fleet.built(one)
    assert fleet.resolved() == later  # as wide: the newer
    fleet.built(batch(1, 11))  # newest, narrower
    assert fleet.resolved() == later and first != later


def test_an_onnxruntime_engine_without_profiles_holds_any_shape_and_is_widest(fleet: Fleet) -> None:
    anything = fleet.built({}, target=CPU)  # no range for the dynamic batch: ONNX Runtime keeps no profile
    ranged = fleet.built(batch(1, 64), target=CPU)  # newer, 64 batches
    assert fleet.resolved(CPU) == anything
    assert fleet.resolved(CPU, input=(32, 3, 16, 16)) == anything
    assert fleet.resolved(CPU, input=(128, 3, 16, 16)) == anything  # outside the other's profile
    assert ranged != anything
    answer = resolve(fleet.db, fleet.model.id, parse_runtime(CPU))
    assert answer.reason.endswith("; widest profiles of its class (any shape)"), answer.reason
