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
