"""The folder blob store: content addressing, write-once, verification on read, safety."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from registry.blobs import BlobInfo, BlobStore, LocalBlobStore, open_blob_store
from registry.errors import BlobError, BlobNotFound, DigestMismatch, InvalidInput


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def payload() -> bytes:
    # A bit over two read chunks, so chunked paths are exercised.
    return os.urandom((2 << 20) + 12345)


def tmp_leftovers(store: LocalBlobStore) -> list[str]:
    return sorted(p.name for p in store.tmp_dir.iterdir()) if store.tmp_dir.exists() else []


def test_put_file_get_roundtrip(store: LocalBlobStore, tmp_path: Path, payload: bytes) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(payload)

    info = store.put_file(src)

    assert info == BlobInfo(digest(payload), len(payload))
    assert store.exists(info.digest)
    assert store.size(info.digest) == len(payload)
    assert store.get_bytes(info.digest) == payload
    dest = tmp_path / "out" / "engine.plan"
    assert store.get_to_file(info.digest, dest) == info
    assert dest.read_bytes() == payload
    assert [p for p in dest.parent.iterdir()] == [dest]  # no temp file left beside it
    assert tmp_leftovers(store) == []
    assert store.presigned_url(info.digest) is None
    assert "folder" in store.describe() and str(store.root) in store.describe()


def test_put_bytes_and_empty_blob(store: LocalBlobStore) -> None:
    info = store.put_bytes(b"hello")
    assert info == BlobInfo(digest(b"hello"), 5)
    assert store.get_bytes(info.digest) == b"hello"

    empty = store.put_bytes(b"")
    assert empty == BlobInfo(digest(b""), 0)
    assert store.get_bytes(empty.digest) == b""
    assert list(store.open_range(empty.digest)) == []


def test_key_layout_and_read_only_file(store: LocalBlobStore) -> None:
    info = store.put_bytes(b"layout")
    hexpart = info.digest.removeprefix("sha256:")
    assert info.hex == hexpart
    assert BlobStore.key_for(info.digest) == f"blobs/sha256/{hexpart[:2]}/{hexpart}"
    assert store.key_for(info.digest) == f"blobs/sha256/{hexpart[:2]}/{hexpart}"
    path = store.root / "blobs" / "sha256" / hexpart[:2] / hexpart
    assert store.path_for(info.digest) == path
    assert path.read_bytes() == b"layout"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_write_once_keeps_existing_blob(store: LocalBlobStore, tmp_path: Path) -> None:
    first = store.put_bytes(b"same bytes")
    path = store.path_for(first.digest)
    before = path.stat()

    src = tmp_path / "again"
    src.write_bytes(b"same bytes")
    assert store.put_file(src) == first
    assert store.put_bytes(b"same bytes", expected_digest=first.digest) == first

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert tmp_leftovers(store) == []


def test_put_repairs_a_blob_corrupted_on_disk(store: LocalBlobStore) -> None:
    info = store.put_bytes(b"original")
    path = store.path_for(info.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"garbage!")

    assert store.put_bytes(b"original") == info
    assert store.get_bytes(info.digest) == b"original"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_expected_digest_mismatch_stores_nothing(store: LocalBlobStore, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"actual content")
    claimed = digest(b"claimed content")

    with pytest.raises(DigestMismatch) as exc:
        store.put_file(src, expected_digest=claimed)
    assert exc.value.details["expected"] == claimed
    assert exc.value.details["actual"] == digest(b"actual content")
    with pytest.raises(DigestMismatch):
        store.put_bytes(b"actual content", expected_digest=claimed)

    assert not store.exists(claimed)
    assert not store.exists(digest(b"actual content"))
    assert tmp_leftovers(store) == []
    # the matching claim is accepted
    assert store.put_file(src, expected_digest=digest(b"actual content")).size == 14


@pytest.mark.parametrize("same_size", [True, False])
def test_corruption_on_disk_is_detected_on_read(
    store: LocalBlobStore, tmp_path: Path, payload: bytes, same_size: bool
) -> None:
    info = store.put_bytes(payload)
    path = store.path_for(info.digest)
    os.chmod(path, 0o644)
    corrupt = bytearray(payload)
    if same_size:
        corrupt[len(corrupt) // 2] ^= 0xFF
    else:
        corrupt = corrupt[:-1]
    path.write_bytes(bytes(corrupt))

    dest = tmp_path / "dl" / "engine.plan"
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # temp file cleaned up too

    with pytest.raises(DigestMismatch):
        store.get_bytes(info.digest)


def test_failed_download_leaves_previous_dest_untouched(store: LocalBlobStore, tmp_path: Path) -> None:
    info = store.put_bytes(b"good")
    path = store.path_for(info.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"bad!")
    dest = tmp_path / "engine.plan"
    dest.write_bytes(b"previous")
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, dest)
    assert dest.read_bytes() == b"previous"


def test_expected_size_checked_on_download(store: LocalBlobStore, tmp_path: Path) -> None:
    info = store.put_bytes(b"12345")
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, tmp_path / "x", expected_size=6)
    assert not (tmp_path / "x").exists()
    assert store.get_to_file(info.digest, tmp_path / "x", expected_size=5) == info


def test_missing_blob(store: LocalBlobStore, tmp_path: Path) -> None:
    missing = digest(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(BlobNotFound):
        store.size(missing)
    with pytest.raises(BlobNotFound):
        store.open_range(missing)  # raised by the call, before any iteration
    with pytest.raises(BlobNotFound):
        store.get_bytes(missing)
    with pytest.raises(BlobNotFound):
        store.get_to_file(missing, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    store.delete(missing)  # no error


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (0, 10), (5, 17), (1 << 20, (1 << 20) + 5), ((1 << 20) - 3, (1 << 20) + 3),
     (100, None), (0, 10**9), (3, 3), (10, 5), (10**9, None), (10**9, 10**9 + 5)],
)
def test_range_reads(store: LocalBlobStore, payload: bytes, start: int, end: int | None) -> None:
    info = store.put_bytes(payload)
    got = b"".join(store.open_range(info.digest, start, end))
    assert got == payload[start:end]


def test_range_read_chunks_are_bounded(store: LocalBlobStore, payload: bytes) -> None:
    info = store.put_bytes(payload)
    chunks = list(store.open_range(info.digest))
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 1 << 20


@pytest.mark.parametrize("start,end", [(-1, None), (0, -5)])
def test_negative_ranges_rejected(store: LocalBlobStore, start: int, end: int | None) -> None:
    info = store.put_bytes(b"abc")
    with pytest.raises(BlobError):
        store.open_range(info.digest, start, end)


BAD_DIGESTS = [
    "",
    "sha256:",
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "SHA256:" + "a" * 64,
    "md5:" + "a" * 32,
    "a" * 64,
    "sha256:" + "a" * 64 + "\n",
    "sha256:" + "a" * 62 + "/.",
    "sha256:" + "a" * 32 + "/" + "a" * 31,
    None,
    b"sha256:" + b"a" * 64,
]


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_bad_digests_rejected_everywhere(store: LocalBlobStore, tmp_path: Path, bad) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x")
    calls = [
        lambda: store.key_for(bad),
        lambda: store.path_for(bad),
        lambda: store.exists(bad),
        lambda: store.size(bad),
        lambda: store.open_range(bad),
        lambda: store.get_bytes(bad),
        lambda: store.get_to_file(bad, tmp_path / "dest"),
        lambda: store.stream_verified(bad),
        lambda: store.verify(bad),
        lambda: store.delete(bad),
        lambda: store.presigned_url(bad),
    ]
    if bad is not None:  # None as expected_digest means "no expectation"
        calls += [
            lambda: store.put_file(src, expected_digest=bad),
            lambda: store.put_bytes(b"x", expected_digest=bad),
        ]
    for call in calls:
        with pytest.raises(BlobError) as exc:
            call()
        assert not isinstance(exc.value, (BlobNotFound, DigestMismatch))
    assert not (tmp_path / "dest").exists()
    assert not (store.root / "blobs").exists()  # nothing was written anywhere


def test_concurrent_puts_of_the_same_content(store: LocalBlobStore, tmp_path: Path, payload: bytes) -> None:
    n = 16
    sources = []
    for i in range(n):
        src = tmp_path / f"src{i}"
        src.write_bytes(payload)
        sources.append(src)
    barrier = threading.Barrier(n)

    def put(i: int) -> BlobInfo:
        barrier.wait()
        return store.put_file(sources[i]) if i % 2 else store.put_bytes(payload)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(put, range(n)))

    expected = BlobInfo(digest(payload), len(payload))
    assert results == [expected] * n
    assert store.get_bytes(expected.digest) == payload
    shard = store.path_for(expected.digest).parent
    assert [p.name for p in shard.iterdir()] == [expected.hex]
    assert tmp_leftovers(store) == []


def test_concurrent_readers_and_writers(store: LocalBlobStore, payload: bytes, tmp_path: Path) -> None:
    info = store.put_bytes(payload)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            if i % 2:
                store.put_bytes(payload)
            else:
                store.get_to_file(info.digest, tmp_path / f"d{i}")
                assert (tmp_path / f"d{i}").read_bytes() == payload
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_delete(store: LocalBlobStore) -> None:
    info = store.put_bytes(b"to be removed")
    store.delete(info.digest)
    assert not store.exists(info.digest)


def test_open_blob_store_folder_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_blob_store(f"file://{tmp_path}/a")
    assert isinstance(s, LocalBlobStore) and s.root == tmp_path / "a"
    s = open_blob_store(str(tmp_path / "b"))
    assert isinstance(s, LocalBlobStore) and s.root == tmp_path / "b"
    monkeypatch.chdir(tmp_path)
    s = open_blob_store("relative/blobs")
    assert isinstance(s, LocalBlobStore) and s.root == tmp_path / "relative" / "blobs"
    s = open_blob_store("file:///with%20space")
    assert isinstance(s, LocalBlobStore) and s.root == Path("/with space")


@pytest.mark.parametrize(
    "url",
    ["", "   ", "gs://bucket/x", "http://example.com/blobs", "file://otherhost/x", "file://rel",
     "s3://", "s3://UPPER/x", "s3://b/x", "s3://bucket/a/../b", "s3://bucket/x?versionId=1", "gs:bucket"],
)
def test_open_blob_store_rejects(url: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        open_blob_store(url)
    assert "s3://bucket" in exc.value.message or "file:" in exc.value.message or "bucket" in exc.value.message


def test_unknown_scheme_message_names_accepted_forms() -> None:
    with pytest.raises(InvalidInput) as exc:
        open_blob_store("azure://container/x")
    msg = exc.value.message
    assert "azure" in msg and "file:///" in msg and "s3://bucket" in msg and "folder path" in msg


def test_stream_verified_holds_back_the_last_chunk_of_a_corrupt_blob(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    data = bytes(range(256)) * 20_000  # 5 MB: several chunks
    info = store.put_bytes(data)
    assert b"".join(store.stream_verified(info.digest)) == data
    path = store.path_for(info.digest)
    os.chmod(path, 0o644)
    path.write_bytes(data[:-1] + b"\x00")
    got = []
    with pytest.raises(DigestMismatch, match="quarantined"):
        got.extend(store.stream_verified(info.digest))
    assert 0 < len(b"".join(got)) < len(data)  # the reader never had the whole wrong blob
    assert not path.exists() and (tmp_path / "blobs" / "quarantine" / path.name).exists()
    with pytest.raises(BlobNotFound):
        store.stream_verified(info.digest)
