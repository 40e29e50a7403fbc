"""Resolve in SQL (registry.services.resolution) answers exactly as the pure ranking (registry.compat) over
every engine would, on generated fleets in a real SQLite database: the engine, its match class, reason and
warning; the 404's reasons engine for engine; the shape filter. (PostgreSQL: tests/integration.)"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.errors import ModelNotFound
from registry.services.models import register_model
from registry.services.resolution import resolve
from registry.settings import Settings
from tests import fleets
from tests.models import convnet


@pytest.fixture
def model(tmp_path):
    settings = Settings(home=tmp_path)
    upgrade(settings.resolved_database_url())
    db = Database(settings.resolved_database_url())
    from registry.blobs.local import LocalBlobStore

    folder = tmp_path / "upload"
    convnet(folder / "m.onnx")
    info, _ = register_model(db, LocalBlobStore(tmp_path / "blobs"), folder, "m.onnx")
    return db, info.id


@pytest.mark.parametrize("seed", range(6))
def test_sql_resolve_matches_the_pure_ranking_on_generated_fleets(model, seed: int) -> None:
    db, model_id = model
    rng = random.Random(seed)
    rows = fleets.engine_rows(rng, model_id, rng.choice((5, 40, 300)))
    fleets.insert(db, rows)
    outcomes = Counter()
    for _ in range(60):
        outcomes[fleets.check_resolution(db, model_id, rows, fleets.runtime(rng), **fleets.question(rng, rows))] += 1
    assert len(outcomes) >= 2, outcomes  # both answers and refusals were compared


def test_outcomes_cover_every_match_class(model) -> None:
    db, model_id = model
    rng = random.Random(99)
    rows = fleets.engine_rows(rng, model_id, 400)
    fleets.insert(db, rows)
    seen = Counter(fleets.check_resolution(db, model_id, rows, fleets.runtime(rng)) for _ in range(300))
    assert {"exact", "same_compute_capability", "ampere_plus", "version_compatible", "none"} <= set(seen), seen


def test_an_unknown_model_is_model_not_found(model) -> None:
    db, _ = model
    with pytest.raises(ModelNotFound):
        resolve(db, "sha256:" + "e" * 64, fleets.runtime(random.Random(1)))
