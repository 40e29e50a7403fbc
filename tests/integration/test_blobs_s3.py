"""The S3 blob store against moto's server mode, over real HTTP."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

import boto3  # noqa: E402
import httpx  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from registry.blobs import BlobInfo, open_blob_store  # noqa: E402
from registry.blobs.s3 import MiB, S3BlobStore  # noqa: E402
from registry.errors import BlobError, BlobNotFound, DigestMismatch, InvalidInput  # noqa: E402
from tests.s3server import AWS_TEST_ENV, AWS_TEST_UNSET, start_moto_server  # noqa: E402


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def moto_s3_url():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_TEST_ENV.items():
            mp.setenv(name, value)
        for name in AWS_TEST_UNSET:
            mp.delenv(name, raising=False)
        url, stop = start_moto_server()
        try:
            yield url
        finally:
            stop()


@pytest.fixture
def raw(moto_s3_url: str):
    """A plain boto3 client for out-of-band checks and tampering."""
    return boto3.client("s3", endpoint_url=moto_s3_url, region_name="us-east-1")


@pytest.fixture
def store(moto_s3_url: str) -> S3BlobStore:
    s = S3BlobStore(f"blobs-{uuid.uuid4().hex[:12]}", prefix="farm/", endpoint_url=moto_s3_url,
                    region="us-east-1")
    s.ensure_bucket()
    s.ensure_bucket()  # idempotent
    return s


@pytest.fixture
def small_mp_store(moto_s3_url: str) -> S3BlobStore:
    s = S3BlobStore(f"mp-{uuid.uuid4().hex[:12]}", endpoint_url=moto_s3_url, region="us-east-1",
                    multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s.ensure_bucket()
    return s


def test_roundtrip(store: S3BlobStore, raw, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 7)
    src = tmp_path / "model.onnx"
    src.write_bytes(data)

    info = store.put_file(src)

    assert info == BlobInfo(digest(data), len(data))
    assert store.exists(info.digest) and store.size(info.digest) == len(data)
    assert store.get_bytes(info.digest) == data
    dest = tmp_path / "dl" / "engine.plan"
    assert store.get_to_file(info.digest, dest) == info
    assert dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]

    key = f"farm/blobs/sha256/{info.hex[:2]}/{info.hex}"
    assert store.object_key(info.digest) == key
    head = raw.head_object(Bucket=store.bucket, Key=key)
    assert head["Metadata"] == {"sha256": info.hex}
    assert head["ContentLength"] == len(data)
    assert "farm/" in store.describe() and store.bucket in store.describe()

    small = store.put_bytes(b"tiny")
    assert small == BlobInfo(digest(b"tiny"), 4)
    assert store.get_bytes(small.digest) == b"tiny"


def test_multipart_upload(small_mp_store: S3BlobStore, raw, tmp_path: Path) -> None:
    store = small_mp_store
    data = os.urandom(12 * MiB + 3)
    src = tmp_path / "big.plan"
    src.write_bytes(data)

    info = store.put_file(src, expected_digest=digest(data))

    assert info == BlobInfo(digest(data), len(data))
    head = raw.head_object(Bucket=store.bucket, Key=store.object_key(info.digest))
    assert head["ContentLength"] == len(data)
    assert head["Metadata"] == {"sha256": info.hex}
    # it really went multipart: the ETag of a multipart object is "<md5 of md5s>-<parts>"
    assert head["ETag"].strip('"').endswith("-3")
    assert store.get_bytes(info.digest) == data
    # no dangling multipart uploads
    assert raw.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []

    # put_bytes above the threshold goes the same way
    data2 = os.urandom(6 * MiB)
    assert store.put_bytes(data2).digest == digest(data2)
    assert store.get_bytes(digest(data2)) == data2


def test_multipart_expected_digest_mismatch(small_mp_store: S3BlobStore, raw, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    src = tmp_path / "big"
    src.write_bytes(data)
    claimed = digest(b"something else")
    with pytest.raises(DigestMismatch):
        small_mp_store.put_file(src, expected_digest=claimed)
    assert not small_mp_store.exists(claimed) and not small_mp_store.exists(digest(data))
    assert raw.list_multipart_uploads(Bucket=small_mp_store.bucket).get("Uploads", []) == []


def test_a_claimed_digest_is_checked_in_one_pass_and_against_a_stored_blob(small_mp_store: S3BlobStore,
                                                                         tmp_path: Path, monkeypatch) -> None:
    """put_file with the right expected digest hashes the file once, as the parts are cut (no hashing pass
    first); the parts' bodies are then read from the file by botocore once, to send them (no signature pass:
    each part carries its ChecksumSHA256, which S3 verifies). A wrong claim for a digest already stored is
    refused too, though nothing needs uploading."""
    data, other = os.urandom(11 * MiB), os.urandom(6 * MiB)
    src, impostor = tmp_path / "big", tmp_path / "other"
    src.write_bytes(data)
    impostor.write_bytes(other)
    read, real_pread = [], os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        chunk = real_pread(fd, n, offset)
        read.append(len(chunk))
        return chunk

    monkeypatch.setattr(os, "pread", counting_pread)
    assert small_mp_store.put_file(src, expected_digest=digest(data)).digest == digest(data)
    monkeypatch.undo()
    assert sum(read) == 2 * len(data)  # cut and hashed once + sent: no hashing pass before, none to sign
    assert small_mp_store.get_bytes(digest(data)) == data
    with pytest.raises(DigestMismatch):
        small_mp_store.put_file(impostor, expected_digest=digest(data))
    assert small_mp_store.get_bytes(digest(data)) == data


def test_parts_stream_from_the_file_in_bounded_memory(moto_s3_url: str, tmp_path: Path) -> None:
    """96 MiB in 16 MiB parts, 4 in flight: the uploading process grows by less than one part (part bodies
    are windows over the file; they used to be bytes in memory, ~5 parts at once)."""
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(MiB))
    script = """
