"""A model registered into an S3 store (moto's server over HTTP): its blobs go up while the intake checks
the model, and become visible only once it passed (registry.services.models.register_model with
S3BlobStore.begin_puts). A refused model leaves no object and no multipart upload behind, whatever ran
beside it; a blob that was there before stays."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("boto3")

from registry import intake  # noqa: E402
from registry.blobs.s3 import MiB, S3BlobStore  # noqa: E402
from registry.db.migrate import upgrade  # noqa: E402
from registry.db.session import Database  # noqa: E402
from registry.errors import InvalidModel  # noqa: E402
from registry.intake import IntakeLimits  # noqa: E402
from registry.services.models import register_model  # noqa: E402
from registry.settings import Settings  # noqa: E402
from tests.integration.conftest import S3, RunningFarm  # noqa: E402
from tests.models import matmul_model  # noqa: E402

K = 1800  # a 1800 x 1800 float32 weight: a 13 MB model, three 5 MiB parts


@pytest.fixture
def store(s3: S3) -> S3BlobStore:
    return S3BlobStore(s3.bucket, prefix=f"uploads/{uuid.uuid4().hex[:8]}", endpoint_url=s3.endpoint,
                       region="us-east-1", multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    settings = Settings(home=tmp_path / "home")
    upgrade(settings.resolved_database_url())
    return Database(settings.resolved_database_url())


def model_file(folder: Path, broken: bool, k: int = K) -> Path:
    """A k x k float32 weight (13 MB by default); `broken`: its MatMul reads a tensor nothing defines (the
    checker refuses it; an op no opset has is a TensorRT plugin op, which the farm accepts)."""
    import onnx

    path = matmul_model(folder / "m.onnx", k=k, n=k)
    if broken:
        proto = onnx.load(str(path))
        proto.graph.node[0].input[0] = "no_such_tensor"
        onnx.save_model(proto, str(path))
    return path


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(s3: S3, store: S3BlobStore) -> tuple[set[str], list[str]]:
    """(objects, multipart uploads in progress) under the store's prefix."""
    uploads = s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix=store.prefix).get("Uploads", [])
    return s3.keys(store.prefix), [u["Key"] for u in uploads]


