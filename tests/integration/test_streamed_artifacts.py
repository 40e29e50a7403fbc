"""A farm whose blobs live in a folder (file://): the API streams artifacts itself (Range, ETag, 304);
a model with external data goes through the SDK, is built and validated."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (
    S3,
    Postgres,
    RunningFarm,
    batch_profile,
    built_engine_file,
    start_farm,
    stop_farm,
)
from tests.models import external_data_model


@pytest.fixture(scope="module")
def farm(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    farm = start_farm(postgres, s3, tmp_path_factory.mktemp("file-farm"), workers=1, blobs="file")
    try:
        yield farm
    finally:
        stop_farm(farm, postgres)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_artifact_streamed_with_range_and_etag(farm: RunningFarm, ort_runtime: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    build, engine, blob = built_engine_file(farm, ort_runtime, tmp_path / "r.onnx", seed=61)
    sdk = farm.client(local_reads=False)  # as a client on another host: downloaded from the API
    stored = blob.read_bytes()
    assert sha256(stored) == engine.digest and len(stored) == engine.size > 100
    etag = f'"{engine.digest}"'
    url = f"/v1/engines/{engine.id}/artifact"

    with farm.http() as http:
        full = http.get(url)
        assert full.status_code == 200 and full.content == stored
        assert full.headers["etag"] == etag and full.headers["accept-ranges"] == "bytes"
        assert full.headers["content-length"] == str(engine.size)
        assert full.headers["x-content-sha256"] == engine.digest
        assert engine.filename in full.headers["content-disposition"]

        for header, start, end in [("bytes=0-9", 0, 9), ("bytes=10-", 10, engine.size - 1),
                                   ("bytes=-7", engine.size - 7, engine.size - 1),
                                   (f"bytes=5-{engine.size + 100}", 5, engine.size - 1)]:
            part = http.get(url, headers={"Range": header})
            assert part.status_code == 206, (header, part.text)
            assert part.content == stored[start:end + 1], header
            assert part.headers["content-range"] == f"bytes {start}-{end}/{engine.size}", header
            assert part.headers["content-length"] == str(end - start + 1)
            assert part.headers["etag"] == etag

        unchanged = http.get(url, headers={"If-None-Match": etag})
        assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
        for header in (f'"sha256:{"f" * 64}", {etag}', f"W/{etag}", "*"):  # a list, a weak tag, any
            assert http.get(url, headers={"If-None-Match": header}).status_code == 304, header
        other = http.get(url, headers={"If-None-Match": '"sha256:' + "f" * 64 + '"'})
        assert other.status_code == 200 and other.content == stored

        for header in (f"bytes={engine.size}-", f"bytes={engine.size + 10}-{engine.size + 20}", "bytes=-0"):
            past = http.get(url, headers={"Range": header})
            assert past.status_code == 416, (header, past.text)
            assert past.json()["code"] == "range_not_satisfiable"
            assert past.headers["content-range"] == f"bytes */{engine.size}"
        # RFC 9110: a Range the server does not serve (several ranges, another unit, malformed, backwards)
        # is ignored: the whole artifact, 200
        for header in ("bytes=9-3", "items=0-9", "bytes=a-b", "bytes=0-1,5-9", "bytes=", "bytes=--1"):
            whole = http.get(url, headers={"Range": header})
            assert whole.status_code == 200 and whole.content == stored, header
            assert "content-range" not in whole.headers, header

        # If-Range: the range only while the client's partial copy is of this very artifact
        same = http.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
        assert same.status_code == 206 and same.content == stored[:10]
        for stale in ('"sha256:' + "f" * 64 + '"', f"W/{etag}", "Wed, 21 Oct 2026 07:28:00 GMT"):
            whole = http.get(url, headers={"Range": "bytes=0-9", "If-Range": stale})
            assert whole.status_code == 200 and whole.content == stored, stale

        # HEAD: the same headers as GET, no body (Range does not apply)
        head = http.head(url, headers={"Range": "bytes=0-9"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(engine.size) and head.headers["etag"] == etag
        assert head.headers["x-content-sha256"] == engine.digest and head.headers["accept-ranges"] == "bytes"
        assert http.head(f"/v1/engines/{'0' * 32}/artifact").status_code == 404

    # the SDK downloads the streamed artifact, verifies it and caches it
    monkeypatch.setattr("registry.localread.copy_hashed",
                        lambda *a, **k: pytest.fail("a client told not to read the farm's disk read it"))
    path = sdk.fetch(build.model, ort_runtime, batch_profile())
    assert path.read_bytes() == stored and path.name == f"{engine.digest[7:]}.ort"


def fetches(farm: RunningFarm, model: str, engine_id: str) -> int:
    with farm.http() as http:
        items = http.get("/v1/engines", params={"model": model}).json()["items"]
    return next(e["fetches"] for e in items if e["id"] == engine_id)


def test_a_client_on_the_api_host_copies_the_blob_from_disk(farm: RunningFarm, ort_runtime: str,
                                                            tmp_path: Path) -> None:
    """A client at a loopback address is told where the blob lies (counted as a fetch) and copies and hashes it
    itself; a request that came through a proxy, or a farm that has local reads off, is told to download."""
    build, engine, blob = built_engine_file(farm, ort_runtime, tmp_path / "l.onnx", seed=63)
    sdk = farm.client()
    sdk._receive = lambda *a: pytest.fail("a client on the API's host downloaded over HTTP")
    before = fetches(farm, build.model, engine.id)
    path = sdk.fetch(build.model, ort_runtime, batch_profile())
    assert path.read_bytes() == blob.read_bytes() and sha256(path.read_bytes()) == engine.digest
    assert path != blob and path.stat().st_ino != blob.stat().st_ino  # a copy: the cache never shares the inode
    deadline = time.monotonic() + 10  # counted once the answer is out
    while fetches(farm, build.model, engine.id) != before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fetches(farm, build.model, engine.id) == before + 1
    url = f"/v1/engines/{engine.id}/artifact/local"
    with farm.http() as http:
        where = http.get(url)
        assert where.status_code == 200 and where.json() == {"path": str(blob), "digest": engine.digest,
                                                             "size": engine.size}
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP"):
            proxied = http.get(url, headers={header: "203.0.113.9"})
            assert proxied.status_code == 404 and proxied.json()["code"] == "no_local_path", (header, proxied.text)
            assert "download it" in proxied.json()["message"]
        assert http.get(f"/v1/engines/{'0' * 32}/artifact/local").json()["code"] == "engine_not_found"


def test_model_with_external_data_through_the_sdk(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    path = external_data_model(tmp_path / "ext", name="net.onnx")
    weights = path.parent / "weights.bin"
    assert weights.stat().st_size > 1000 and path.stat().st_size < weights.stat().st_size
    sdk = farm.client()
    local_id = sdk.model_id(path)
    assert local_id != sha256(path.read_bytes())  # the manifest's digest, not the .onnx's
    assert not sdk.has_model(local_id)

    info = sdk.upload(path)

    assert info.id == local_id and sdk.has_model(local_id)
    assert sorted((f.path, f.sha256, f.size) for f in info.files) == sorted(
        (p.name, sha256(p.read_bytes()), p.stat().st_size) for p in (path, weights))
    assert [i.name for i in info.inputs] == ["input"] and info.inputs[0].shape == ["N", 3, 16, 16]
    for f in info.files:  # both files are blobs of their own
        assert (farm.home / "blobs" / "blobs" / "sha256" / f.sha256[7:9] / f.sha256[7:]).is_file()
    assert sdk.upload(path).id == local_id  # a second upload is a HEAD hit

    build = sdk.submit(path, "onnxruntime", batch_profile(), poll_interval=0.3, timeout=120)
    assert build.status == "succeeded" and build.model == local_id and build.target == ort_runtime
    engine = sdk.engine(build.engine_id)
    assert engine.validation_passed is True
    cases = engine.validation["cases"]
    assert cases and all(c["passed"] for c in cases) and engine.validation["max_abs_error"] < 1e-3

    fetched = sdk.fetch(path, "auto", batch_profile())  # the runtime detected here: this host's ONNX Runtime
    assert sha256(fetched.read_bytes()) == engine.digest

    import numpy as np
    import onnxruntime as ort

    assert fetched.suffix == ".ort"  # ONNX Runtime knows the format by the suffix
    x = np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32)
    got = ort.InferenceSession(str(fetched), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
