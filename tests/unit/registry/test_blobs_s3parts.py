"""registry.blobs.s3parts without S3: the windows that part bodies are, and how parts are cut and hashed.
(Uploads against moto's server: tests/integration/test_blobs_s3.py and test_model_upload_s3.py.)"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zlib

import pytest

from registry.blobs.s3parts import Window, cut
from registry.errors import BlobError

DATA = os.urandom(3 * (1 << 20) + 4321)


def read_at(n: int, offset: int) -> bytes:
    return DATA[offset:offset + n]


def test_a_window_reads_seeks_and_measures_like_a_file_over_its_range() -> None:
    window, expected = Window(read_at, 1000, 5000), io.BytesIO(DATA[1000:6000])
    assert len(window) == 5000 and window.tell() == 0 and window.seekable() and window.readable()
    for size in (10, 4096, 0, 1, -1, 7):
        assert window.read(size) == expected.read(size)
        assert window.tell() == expected.tell()
    for offset, whence in ((0, os.SEEK_SET), (-100, os.SEEK_END), (20, os.SEEK_CUR), (4999, os.SEEK_SET)):
        assert window.seek(offset, whence) == expected.seek(offset, whence)
        assert window.read(64) == expected.read(64)
    assert window.seek(10**9) == 5000 and window.read() == b""  # clamped to its end
    with pytest.raises(ValueError, match="negative"):
        window.seek(-1)


def test_a_window_remembers_what_its_last_full_pass_read() -> None:
    """botocore signs the body (one pass), rewinds and sends it (another): the CRC kept is the last pass's."""
    window = Window(read_at, 0, len(DATA))
    assert window.sent_crc is None and Window(read_at, 5, 0).sent_crc == 0
    while window.read(1 << 20):  # the signing pass
        pass
    assert window.sent_crc == zlib.crc32(DATA)
    window.seek(0)
    window.read(100)
    window.seek(50)  # not a pass from the start: its bytes do not count
    window.read()
    assert window.sent_crc == zlib.crc32(DATA)  # still the last complete pass

    changed = bytearray(DATA)
    window = Window(lambda n, offset: bytes(changed[offset:offset + n]), 0, len(DATA))
    window.read()
    changed[-1] ^= 1  # the file changes between the signing pass and the send
    window.seek(0)
    while window.read(16384):
        pass
    assert window.sent_crc == zlib.crc32(changed) != zlib.crc32(DATA)


def test_a_window_over_a_file_that_shrank_refuses_to_read_short() -> None:
    window = Window(lambda n, offset: DATA[offset:offset + n][:10], 0, 100)
    with pytest.raises(BlobError, match="changed while it was being uploaded"):
        window.read(100)


def test_parts_are_cut_in_order_with_their_checksums_and_the_whole_hash() -> None:
    whole = hashlib.sha256()
    parts = list(cut(read_at, len(DATA), 1 << 20, whole))
    assert [p.number for p in parts] == [1, 2, 3, 4] and [len(p.body) for p in parts] == [1 << 20] * 3 + [4321]
    assert whole.hexdigest() == hashlib.sha256(DATA).hexdigest()
    for p in parts:
        start = (p.number - 1) << 20
        chunk = DATA[start:start + len(p.body)]
        assert p.checksum == base64.b64encode(hashlib.sha256(chunk).digest()).decode()
        assert p.crc == zlib.crc32(chunk) and p.body.read() == chunk


def test_a_source_shorter_than_its_size_is_refused_while_cutting() -> None:
    with pytest.raises(BlobError, match="changed while it was being uploaded.*ended at"):
        list(cut(read_at, len(DATA) + 10, 1 << 20, hashlib.sha256()))