def test_a_refused_model_leaves_nothing_though_its_parts_went_up_while_it_was_checked(
        s3: S3, store: S3BlobStore, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = model_file(tmp_path / "up", broken=True)
    seen = []
    real_check = intake.check

    def check_once_the_upload_is_under_way(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        deadline = time.monotonic() + 30
        while not leftovers(s3, store)[1] and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(leftovers(s3, store))
        return real_check(*args, **kwargs)

    monkeypatch.setattr(intake, "check", check_once_the_upload_is_under_way)
    with pytest.raises(InvalidModel, match="fails the ONNX checker.*no_such_tensor"):
        register_model(db, store, path.parent, "m.onnx")
    assert seen == [(set(), [store.object_key(digest_of(path))])]  # an upload in progress, no object yet
    assert leftovers(s3, store) == (set(), [])


def test_an_accepted_model_is_stored_once_checked(s3: S3, store: S3BlobStore, db: Database, tmp_path: Path) -> None:
    path = model_file(tmp_path / "up", broken=False)
    info, created = register_model(db, store, path.parent, "m.onnx")
    assert created and info.id == digest_of(path) and [f.sha256 for f in info.files] == [info.id]
    assert store.get_bytes(info.id) == path.read_bytes()
    assert leftovers(s3, store) == ({store.object_key(info.id)}, [])
    again, created = register_model(db, store, path.parent, "m.onnx")  # the blob is there: nothing goes up
    assert not created and again == info and leftovers(s3, store) == ({store.object_key(info.id)}, [])


def test_a_refused_model_keeps_a_blob_that_was_stored_before(s3: S3, store: S3BlobStore, db: Database,
                                                            tmp_path: Path) -> None:
    path = model_file(tmp_path / "up", broken=True)
    stored = store.put_file(path)  # the same bytes, stored by someone else (say, as another model's file)
    with pytest.raises(InvalidModel):
        register_model(db, store, path.parent, "m.onnx")
    assert store.get_bytes(stored.digest) == path.read_bytes()
    assert leftovers(s3, store) == ({store.object_key(stored.digest)}, [])


def test_a_refused_and_an_accepted_upload_of_the_same_bytes_at_once(s3: S3, store: S3BlobStore, db: Database,
                                                                   tmp_path: Path) -> None:
    """One upload is refused (its check ran out of time), the other of the same bytes accepted, at the
    same time: each staged its own multipart upload, and the refused one's abort cannot touch the blob the
    accepted one completed."""
    paths = [model_file(tmp_path / f"up{i}", broken=False) for i in range(2)]
    outcomes: dict[str, object] = {}

    def upload(name: str, path: Path, limits: IntakeLimits) -> None:
        try:
            outcomes[name] = register_model(db, store, path.parent, "m.onnx", limits=limits)
        except InvalidModel as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=upload, args=("refused", paths[0], IntakeLimits(timeout_s=0.001))),
               threading.Thread(target=upload, args=("accepted", paths[1], IntakeLimits()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = outcomes["refused"]
    if isinstance(refused, InvalidModel):
        assert "longer than" in str(refused)
    else:  # the accepted upload registered the model before this one checked it: this one found it there
        assert refused[1] is False  # type: ignore[index]
    info, created = outcomes["accepted"]  # type: ignore[misc]
    assert created and store.get_bytes(info.id) == paths[1].read_bytes()
    assert leftovers(s3, store) == ({store.object_key(info.id)}, [])


def test_two_uploads_of_one_model_at_once_store_one_blob(s3: S3, store: S3BlobStore, db: Database,
                                                         tmp_path: Path) -> None:
    paths = [model_file(tmp_path / f"up{i}", broken=False) for i in range(2)]
    answers: list[tuple[object, bool]] = []
    threads = [threading.Thread(target=lambda p=p: answers.append(register_model(db, store, p.parent, "m.onnx")))
               for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(created for _, created in answers) == [False, True]
    assert answers[0][0] == answers[1][0]
    blob = digest_of(paths[0])
    assert store.get_bytes(blob) == paths[0].read_bytes() and leftovers(s3, store) == ({store.object_key(blob)}, [])


def test_external_data_goes_up_with_its_model_and_an_extra_file_is_refused_with_it(
        s3: S3, store: S3BlobStore, db: Database, tmp_path: Path) -> None:
    """weights.bin (13 MB: staged) and the small .onnx (stored at commit) of one model; then the same upload
    with an unreferenced 6 MB file, refused after the check (the staged uploads aborted, both files')."""
    import onnx

    folder = tmp_path / "ext"
    folder.mkdir()
    proto = onnx.load(str(model_file(tmp_path / "up", broken=False)))
    onnx.save_model(proto, str(folder / "m.onnx"), save_as_external_data=True, location="weights.bin")
    info, created = register_model(db, store, folder, "m.onnx")
    assert created and sorted(f.path for f in info.files) == ["m.onnx", "weights.bin"]
    for f in info.files:
        assert store.get_bytes(f.sha256) == (folder / f.path).read_bytes()
    stored = leftovers(s3, store)
    assert len(stored[0]) == 2 and stored[1] == []

    (tmp_path / "up").rename(folder / "extra")  # a 13 MB file the model does not reference
    with pytest.raises(InvalidModel, match="not referenced by m.onnx: extra/m.onnx"):
        register_model(db, store, folder, "m.onnx")
    assert leftovers(s3, store) == stored


def _wait_for_parts(s3: S3, store: S3BlobStore, count: int) -> list:
    """The parts of the store's one multipart upload in progress, once there are `count` of them."""
    client, deadline = s3.client(), time.monotonic() + 30
    while time.monotonic() < deadline:
        uploads = client.list_multipart_uploads(Bucket=s3.bucket, Prefix=store.prefix).get("Uploads", [])
        if uploads:
            parts = client.list_parts(Bucket=s3.bucket, Key=uploads[0]["Key"],
                                      UploadId=uploads[0]["UploadId"]).get("Parts", [])
            if len(parts) >= count:
                return parts
        time.sleep(0.01)
    raise AssertionError(f"no multipart upload with {count} parts under {store.prefix}")


def _arriving(store: S3BlobStore, path: Path, data: bytes, claimed: str):  # noqa: ANN202
    """A StreamedPut fed like the API feeds it: the first 6 MiB written (one 5 MiB part can go), the rest
    held back until the caller says."""
    stream = store.begin_stream(path, claimed)
    with open(path, "wb") as f:
        f.write(data[:6 * MiB])
    stream.grow(6 * MiB)

    def rest() -> None:
        with open(path, "ab") as f:
            f.write(data[6 * MiB:])
        stream.finish(len(data))

    return stream, rest


def test_a_file_is_sent_while_it_arrives_and_completed_only_by_commit(s3: S3, store: S3BlobStore,
                                                                     tmp_path: Path) -> None:
    data = os.urandom(13 * MiB)
    stream, rest = _arriving(store, tmp_path / "f", data, "sha256:" + hashlib.sha256(data).hexdigest())
    assert stream.started
    assert len(_wait_for_parts(s3, store, 1)) == 1  # a part went up before the file was complete
    rest()
    info = stream.commit()
    assert info.size == len(data) and store.get_bytes(info.digest) == data
    assert leftovers(s3, store) == ({store.object_key(info.digest)}, [])


def test_a_file_sent_while_it_arrives_leaves_nothing_when_aborted_or_not_what_it_claimed(
        s3: S3, store: S3BlobStore, tmp_path: Path) -> None:
    from registry.errors import DigestMismatch

    data = os.urandom(13 * MiB)
    stream, _ = _arriving(store, tmp_path / "a", data, "sha256:" + hashlib.sha256(data).hexdigest())
    _wait_for_parts(s3, store, 1)
    stream.abort()  # the file never finished arriving (the client hung up, say)
    assert leftovers(s3, store) == (set(), [])

    claimed = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    stream, rest = _arriving(store, tmp_path / "b", data, claimed)
    rest()
    with pytest.raises(DigestMismatch):
        stream.commit()
    assert leftovers(s3, store) == (set(), [])

    small = store.begin_stream(tmp_path / "c", claimed)  # under the threshold: nothing starts
    small.grow(100)
    small.finish(100)
    assert not small.started


def _post_slowly(farm: RunningFarm, data: bytes, claimed: bytes) -> tuple[httpx.Response, list]:
    """POST /v1/models with one file part that states `claimed` (a raw sha256) as its Content-Digest; the
    body pauses after 17 MiB until a multipart upload shows up under the farm's prefix (or 30 s passed)."""
    boundary = "trtfarm-test-boundary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n'
            f"Content-Type: application/octet-stream\r\nContent-Digest: sha-256=:{base64.b64encode(claimed).decode()}:"
            "\r\n\r\n").encode()
    seen = []

    def body() -> Iterator[bytes]:
        yield head
        yield data[:17 * MiB]
        deadline = time.monotonic() + 30
        while not _farm_leftovers(farm)[1] and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(_farm_leftovers(farm))
        yield data[17 * MiB:]
        yield f"\r\n--{boundary}--\r\n".encode()

    with farm.http() as http:
        answer = http.post("/v1/models", content=body(),
                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    return answer, seen


def _farm_leftovers(farm: RunningFarm) -> tuple[set[str], list[str]]:
    assert farm.s3 is not None
    uploads = farm.s3.client().list_multipart_uploads(Bucket=farm.s3.bucket, Prefix=farm.s3_prefix + "/")
    return farm.s3_keys(), [u["Key"] for u in uploads.get("Uploads", [])]


def test_the_api_sends_a_file_on_while_it_arrives_when_its_part_states_its_digest(farm_factory,  # noqa: ANN001
                                                                                  tmp_path: Path) -> None:
    """18 MiB in the API's 16 MiB parts: the upload to S3 starts before the body has all arrived. A claim the
    bytes contradict, or a model the checker refuses, leaves nothing behind."""
    farm = farm_factory(workers=0)
    good, bad = model_file(tmp_path / "good", broken=False, k=2200), model_file(tmp_path / "bad", broken=True, k=2200)
    before = _farm_leftovers(farm)

    lie = hashlib.sha256(b"another model").digest()
    answer, seen = _post_slowly(farm, good.read_bytes(), lie)
    assert answer.status_code == 422 and "Content-Digest" in answer.json()["message"], answer.text
    assert seen == [(before[0], [farm.blob_key("sha256:" + lie.hex())])]  # it was going up, under the claim
    assert _farm_leftovers(farm) == before

    answer, seen = _post_slowly(farm, bad.read_bytes(), hashlib.sha256(bad.read_bytes()).digest())
    assert answer.status_code == 422 and "no_such_tensor" in answer.json()["message"], answer.text
    assert seen[0][1] and _farm_leftovers(farm) == before

    answer, seen = _post_slowly(farm, good.read_bytes(), hashlib.sha256(good.read_bytes()).digest())
    assert answer.status_code == 201, answer.text
    assert seen[0][1] == [farm.blob_key(digest_of(good))]
    assert _farm_leftovers(farm) == (before[0] | {farm.blob_key(digest_of(good))}, [])
    assert farm.client().upload(good).id == digest_of(good)  # the SDK states digests too: known, nothing sent
