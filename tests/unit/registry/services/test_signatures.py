"""registry.services.signatures on SQLite: the summary kept engine by engine (in chunks that update rows
already there, and by a build's finish) is the one the backfill computes from the engines, and the one
migration 0006 fills an existing database with (0010: with profile widths). (Concurrent writers on
PostgreSQL: tests/integration.)"""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.db.tables import Build, Engine
from registry.services import attempts, signatures
from registry.services.attempts import Claim, EngineRecord, Outcome
from registry.settings import Settings
from registry.status import BuildStatus
from tests import fleets


def _farm(tmp_path, revision: str = "head") -> tuple[Database, str]:
    """A database at `revision` with one registered model (registered at head, then migrated down)."""
    url = Settings(home=tmp_path).resolved_database_url()
    model_id = fleets.model_at_revision(url, revision, tmp_path)
    return Database(url), model_id


@pytest.fixture
def model(tmp_path):
    return _farm(tmp_path)


def test_counted_in_chunks_is_what_the_backfill_computes(model) -> None:
    db, model_id = model
    rng = random.Random(5)
    rows = fleets.engine_rows(rng, model_id, 600)
    fleets.insert(db, rows, chunk=37)  # later chunks add to rows earlier ones wrote
    want = fleets.summary(rows)
    assert fleets.summary_in(db) == want
    assert sum(count for (_, family, *_), (_, count, *_) in want.items() if family == "*") == 600
    with db.session() as s:
        signatures.rebuild(s)
    assert fleets.summary_in(db) == want
    with db.session() as s:  # one model's rows, recomputed after its engines change
        s.execute(sa.delete(Engine).where(Engine.id.in_([r["id"] for r in rows[:100]])))
        signatures.rebuild(s, model_id)
    assert fleets.summary_in(db) == fleets.summary(rows[100:])


def test_a_finished_build_counts_its_engine(model) -> None:
    db, model_id = model
    rows = fleets.engine_rows(random.Random(6), model_id, 1)
    with db.session() as s:
        s.execute(sa.insert(Build), [{**rows[0]["build"], "status": BuildStatus.RUNNING}])
    record = EngineRecord(version=rows[0]["version"], digest="sha256:" + "1" * 64, size=1, filename="e.plan",
                          metadata={}, sku="l4", cc="sm_89", validation={"passed": False})
    assert attempts.finish(db, Claim(rows[0]["build_id"], 1, "w"), Outcome(BuildStatus.SUCCEEDED, engine=record))
    with db.session() as s:
        engine = s.scalars(sa.select(Engine)).one()
        row = {c.key: getattr(engine, c.key) for c in Engine.__table__.columns}
    assert row["validation_passed"] is False and row["created_at"] is not None
    assert fleets.summary_in(db) == fleets.summary([row])


def test_migration_0006_fills_the_summary_from_existing_engines(tmp_path) -> None:
    db, model_id = _farm(tmp_path, "0005")
    rows = fleets.engine_rows(random.Random(7), model_id, 300)
    rows[0]["sku"] = rows[0]["cc"] = None
    with db.session() as s:  # written before the summary existed
        fleets.insert_as_of_then(s, rows)
    upgrade(db.url)
    assert fleets.summary_in(db) == fleets.summary(rows)
    rng = random.Random(8)
    for _ in range(40):
        fleets.check_resolution(db, model_id, rows, fleets.runtime(rng))


def test_migration_0010_computes_each_engines_profile_width(tmp_path) -> None:
    """Engines written before 0010 get the width the service computes (ONNX Runtime without profiles: any
    shape), and the summary each signature's widest with the newest of that width."""
    db, model_id = _farm(tmp_path, "0009")
    rows = fleets.engine_rows(random.Random(9), model_id, 300)
    with db.session() as s:  # written before profile widths existed
        fleets.insert_as_of_then(s, rows)
    upgrade(db.url)
    with db.session() as s:
        assert dict(s.execute(sa.select(Engine.id, Engine.profile_width)).all()) == {
            r["id"]: r["profile_width"] for r in rows}
    assert fleets.summary_in(db) == fleets.summary(rows)
    rng = random.Random(10)
    for _ in range(40):
        fleets.check_resolution(db, model_id, rows, fleets.runtime(rng), **fleets.question(rng, rows))
