"""registry.localread: the copy that hashes what it writes (buffers going round two threads), and which farm
URLs count as this host's."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from registry.digests import CHUNK
from registry.localread import RING, copy_hashed, on_this_host


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17, (RING + 3) * CHUNK])
def test_the_copy_is_the_file_and_its_digest_the_files(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "blob").write_bytes(data)
    out = io.BytesIO()
    assert copy_hashed(tmp_path / "blob", out, limit=size) == ("sha256:" + hashlib.sha256(data).hexdigest(), size)
    assert out.getvalue() == data


def test_a_file_longer_than_announced_stops_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "blob").write_bytes(os.urandom(5 * CHUNK))
    digest, size = copy_hashed(tmp_path / "blob", io.BytesIO(), limit=CHUNK)
    assert CHUNK < size < 5 * CHUNK  # a mismatch the caller refuses, found without reading it all


def test_only_loopback_farms_are_this_host() -> None:
    for url in ("http://127.0.0.1:8470", "http://localhost:8470/", "http://[::1]:8470"):
        assert on_this_host(url), url
    for url in ("http://10.0.0.5:8470", "https://farm.example.com", "http://127.0.0.2.example.com"):
        assert not on_this_host(url), url