import sys
from pathlib import Path
from registry.blobs.s3 import S3BlobStore

def kib(field):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field))

store = S3BlobStore(sys.argv[2], endpoint_url=sys.argv[1], region="us-east-1")
store.ensure_bucket()
store.put_bytes(b"warm up: boto3 loaded, connections open")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from here
before = kib("VmRSS")
store.put_file(sys.argv[3])
print((kib("VmHWM") - before) / 1024)
"""
    bucket = f"mem-{uuid.uuid4().hex[:12]}"
    done = subprocess.run([sys.executable, "-c", script, moto_s3_url, bucket, str(src)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    growth_mib = float(done.stdout.strip().splitlines()[-1])
    assert growth_mib < 16, f"the upload grew the process by {growth_mib:.1f} MiB"


def test_a_part_sent_with_other_bytes_than_were_hashed_is_caught(small_mp_store: S3BlobStore, raw,
                                                               tmp_path: Path, monkeypatch) -> None:
    """The file changes after its part was hashed and before it is sent: the part's CRC-32 of the bytes sent
    differs from the one taken while hashing, and the upload is aborted (moto, like some endpoints, does not
    check ChecksumSHA256 itself)."""
    store = small_mp_store
    data = os.urandom(11 * MiB)
    src = tmp_path / "big"
    src.write_bytes(data)
    real_upload_part = store._upload_part

    def tamper_with_my_own_part(key, upload_id, part_no, part):  # noqa: ANN001, ANN202
        if part_no == 2:  # hashed already (parts are cut before they are handed over), not sent yet
            with open(src, "r+b") as f:
                f.seek(6 * MiB)
                f.write(bytes([data[6 * MiB] ^ 1]))
        return real_upload_part(key, upload_id, part_no, part)

    monkeypatch.setattr(store, "_upload_part", tamper_with_my_own_part)
    with pytest.raises(BlobError, match="changed while it was being uploaded.*part 2"):
        store.put_file(src, expected_digest=digest(data))
    assert not store.exists(digest(data))
    assert raw.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_multipart_file_changing_during_upload_is_aborted(
    small_mp_store: S3BlobStore, raw, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = small_mp_store
    data = os.urandom(11 * MiB)
    src = tmp_path / "big"
    src.write_bytes(data)
    real_upload_part = store._upload_part

    def tamper_after_first_part(key, upload_id, part_no, chunk):
        if part_no == 1:
            with open(src, "r+b") as f:
                f.seek(len(data) - 1)
                f.write(bytes([data[-1] ^ 1]))
        return real_upload_part(key, upload_id, part_no, chunk)

    monkeypatch.setattr(store, "_upload_part", tamper_after_first_part)
    with pytest.raises(BlobError, match="changed while it was being uploaded"):
        store.put_file(src)
    assert not store.exists(digest(data))
    assert raw.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_expected_digest_mismatch_single_part(store: S3BlobStore) -> None:
    with pytest.raises(DigestMismatch):
        store.put_bytes(b"actual", expected_digest=digest(b"claimed"))
    assert not store.exists(digest(b"claimed")) and not store.exists(digest(b"actual"))


class _CountingClient:
    """Wraps a boto3 client, counting calls by operation name."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if callable(attr):
            def wrapper(*a, **kw):
                self.calls.append(name)
                return attr(*a, **kw)
            return wrapper
        return attr


