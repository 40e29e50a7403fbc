"""Id prefixes (registry.services.ids) on a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert

from registry.db.migrate import upgrade
from registry.db.session import Database
from registry.db.tables import Worker
from registry.errors import InvalidInput
from registry.services.ids import full_id


def test_whole_ids_unique_prefixes_ambiguous_prefixes_and_misses(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    upgrade(url)
    db = Database(url)
    names = ["a" * 8 + "1" * 24, "a" * 8 + "2" * 24, "b" * 32]
    with db.session() as s:  # any string column serves: the workers table's name
        s.execute(insert(Worker), [{"name": n, "hostname": "h", "toolchains": [], "devices": [], "queues": []}
                                   for n in names])
    with db.session() as s:
        assert full_id(s, Worker.name, "b" * 32, "x") == "b" * 32  # whole: as given, no query
        assert full_id(s, Worker.name, "bbbbbbbb", "x") == "b" * 32
        assert full_id(s, Worker.name, "aaaaaaaa1", "x") == names[0]
        assert full_id(s, Worker.name, "cccccccc", "x") is None
        assert full_id(s, Worker.name, "aaaa", "x") == "aaaa"  # too short to be a prefix: looked up as it is
        with pytest.raises(InvalidInput, match="x id prefix 'aaaaaaaa' is ambiguous: it starts aaaaaaaa1"):
            full_id(s, Worker.name, "aaaaaaaa", "x")
    db.engine.dispose()


def test_model_ids_take_a_prefix_of_their_digest_with_or_without_sha256(tmp_path: Path) -> None:
    from registry.db.tables import Model
    from registry.services.ids import full_model_id

    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    db = Database(url)
    ids = ["sha256:" + "c" * 64, "sha256:" + "d" * 8 + "1" * 56, "sha256:" + "d" * 8 + "2" * 56]
    with db.session() as s:
        s.execute(insert(Model), [{"id": i, "name": "m", "size": 1, "inputs": [], "outputs": [], "opsets": {},
                                   "ir_version": 8} for i in ids])
    with db.session() as s:
        assert full_model_id(s, Model.id, "cccccccc") == ids[0]
        assert full_model_id(s, Model.id, "sha256:cccccccccccc") == ids[0]
        assert full_model_id(s, Model.id, ids[1]) == ids[1]
        assert full_model_id(s, Model.id, "eeeeeeee") is None
        with pytest.raises(InvalidInput, match="model id prefix 'sha256:dddddddd' is ambiguous"):
            full_model_id(s, Model.id, "dddddddd")
    db.engine.dispose()
