"""Resolve in SQL on PostgreSQL gives the pure ranking's answer (registry.compat over every engine) on generated
fleets: PostgreSQL's NULL ordering, booleans and grouping differ from SQLite's (tests/unit has SQLite); and the
signature summary under concurrent writers."""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from registry.blobs.local import LocalBlobStore
from registry.db.session import Database
from registry.db.tables import Build, Engine
from registry.services import signatures
from registry.services.models import register_model
from tests import fleets
from tests.integration.conftest import Postgres
from tests.models import convnet


def test_sql_resolve_matches_the_pure_ranking_on_postgres(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.clone()
    db = Database(url)
    try:
        convnet(tmp_path / "upload" / "m.onnx")
        model, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), tmp_path / "upload", "m.onnx")
        outcomes: Counter = Counter()
        every: list[dict] = []
        for seed in range(4):  # the fleet grows: 250, 500, 750, 1000 engines
            rng = random.Random(100 + seed)
            rows = fleets.engine_rows(rng, model.id, 250)
            fleets.insert(db, rows)
            every += rows
            for _ in range(60):
                asked = fleets.question(rng, every)
                outcomes[fleets.check_resolution(db, model.id, every, fleets.runtime(rng), **asked)] += 1
        assert {"exact", "same_compute_capability", "ampere_plus", "none"} <= set(outcomes), outcomes
    finally:
        db.engine.dispose()
        postgres.drop(url)


def test_concurrent_writers_of_one_signature_lose_no_count(postgres: Postgres, tmp_path: Path) -> None:
    """Engines of one signature written by concurrent transactions (as finishing builds write them): the
    second waits for the first's row, then adds to it; no count, newest time or example is lost."""
    url = postgres.clone()
    db = Database(url)
    try:
        convnet(tmp_path / "upload" / "m.onnx")
        model, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), tmp_path / "upload", "m.onnx")
        rows = fleets.engine_rows(random.Random(3), model.id, 42, minutes=600)
        same = ("toolchain", "version", "device", "sku", "cc", "hardware_compatibility", "version_compatible",
                "exclude_lean_runtime", "spec_family", "validation_passed")
        for r in rows:
            r.update({k: rows[0][k] for k in same})
        rows[0]["created_at"] = max(r["created_at"] for r in rows) + timedelta(minutes=1)  # the first is newest
        with db.session() as s:
            s.execute(sa.insert(Build), [r["build"] for r in rows])

        def write(row: dict) -> None:
            with db.session() as s:
                s.add(signatures.counted(s, Engine(**{k: v for k, v in row.items() if k != "build"})))

        first = db.sessionmaker()
        first.add(signatures.counted(first, Engine(**{k: v for k, v in rows[0].items() if k != "build"})))
        first.flush()  # the summary row is inserted, not committed
        second = threading.Thread(target=write, args=(rows[1],))
        second.start()
        second.join(0.5)
        assert second.is_alive()  # waiting for the first transaction's row
        first.commit()
        first.close()
        second.join(10)
        assert not second.is_alive()
        with ThreadPoolExecutor(8) as pool:  # the rest at once
            list(pool.map(write, rows[2:]))
        assert fleets.summary_in(db) == fleets.summary(rows)
        assert {count for _, count, *_ in fleets.summary_in(db).values()} == {42}
    finally:
        db.engine.dispose()
        postgres.drop(url)