def test_write_once(store: S3BlobStore, raw, tmp_path: Path) -> None:
    data = b"engine bytes" * 1000
    info = store.put_bytes(data)
    key = store.object_key(info.digest)
    before = raw.head_object(Bucket=store.bucket, Key=key)

    counting = _CountingClient(store.client)
    again = S3BlobStore(store.bucket, prefix=store.prefix, client=counting)
    src = tmp_path / "again"
    src.write_bytes(data)
    assert again.put_file(src) == info
    assert again.put_bytes(data, expected_digest=info.digest) == info
    assert "put_object" not in counting.calls and "create_multipart_upload" not in counting.calls

    after = raw.head_object(Bucket=store.bucket, Key=key)
    assert after["LastModified"] == before["LastModified"]


def test_endpoint_honours_conditional_put(store: S3BlobStore, raw) -> None:
    """moto implements If-None-Match: * on PutObject, so the store's conditional writes are exercised."""
    info = store.put_bytes(b"first")
    with pytest.raises(ClientError) as exc:
        raw.put_object(Bucket=store.bucket, Key=store.object_key(info.digest), Body=b"other",
                       IfNoneMatch="*")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert store.conditional_writes is True


@pytest.mark.parametrize("size_mib", [0, 6])  # single PUT and multipart complete
def test_lost_race_412_is_treated_as_already_there(
    small_mp_store: S3BlobStore, size_mib: int, monkeypatch: pytest.MonkeyPatch, raw
) -> None:
    store = small_mp_store
    data = os.urandom(size_mib * MiB + 100)
    info = store.put_bytes(data)
    # Pretend our HEAD raced with another writer: first HEAD says "absent", later ones tell the truth.
    real_head = store._head
    heads = {"n": 0}

    def racing_head(d):
        heads["n"] += 1
        return None if heads["n"] == 1 else real_head(d)

    monkeypatch.setattr(store, "_head", racing_head)
    before = raw.head_object(Bucket=store.bucket, Key=store.object_key(info.digest))
    assert store.put_bytes(data) == info
    assert heads["n"] >= 2  # the 412 led to a verifying HEAD
    after = raw.head_object(Bucket=store.bucket, Key=store.object_key(info.digest))
    assert after["LastModified"] == before["LastModified"] and after["ETag"] == before["ETag"]
    assert raw.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_fallback_when_endpoint_lacks_conditional_writes(store: S3BlobStore, monkeypatch) -> None:
    inner = store.client
    seen = []

    class NoConditional:
        def __getattr__(self, name):
            return getattr(inner, name)

        def put_object(self, **kw):
            seen.append(dict(kw))
            if "IfNoneMatch" in kw:
                raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no"},
                                   "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject")
            return inner.put_object(**kw)

    s = S3BlobStore(store.bucket, prefix=store.prefix, client=NoConditional())
    info = s.put_bytes(b"plain put")
    assert s.conditional_writes is False
    assert [("IfNoneMatch" in kw) for kw in seen] == [True, False]
    assert store.get_bytes(info.digest) == b"plain put"


def test_corruption_detected_on_read(store: S3BlobStore, raw, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    info = store.put_bytes(data)
    key = store.object_key(info.digest)
    tampered = bytearray(data)
    tampered[12345] ^= 0x01
    raw.put_object(Bucket=store.bucket, Key=key, Body=bytes(tampered))  # out of band, same size

    dest = tmp_path / "dl" / "engine.plan"
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    with pytest.raises(DigestMismatch):
        store.get_bytes(info.digest)

    raw.put_object(Bucket=store.bucket, Key=key, Body=b"short")  # wrong size
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, dest, expected_size=len(data))
    with pytest.raises(DigestMismatch):
        store.get_to_file(info.digest, dest)
    assert not dest.exists()

    # a put of the real bytes repairs an object that contradicts its key (size differs)
    assert store.put_bytes(data) == info
    assert store.get_bytes(info.digest) == data


