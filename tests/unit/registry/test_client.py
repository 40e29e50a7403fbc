"""registry.client.Farm logic against an in-process fake farm (httpx.MockTransport): no server, no network."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client import Farm, spec_payload
from registry.compat import Runtime
from registry.digests import ModelFile, digest_of_bytes, model_id
from registry.errors import (
    BuildFailed,
    BuildNotFound,
    BuildTimeout,
    DigestMismatch,
    FarmError,
    InvalidInput,
    InvalidModel,
    NoCompatibleEngine,
    RemoteError,
)
from registry.keys import spec_family
from registry.schemas import BuildInfo, EngineInfo
from registry.spec import BuildSpec

URL = "http://farm.test:8000"
TOKEN = "s3cr3t"
H100 = Runtime("tensorrt", "8.6.0", sku="h100-80gb-hbm3", cc="sm_90")
PLAN = b"ftrt" + bytes(20) + bytes([8, 6, 0, 12]) + bytes(range(256)) * 64  # a header of TensorRT 8.6.0
MODEL = "sha256:" + "ab" * 32
NOW = "2024-05-01T12:00:00Z"


def engine_json(data: bytes = PLAN, **over: Any) -> dict[str, Any]:
    doc = {
        "id": "eng-1", "build_id": "b-1", "build_key": "k" * 64, "model": MODEL, "toolchain": "tensorrt",
        "version": "8.6.0", "device": "h100-80gb-hbm3", "sku": "h100-80gb-hbm3", "cc": "sm_90",
        "hardware_compatibility": "none", "version_compatible": False, "refittable": False, "spec": {},
        "digest": digest_of_bytes(data), "size": len(data), "filename": "model.plan", "metadata": {},
        "created_at": NOW,
    }
    return {**doc, **over}


def build_json(status: str = "queued", **over: Any) -> dict[str, Any]:
    doc = {
        "id": "b-1", "key": "k" * 64, "model": MODEL, "target": "tensorrt==8.6.0@h100-80gb-hbm3",
        "toolchain": "tensorrt", "version": "8.6.0", "device": "h100-80gb-hbm3",
        "queue": "build.tensorrt-8.6.0.h100-80gb-hbm3", "spec": {}, "status": status, "attempt": 1,
        "max_attempts": 3, "created_at": NOW,
    }
    return {**doc, **over}


def model_json(mid: str, **over: Any) -> dict[str, Any]:
    doc = {"id": mid, "name": "model.onnx", "size": 10, "inputs": [], "outputs": [], "opsets": {"": 17},
           "ir_version": 8, "created_at": NOW}
    return {**doc, **over}


Handler = Callable[[httpx.Request], httpx.Response]


class FakeFarm:
    """Routes (method, path) to handlers and records every request it sees."""

    def __init__(self, routes: dict[tuple[str, str], Handler | httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, f"{request.url.host}{request.url.path}")
        route = self.routes.get(key) or self.routes.get((request.method, request.url.path))
        if route is None:
            return httpx.Response(404, json={"code": "not_found", "message": f"no route {key}"})
        return route(request) if callable(route) else route

    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.path}" for r in self.requests]


def make_farm(tmp_path: Path, routes: dict[Any, Any], token: str | None = TOKEN) -> tuple[Farm, FakeFarm]:
    fake = FakeFarm(routes)
    farm = Farm(URL, token=token, cache_dir=tmp_path / "cache", transport=httpx.MockTransport(fake))
    farm.sleep = lambda seconds: None
    return farm, fake


def resolve_ok(data: bytes = PLAN) -> httpx.Response:
    return httpx.Response(200, json={"engine": engine_json(data), "match_class": "exact",
                                     "reason": "same version, same SKU"})


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# --------------------------------------------------------------------------------------- basics


def test_url_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRTFARM_URL", raising=False)
    with pytest.raises(InvalidInput, match="set TRTFARM_URL or pass url="):
        Farm()


def test_env_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRTFARM_URL", "http://env.test/")
    monkeypatch.setenv("TRTFARM_TOKEN", "tok")
    monkeypatch.setenv("TRTFARM_CACHE", str(tmp_path / "c"))
    farm = Farm()
    assert (farm.url, farm.token, farm.cache_dir) == ("http://env.test", "tok", tmp_path / "c")


def test_error_bodies_become_their_own_error_classes(tmp_path: Path) -> None:
    farm, _ = make_farm(tmp_path, {
        ("GET", "/v1/builds/nope"): httpx.Response(
            404, json={"code": "build_not_found", "message": "no build nope", "details": {"id": "nope"}}),
        ("GET", "/v1/builds/proxy"): httpx.Response(502, text="<html>Bad Gateway</html>"),
        ("GET", "/v1/builds"): httpx.Response(422, json={"detail": [{"loc": ["query", "limit"], "msg": "bad"}]}),
    })
    with pytest.raises(BuildNotFound) as info:
        farm.build("nope")
    err = info.value
    assert (err.status, err.code, err.message, err.details) == (404, "build_not_found", "no build nope", {"id": "nope"})
    assert str(err) == "[404 build_not_found] no build nope"
    with pytest.raises(RemoteError) as info:  # not the farm's JSON error: the unknown-code bucket
        farm.build("proxy")
    assert (info.value.status, info.value.code) == (502, "http_502") and "Bad Gateway" in info.value.message
    with pytest.raises(RemoteError) as info:
        farm.builds(limit=-1)
    assert info.value.code == "http_422" and "limit" in info.value.message
    assert isinstance(info.value, FarmError)


def test_token_is_sent_as_bearer(tmp_path: Path) -> None:
    routes = {("GET", "/v1/workers"): httpx.Response(200, json=[])}
    farm, fake = make_farm(tmp_path, routes)
    assert farm.workers() == []
    assert fake.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    open_farm, fake = make_farm(tmp_path, routes, token=None)
    open_farm.workers()
    assert "authorization" not in fake.requests[-1].headers


def test_builds_filters_drop_none(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path,
                           {("GET", "/v1/builds"): httpx.Response(200, json={"items": [build_json()], "total": 1})})
    listing = farm.builds(status="queued", limit=5)
    assert listing.total == 1 and listing.items[0].id == "b-1"
    assert dict(fake.requests[-1].url.params) == {"status": "queued", "limit": "5"}


# ---------------------------------------------------------------------------------------- models


def write_model(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "m"
    (folder / "data").mkdir(parents=True)
    onnx_path = folder / "model.onnx"
    onnx_path.write_bytes(b"not really onnx, but bytes")
    weights = folder / "data" / "w.bin"
    weights.write_bytes(b"\x00" * 1000)
    return onnx_path, weights


def test_model_id_matches_the_server_algorithm(tmp_path: Path) -> None:
    onnx_path, weights = write_model(tmp_path)
    farm, fake = make_farm(tmp_path, {})
    single = farm.model_id(onnx_path, external_data=[])
    assert single == digest_of_bytes(onnx_path.read_bytes())
    expected = model_id([
        ModelFile("model.onnx", digest_of_bytes(onnx_path.read_bytes()), onnx_path.stat().st_size),
        ModelFile("data/w.bin", digest_of_bytes(weights.read_bytes()), 1000),
    ])
    assert farm.model_id(onnx_path, external_data=[weights]) == expected
    assert farm.model_id(onnx_path, external_data=["data/w.bin"]) == expected  # relative to the model's folder
    assert fake.requests == []
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x")
    with pytest.raises(InvalidModel, match="inside the model's folder"):
        farm.model_id(onnx_path, external_data=[outside])


def test_model_id_finds_external_data_with_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("numpy")
    from tests.models import external_data_model

    path = external_data_model(tmp_path / "ext")
    farm, _ = make_farm(tmp_path, {})
    layout = [f.path for f, _ in farm.model_files(path)]
    assert layout == ["model.onnx", "weights.bin"]
    assert farm.model_id(path) == farm.model_id(path, external_data=[path.parent / "weights.bin"])


def test_upload_skips_when_the_farm_has_the_model(tmp_path: Path) -> None:
    onnx_path, _ = write_model(tmp_path)
    mid = digest_of_bytes(onnx_path.read_bytes())
    farm, fake = make_farm(tmp_path, {
        ("HEAD", f"/v1/models/{mid}"): httpx.Response(200),
        ("GET", f"/v1/models/{mid}"): httpx.Response(200, json=model_json(mid)),
    })
    assert farm.upload(onnx_path, external_data=[]).id == mid
    assert fake.paths() == [f"HEAD /v1/models/{mid}", f"GET /v1/models/{mid}"]


def test_upload_posts_multipart_when_missing(tmp_path: Path) -> None:
    onnx_path, weights = write_model(tmp_path)
    mid = Farm(URL, cache_dir=tmp_path).model_id(onnx_path, external_data=[weights])
    farm, fake = make_farm(tmp_path, {
        ("HEAD", f"/v1/models/{mid}"): httpx.Response(404),
        ("POST", "/v1/models"): httpx.Response(201, json=model_json(mid)),
    })
    assert farm.upload(onnx_path, external_data=[weights]).id == mid
    assert fake.paths() == [f"HEAD /v1/models/{mid}", "POST /v1/models"]
    body = fake.requests[-1].read()
    assert b'name="file"; filename="model.onnx"' in body
    assert b'name="files"; filename="data/w.bin"' in body
    assert onnx_path.read_bytes() in body and weights.read_bytes() in body
    for path in (onnx_path, weights):  # each part states its digest (RFC 9530): the farm may send it on at once
        stated = base64.b64encode(hashlib.sha256(path.read_bytes()).digest())
        assert b"Content-Digest: sha-256=:" + stated + b":" in body


def test_upload_refuses_an_id_disagreement(tmp_path: Path) -> None:
    onnx_path, _ = write_model(tmp_path)
    farm, _ = make_farm(tmp_path, {
        ("HEAD", f"/v1/models/{digest_of_bytes(onnx_path.read_bytes())}"): httpx.Response(404),
        ("POST", "/v1/models"): httpx.Response(201, json=model_json(MODEL)),
    })
    with pytest.raises(DigestMismatch):
        farm.upload(onnx_path, external_data=[])


# ---------------------------------------------------------------------------------------- builds


def test_spec_payload_sends_only_non_defaults() -> None:
    assert spec_payload(None) == {}
    assert spec_payload({"precision": ["fp16"], "optimization_level": 3}) == {"precision": ["fp16"]}
    assert spec_payload(BuildSpec(workspace_mib=512)) == {"workspace_mib": 512}


def test_submit_waits_and_reports_progress(tmp_path: Path) -> None:
    states = iter(["running", "running", "succeeded"])
    farm, fake = make_farm(tmp_path, {
        ("POST", "/v1/builds"): httpx.Response(201, json=build_json("queued")),
        ("GET", "/v1/builds/b-1"): lambda r: httpx.Response(200, json=build_json(next(states), engine_id="eng-1")),
    })
    seen: list[str] = []
    info = farm.submit(MODEL, "tensorrt==8.6.0@h100-80gb-hbm3", {"precision": ["fp16"]},
                       progress=lambda b: seen.append(b.status), poll_interval=0.01)
    assert info.status == "succeeded" and info.engine_id == "eng-1"
    assert seen == ["queued", "running", "running", "succeeded"]
    sent = json.loads(fake.requests[0].read())
    assert sent == {"model": MODEL, "target": "tensorrt==8.6.0@h100-80gb-hbm3", "spec": {"precision": ["fp16"]},
                    "plugins": [], "calibration": None}


def test_submit_failed_build_raises_build_failed(tmp_path: Path) -> None:
    failed = build_json("failed", error={"code": "parser_error", "message": "Unsupported ONNX op: Foo"})
    farm, _ = make_farm(tmp_path, {
        ("POST", "/v1/builds"): httpx.Response(201, json=build_json("queued")),
        ("GET", "/v1/builds/b-1"): httpx.Response(200, json=failed),
    })
    with pytest.raises(BuildFailed) as info:
        farm.submit(MODEL, "tensorrt==8.6.0@h100-80gb-hbm3")
    text = str(info.value)
    assert "b-1" in text and "parser_error" in text and "Unsupported ONNX op: Foo" in text
    assert isinstance(info.value.build, BuildInfo) and info.value.build.status == "failed"


def test_submit_without_wait_returns_at_once(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, {("POST", "/v1/builds"): httpx.Response(200, json=build_json("running"))})
    assert farm.submit(MODEL, "tensorrt==8.6.0@sm_90", wait=False).status == "running"
    assert fake.paths() == ["POST /v1/builds"]


def test_wait_timeout_names_build_and_status(tmp_path: Path) -> None:
    farm, _ = make_farm(tmp_path, {
        ("POST", "/v1/builds"): httpx.Response(201, json=build_json("queued")),
        ("GET", "/v1/builds/b-1"): httpx.Response(200, json=build_json("running")),
    })
    ticks = iter(range(1000))
    farm.clock = lambda: float(next(ticks))
    with pytest.raises(BuildTimeout) as info:
        farm.submit(MODEL, "tensorrt==8.6.0@h100-80gb-hbm3", timeout=5)
    assert "b-1" in str(info.value) and "running" in str(info.value)
    assert info.value.details == {"build": "b-1", "status": "running"}


def test_submit_rejects_a_missing_path(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, {})
    with pytest.raises(InvalidInput, match="neither a model id"):
        farm.submit(str(tmp_path / "missing.onnx"), "onnxruntime")
    assert fake.requests == []


# ----------------------------------------------------------------------------------------- fetch


def artifact_routes(data: bytes = PLAN, served: bytes | None = None) -> dict[Any, Any]:
    return {
        ("GET", "/v1/engines/resolve"): resolve_ok(data),
        ("GET", "/v1/engines/eng-1/artifact"): httpx.Response(200, content=data if served is None else served),
    }


def test_fetch_downloads_verifies_and_caches(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, artifact_routes())
    path = farm.fetch(MODEL, H100)
    hexdigest = hashlib.sha256(PLAN).hexdigest()
    assert path == tmp_path / "cache" / "engines" / "sha256" / hexdigest[:2] / f"{hexdigest}.plan"
    assert path.read_bytes() == PLAN
    assert not os.access(path, os.W_OK) or os.geteuid() == 0  # read-only (root can write anyway)
    assert fake.paths() == ["GET /v1/engines/resolve", "GET /v1/engines/eng-1/artifact"]
    query = dict(fake.requests[0].url.params)
    assert query["model"] == MODEL and query["sku"] == "h100-80gb-hbm3" and query["cc"] == "sm_90"
    assert "spec_family" not in query


def test_a_download_sweeps_what_a_killed_download_left(tmp_path: Path) -> None:
    shard = tmp_path / "cache" / "engines" / "sha256" / "ab"
    shard.mkdir(parents=True)
    stale, live = shard / ".part-killed", shard / ".part-in-progress"
    stale.write_bytes(b"half an engine")
    live.write_bytes(b"another process is writing this")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    farm, _ = make_farm(tmp_path, artifact_routes())
    farm.fetch(MODEL, H100)
    assert not stale.exists() and live.exists()


def test_second_fetch_makes_no_http_request(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, artifact_routes())
    first = farm.fetch(MODEL, "tensorrt==8.6.0@h100-80gb-hbm3/sm_90", {"precision": ["fp16"]})
    assert len(fake.requests) == 2
    assert dict(fake.requests[0].url.params)["spec_family"] == spec_family(BuildSpec(precision=("fp16",)))
    again = Farm(URL, token=TOKEN, cache_dir=tmp_path / "cache", transport=httpx.MockTransport(fake))  # a new process
    assert again.fetch(MODEL, "tensorrt==8.6.0@h100-80gb-hbm3/sm_90", {"precision": ["fp16"]}) == first
    assert farm.fetch(MODEL, H100, BuildSpec(precision=("fp16",))) == first
    dest = farm.fetch(MODEL, H100, {"precision": ["fp16"]}, dest=tmp_path / "out")
    assert len(fake.requests) == 2  # all local hits
    assert dest == tmp_path / "out" and dest.read_bytes() == PLAN
    (tmp_path / "dir").mkdir()
    assert farm.fetch(MODEL, H100, {"precision": ["fp16"]}, dest=tmp_path / "dir") == tmp_path / "dir" / "model.plan"
    # another question (other spec) asks the farm; the blob itself is already cached: no download
    farm.fetch(MODEL, H100)
    assert fake.paths()[2:] == ["GET /v1/engines/resolve"]
    # refresh asks again
    farm.fetch(MODEL, H100, refresh=True)
    assert fake.paths()[3:] == ["GET /v1/engines/resolve"]


def test_fetch_redownloads_a_truncated_blob(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, artifact_routes())
    path = farm.fetch(MODEL, H100)
    os.chmod(path, 0o644)
    path.write_bytes(PLAN[:10])
    assert farm.fetch(MODEL, H100).read_bytes() == PLAN
    assert fake.paths()[2:] == ["GET /v1/engines/resolve", "GET /v1/engines/eng-1/artifact"]


def test_verify_cached_catches_same_size_corruption(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, artifact_routes())
    path = farm.fetch(MODEL, H100)
    os.chmod(path, 0o644)
    path.write_bytes(b"X" * len(PLAN))
    assert farm.fetch(MODEL, H100, verify_cached=True).read_bytes() == PLAN
    assert fake.paths()[-1] == "GET /v1/engines/eng-1/artifact"


def test_a_cache_hit_rehashes_a_file_that_changed_since_it_was_verified(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, artifact_routes())
    path = farm.fetch(MODEL, H100)
    assert farm.fetch(MODEL, H100) == path and len(fake.requests) == 2  # unchanged: a hit, no rehash needed
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # one flipped byte, same size: caught without verify_cached
        f.seek(5)
        f.write(bytes([PLAN[5] ^ 0xFF]))
    assert farm.fetch(MODEL, H100).read_bytes() == PLAN
    assert fake.paths()[-1] == "GET /v1/engines/eng-1/artifact"


@pytest.mark.parametrize("served", [b"ftrt" + b"\x01" * (len(PLAN) - 4), PLAN[:-1], PLAN + b"extra"],
                         ids=["same-size-other-bytes", "short", "long"])
def test_fetch_mismatch_leaves_nothing_behind(tmp_path: Path, served: bytes) -> None:
    farm, _ = make_farm(tmp_path, artifact_routes(served=served))
    with pytest.raises(DigestMismatch) as info:
        farm.fetch(MODEL, H100, dest=tmp_path / "out")
    assert digest_of_bytes(PLAN) in str(info.value)
    assert files_under(tmp_path / "cache") == []
    assert not (tmp_path / "out").exists()


def test_fetch_refuses_a_malformed_digest(tmp_path: Path) -> None:
    bad = engine_json(digest="sha256:../../etc/passwd")
    farm, _ = make_farm(tmp_path, {("GET", "/v1/engines/resolve"): httpx.Response(
        200, json={"engine": bad, "match_class": "exact", "reason": "r"})})
    with pytest.raises(DigestMismatch):
        farm.fetch(MODEL, H100)
    assert files_under(tmp_path / "cache") == []


def test_fetch_no_engine_raises_no_compatible_engine(tmp_path: Path) -> None:
    farm, _ = make_farm(tmp_path, {("GET", "/v1/engines/resolve"): httpx.Response(
        404, json={"code": "no_compatible_engine", "message": "no engine for tensorrt 8.6.0 on h100-80gb-hbm3"})})
    with pytest.raises(NoCompatibleEngine) as info:
        farm.fetch(MODEL, H100)
    assert info.value.code == "no_compatible_engine" and info.value.status == 404


def test_fetch_builds_if_missing(tmp_path: Path) -> None:
    answers = iter([httpx.Response(404, json={"code": "no_compatible_engine", "message": "none"}), resolve_ok()])
    routes = artifact_routes()
    routes.update({
        ("GET", "/v1/engines/resolve"): lambda r: next(answers),
        ("POST", "/v1/builds"): httpx.Response(201, json=build_json("queued")),
        ("GET", "/v1/builds/b-1"): httpx.Response(200, json=build_json("succeeded", engine_id="eng-1")),
    })
    farm, fake = make_farm(tmp_path, routes)
    assert farm.fetch(MODEL, H100, build_if_missing=True).read_bytes() == PLAN
    assert json.loads(fake.requests[1].read())["target"] == "tensorrt==8.6.0@h100-80gb-hbm3"
    assert fake.paths() == ["GET /v1/engines/resolve", "POST /v1/builds", "GET /v1/builds/b-1/events",
                            "GET /v1/builds/b-1", "GET /v1/engines/resolve", "GET /v1/engines/eng-1/artifact"]


# -------------------------------------------------------------------------------------- redirects


def test_redirect_to_another_origin_drops_the_token(tmp_path: Path) -> None:
    presigned = "https://bucket.s3.example.com/blobs/sha256/ab/abc?X-Amz-Signature=sig"
    farm, fake = make_farm(tmp_path, {
        ("GET", "/v1/engines/resolve"): resolve_ok(),
        ("GET", "/v1/engines/eng-1/artifact"): httpx.Response(307, headers={"location": presigned}),
        ("GET", "bucket.s3.example.com/blobs/sha256/ab/abc"): httpx.Response(200, content=PLAN),
    })
    assert farm.fetch(MODEL, H100).read_bytes() == PLAN
    farm_req, s3_req = fake.requests[1], fake.requests[2]
    assert farm_req.headers["authorization"] == f"Bearer {TOKEN}"
    assert s3_req.url.host == "bucket.s3.example.com" and s3_req.url.params["X-Amz-Signature"] == "sig"
    assert "authorization" not in s3_req.headers


def test_same_origin_redirect_keeps_the_token(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, {
        ("GET", "/v1/engines/resolve"): resolve_ok(),
        ("GET", "/v1/engines/eng-1/artifact"): httpx.Response(302, headers={"location": "/v1/blobs/abc"}),
        ("GET", "/v1/blobs/abc"): httpx.Response(200, content=PLAN),
    })
    farm.fetch(MODEL, H100)
    assert fake.requests[2].url == httpx.URL(f"{URL}/v1/blobs/abc")
    assert fake.requests[2].headers["authorization"] == f"Bearer {TOKEN}"


def test_presigned_url_error_is_a_remote_error(tmp_path: Path) -> None:
    farm, _ = make_farm(tmp_path, {
        ("GET", "/v1/engines/resolve"): resolve_ok(),
        ("GET", "/v1/engines/eng-1/artifact"): httpx.Response(307, headers={"location": "https://s3.example/x?sig=1"}),
        ("GET", "s3.example/x"): httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>"),
    })
    with pytest.raises(RemoteError) as info:
        farm.fetch(MODEL, H100)
    assert info.value.status == 403 and "AccessDenied" in info.value.message
    assert files_under(tmp_path / "cache") == []


def test_redirect_loop_is_bounded(tmp_path: Path) -> None:
    farm, fake = make_farm(tmp_path, {
        ("GET", "/v1/engines/resolve"): resolve_ok(),
        ("GET", "/v1/engines/eng-1/artifact"): httpx.Response(302, headers={"location": "/v1/engines/eng-1/artifact"}),
    })
    with pytest.raises(RemoteError, match="redirects"):
        farm.fetch(MODEL, H100)
    assert len(fake.requests) < 10
    assert files_under(tmp_path / "cache") == []


def test_auto_runtime_is_detected_once_and_local_hits_stay_offline(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import registry.runtime as runtime_mod

    calls: list[object] = []

    def detect(toolchain: object = None, probes: object = None) -> Runtime:
        calls.append(toolchain)
        return H100

    monkeypatch.setattr(runtime_mod, "detect_runtime", detect)
    farm, fake = make_farm(tmp_path, artifact_routes())
    first = farm.fetch(MODEL)
    assert farm.fetch(MODEL, "auto") == first and farm.cached(MODEL) == first
    assert calls == [None] and len(fake.requests) == 2
    assert dict(fake.requests[0].url.params)["toolchain"] == "tensorrt"


def test_a_path_that_is_not_onnx_is_invalid_model(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    onnx_path, _ = write_model(tmp_path)
    farm, fake = make_farm(tmp_path, {})
    with pytest.raises(InvalidModel, match="is not an ONNX model"):
        farm.fetch(onnx_path, H100)
    assert fake.requests == []


@pytest.mark.parametrize("filename, name_ends", [
    ("model.plan", ".plan"), ("model.ort", ".ort"), ("model", ""),
    ("x.pl/an", ""), ("evil.$(rm)", ""), ("model.plan.with-a-very-long-suffix", ""),
])
def test_the_cache_keeps_a_safe_engine_suffix(tmp_path: Path, filename: str, name_ends: str) -> None:
    farm, _ = make_farm(tmp_path, {})
    engine = EngineInfo.model_validate(engine_json(filename=filename))
    path = farm.engine_path(engine)
    assert path.name == engine.digest.removeprefix("sha256:") + name_ends
    assert path.parent == farm.cache_dir / "engines" / "sha256" / engine.digest[7:9]
