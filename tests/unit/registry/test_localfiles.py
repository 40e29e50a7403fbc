"""registry.localfiles.PathDigests: a model's digests are remembered by path while no file of it changes
(size, mtime, inode), computed again when one does, and never remembered for a file modified just now."""

from __future__ import annotations

import os
import time
from pathlib import Path

from registry.digests import digest_of_file
from registry.localfiles import PathDigests


def _old(*paths: Path) -> None:
    past = time.time() - 3600
    for p in paths:
        os.utime(p, (past, past))


def _layout(model: Path, data: Path, calls: list) -> object:
    def compute():
        calls.append(1)
        return [(p.name, p, *digest_of_file(p)) for p in (model, data)]
    return compute


def test_remembered_until_a_file_changes(tmp_path: Path) -> None:
    model, data = tmp_path / "m.onnx", tmp_path / "m.data"
    model.write_bytes(b"graph"), data.write_bytes(b"weights")
    _old(model, data)
    memo, calls = PathDigests(tmp_path / "cache"), []
    first = memo.layout(model, _layout(model, data, calls))
    assert memo.layout(model, _layout(model, data, calls)) == first and len(calls) == 1
    data.write_bytes(b"weights, retrained")  # the external data changed: its stat did
    _old(data)
    again = memo.layout(model, _layout(model, data, calls))
    assert len(calls) == 2 and again[1][2] == digest_of_file(data)[0] != first[1][2]
    data.unlink()
    data.write_bytes(b"weights")  # same bytes, a new inode: computed again (cheap to be safe)
    _old(data)
    memo.layout(model, _layout(model, data, calls))
    assert len(calls) == 3


def test_a_file_modified_just_now_is_not_remembered(tmp_path: Path) -> None:
    model, data = tmp_path / "m.onnx", tmp_path / "m.data"
    model.write_bytes(b"graph"), data.write_bytes(b"weights")
    memo, calls = PathDigests(tmp_path / "cache"), []
    memo.layout(model, _layout(model, data, calls))
    memo.layout(model, _layout(model, data, calls))
    assert len(calls) == 2 and not list((tmp_path / "cache").glob("*.json"))


def test_a_broken_record_is_computed_again(tmp_path: Path) -> None:
    model, data = tmp_path / "m.onnx", tmp_path / "m.data"
    model.write_bytes(b"graph"), data.write_bytes(b"weights")
    _old(model, data)
    memo, calls = PathDigests(tmp_path / "cache"), []
    memo.layout(model, _layout(model, data, calls))
    for record in (tmp_path / "cache").glob("*.json"):
        record.write_text("{not json")
    assert memo.layout(model, _layout(model, data, calls))[0][2] == digest_of_file(model)[0]
    assert len(calls) == 2