def test_presigned_url_fetch(store: S3BlobStore) -> None:
    data = os.urandom(100_000)
    info = store.put_bytes(data)

    url = store.presigned_url(info.digest, expires_s=300)
    assert url is not None and url.startswith(store.endpoint_url)
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data

    url = store.presigned_url(info.digest, filename="model ä.plan")
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data
    cd = r.headers.get("content-disposition", "")
    assert cd.startswith("attachment;") and 'filename="model _.plan"' in cd

    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]

    with pytest.raises(BlobError):
        store.presigned_url(info.digest, expires_s=8 * 24 * 3600)


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (0, 1), (10, 20), (MiB - 1, MiB + 1), (500, None), (0, 10**9), (7, 7), (9, 3),
     (10**9, None), (10**9, 10**9 + 1)],
)
def test_range_reads(store: S3BlobStore, start: int, end: int | None) -> None:
    data = os.urandom(2 * MiB + 11)
    info = store.put_bytes(data)
    assert b"".join(store.open_range(info.digest, start, end)) == data[start:end]


def test_missing_blob(store: S3BlobStore, tmp_path: Path) -> None:
    missing = digest(b"never stored")
    assert not store.exists(missing)
    for call in (
        lambda: store.size(missing),
        lambda: store.open_range(missing),
        lambda: store.open_range(missing, 5, 5),
        lambda: store.get_bytes(missing),
        lambda: store.get_to_file(missing, tmp_path / "x"),
    ):
        with pytest.raises(BlobNotFound):
            call()
    assert not (tmp_path / "x").exists()
    store.delete(missing)  # no error


def test_delete(store: S3BlobStore) -> None:
    info = store.put_bytes(b"cleanup after a failed transaction")
    store.delete(info.digest)
    assert not store.exists(info.digest)


def test_bad_digest_rejected(store: S3BlobStore) -> None:
    for bad in ("sha256:../../x", "sha256:" + "A" * 64, "nope"):
        for call in (store.exists, store.get_bytes, store.presigned_url, store.delete,
                     lambda d: store.put_bytes(b"x", expected_digest=d)):
            with pytest.raises(BlobError):
                call(bad)


def test_missing_bucket_is_a_clear_error(moto_s3_url: str) -> None:
    s = S3BlobStore(f"absent-{uuid.uuid4().hex[:8]}", endpoint_url=moto_s3_url, region="us-east-1")
    with pytest.raises(BlobError, match="does not exist"):
        s.put_bytes(b"x")


def test_open_blob_store_s3(moto_s3_url: str) -> None:
    s = open_blob_store("s3://my-bucket/some/prefix/", s3_endpoint_url=moto_s3_url, s3_region="us-east-1")
    assert isinstance(s, S3BlobStore)
    assert (s.bucket, s.prefix, s.endpoint_url, s.region) == ("my-bucket", "some/prefix/", moto_s3_url,
                                                             "us-east-1")
    d = digest(b"x")
    assert s.object_key(d) == "some/prefix/" + s.key_for(d)
    s = open_blob_store("s3://my-bucket")
    assert (s.bucket, s.prefix) == ("my-bucket", "")
    with pytest.raises(InvalidInput):
        open_blob_store("s3:///no-bucket")
    with pytest.raises(InvalidInput):
        open_blob_store("s4://x/y")

    # end to end through the parsed store
    s = open_blob_store(f"s3://parsed-{uuid.uuid4().hex[:8]}/p", s3_endpoint_url=moto_s3_url,
                        s3_region="us-east-1")
    s.ensure_bucket()
    info = s.put_bytes(b"via url")
    assert s.get_bytes(info.digest) == b"via url"


def test_bad_configuration_rejected() -> None:
    with pytest.raises(InvalidInput):
        S3BlobStore("bucket", multipart_chunksize=1 * MiB)
    with pytest.raises(InvalidInput):
        S3BlobStore("bucket", multipart_threshold=0)
