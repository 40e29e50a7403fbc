"""The folder store's verified-stamps: a blob unchanged since it was hashed is streamed without hashing
again; any change to the file (bytes, mtime, inode, ctime) makes the next read hash it, so a corrupted
blob is still caught and quarantined."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from registry.blobs import LocalBlobStore
from registry.blobs import local as local_module
from registry.blobs.stamps import RACY_NS, Stamps, fingerprint, settled
from registry.errors import BlobNotFound, DigestMismatch

DATA = bytes(range(256)) * 12_000  # about 3 MB: several chunks, hashed on a second thread


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the blob reads that hash (StreamHash objects the store creates)."""
    made: list[int] = []
    real = local_module.StreamHash

    def counting(*args: object, **kwargs: object) -> object:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(local_module, "StreamHash", counting)
    return made


def stamp_of(store: LocalBlobStore, digest: str) -> Path:
    return store.stamps.path(digest.removeprefix("sha256:"))


def flip_in_place(path: Path, at: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_put_stamps_the_blob_and_its_reads_do_not_hash(store: LocalBlobStore, hashes: list[int]) -> None:
    info = store.put_bytes(DATA)
    path = store.path_for(info.digest)
    st = path.stat()
    assert stamp_of(store, info.digest).read_text() == fingerprint(st)
    assert st.st_mtime_ns <= time.time_ns() - RACY_NS  # set back when written: a later write must move it
    assert b"".join(store.stream_verified(info.digest)) == DATA
    store.verify(info.digest)
    assert hashes == []


def test_a_blob_corrupted_after_it_was_stamped_is_caught(store: LocalBlobStore, hashes: list[int]) -> None:
    info = store.put_bytes(DATA)
    path = store.path_for(info.digest)
    flip_in_place(path, len(DATA) - 10)  # in the last chunk: everything before it would stream
    got: list[bytes] = []
    with pytest.raises(DigestMismatch, match="quarantined"):
        got.extend(store.stream_verified(info.digest))
    assert hashes == [1]
    assert 0 < len(b"".join(got)) < len(DATA)  # all but the held-back last chunk: never the whole wrong blob
    assert not path.exists() and (store.root / "quarantine" / path.name).exists()
    assert not stamp_of(store, info.digest).exists()
    with pytest.raises(BlobNotFound):
        store.verify(info.digest)


def test_a_corrupted_blob_with_its_mtime_put_back_is_caught(store: LocalBlobStore) -> None:
    """A rewrite that restores the mtime (rsync --inplace -t, a careful tool) still moves the ctime."""
    info = store.put_bytes(DATA)
    path = store.path_for(info.digest)
    before = path.stat()
    flip_in_place(path, 5)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    with pytest.raises(DigestMismatch):
        store.verify(info.digest)  # a Range request verifies this way first
    assert not path.exists()


def test_a_corrupted_stamp_or_a_missing_one_means_hashing(store: LocalBlobStore, hashes: list[int]) -> None:
    info = store.put_bytes(DATA)
    stamp = stamp_of(store, info.digest)
    stamp.write_text("garbage")
    assert b"".join(store.stream_verified(info.digest)) == DATA
    assert hashes == [1]
    assert stamp.read_text() == fingerprint(store.path_for(info.digest).stat())  # stamped again
    stamp.unlink()
    store.verify(info.digest)
    assert hashes == [1, 1] and stamp.exists()
    store.verify(info.digest)
    assert hashes == [1, 1]


def test_a_replaced_blob_file_is_hashed_again(store: LocalBlobStore, hashes: list[int]) -> None:
    """Same bytes, same size, even the same mtime, but another inode: not the file that was verified."""
    info = store.put_bytes(DATA)
    path = store.path_for(info.digest)
    before = path.stat()
    copy = path.with_name("copy")
    copy.write_bytes(DATA)
    os.utime(copy, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(copy, path)
    assert path.stat().st_ino != before.st_ino
    assert b"".join(store.stream_verified(info.digest)) == DATA
    assert hashes == [1]


def test_a_blob_written_just_now_is_verified_but_not_stamped(store: LocalBlobStore, hashes: list[int]) -> None:
    """A file modified within RACY_NS could change again in the same clock tick without its stat showing
    it: it is hashed on every read until it has settled."""
    info = store.put_bytes(DATA)
    path = store.path_for(info.digest)
    os.chmod(path, 0o644)
    path.write_bytes(DATA)  # the same bytes, written now
    for _ in range(2):
        assert b"".join(store.stream_verified(info.digest)) == DATA
    assert hashes == [1, 1]
    assert not settled(path.stat())
    assert stamp_of(store, info.digest).read_text() != fingerprint(path.stat())


def test_a_second_put_of_stamped_bytes_does_not_rehash_the_stored_blob(store: LocalBlobStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = hashlib.sha256

    def counting(*args: bytes) -> object:
        calls.append(1)
        return real(*args)

    info = store.put_bytes(DATA)
    monkeypatch.setattr(local_module, "hashlib", SimpleNamespace(sha256=counting))
    assert store.put_bytes(DATA) == info
    assert calls == [1]  # the incoming bytes only
    flip_in_place(store.path_for(info.digest), 0)
    assert store.put_bytes(DATA) == info  # the stored copy is hashed, found corrupt, replaced
    assert calls == [1, 1, 1]
    assert store.get_bytes(info.digest) == DATA


def test_delete_forgets_the_stamp(store: LocalBlobStore) -> None:
    info = store.put_bytes(DATA)
    assert stamp_of(store, info.digest).exists()
    store.delete(info.digest)
    assert not stamp_of(store, info.digest).exists()


def test_stamps_hold_only_while_size_mtime_inode_and_ctime_are_unchanged(tmp_path: Path) -> None:
    stamps = Stamps(tmp_path, tmp_path / "tmp")
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    old = time.time_ns() - 2 * RACY_NS
    os.utime(f, ns=(old, old))
    st = f.stat()
    assert stamps.record("ab" * 32, st) and stamps.trusted("ab" * 32, st)
    changed = [os.stat_result((*st[:6], st[6] + 1, *st[7:])),  # size
               os.stat_result((*st[:1], st[1] + 1, *st[2:]))]  # inode
    for other in changed:
        assert not stamps.trusted("ab" * 32, other)
    os.chmod(f, 0o600)  # ctime only
    assert not stamps.trusted("ab" * 32, f.stat())
    os.utime(f, ns=(old, old + 1))  # mtime
    assert not stamps.trusted("ab" * 32, f.stat())
    assert not stamps.trusted("cd" * 32, st)  # another blob
    f.write_bytes(b"abd")  # modified just now: no stamp is written for it
    assert not stamps.record("ab" * 32, f.stat()) and not stamps.trusted("ab" * 32, f.stat())
    assert list((tmp_path / "tmp").iterdir()) == []
