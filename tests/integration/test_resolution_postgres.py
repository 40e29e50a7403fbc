"""Resolve in SQL on PostgreSQL gives the pure ranking's answer (registry.compat over every engine) on generated
fleets: PostgreSQL's NULL ordering, booleans and grouping differ from SQLite's (tests/unit has SQLite)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from registry.blobs.local import LocalBlobStore
from registry.db.session import Database
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
                shapes = {"input": (rng.choice((1, 2, 8, 32, 64)), 3, 16, 16)} if rng.random() < 0.3 else None
                outcomes[fleets.check_resolution(db, model.id, every, fleets.runtime(rng), shapes)] += 1
        assert {"exact", "same_compute_capability", "ampere_plus", "none"} <= set(outcomes), outcomes
    finally:
        db.engine.dispose()
        postgres.drop(url)
