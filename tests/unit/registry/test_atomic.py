"""registry.atomic.sweep: what killed writers left is removed at once when its writer is gone, after idling
otherwise; a live writer's entry stays."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from registry.atomic import PART_PREFIX, atomic_file, sweep, writer_tag


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_entries_of_dead_writers_go_at_once_live_ones_stay(tmp_path: Path) -> None:
    host = writer_tag().split(".")[1]
    dead = tmp_path / f"{PART_PREFIX}{_dead_pid()}.{host}.abc"
    mine = tmp_path / f"{PART_PREFIX}{writer_tag()}def"
    elsewhere = tmp_path / f"{PART_PREFIX}{_dead_pid()}.{'0' * 8 if host != '0' * 8 else '1' * 8}.ghi"
    untagged = tmp_path / f"{PART_PREFIX}old-style"
    idle = tmp_path / f"{PART_PREFIX}idle"
    for path in (dead, mine, elsewhere, untagged, idle):
        path.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(idle, (old, old))
    (tmp_path / f"{PART_PREFIX}{_dead_pid()}.{host}.folder").mkdir()

    assert sweep(tmp_path, f"{PART_PREFIX}*", idle_s=600) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (mine, elsewhere, untagged))


def test_atomic_writes_carry_the_writer_tag(tmp_path: Path) -> None:
    seen = []
    with atomic_file(tmp_path / "dest", "wb") as f:
        seen = [p.name for p in tmp_path.iterdir()]
        f.write(b"x")
    assert len(seen) == 1 and seen[0].startswith(PART_PREFIX + writer_tag())
    assert [p.name for p in tmp_path.iterdir()] == ["dest"]
