"""Submit → build → registry → fetch in production mode: PostgreSQL, Redis (Celery), S3 (moto over HTTP),
API and worker as real processes, a real ONNX Runtime build."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from registry.db.tables import Build, Engine
from registry.errors import NoCompatibleEngine
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_submit_build_registry_fetch(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    model = convnet(tmp_path / "convnet.onnx", channels=8, layers=2, seed=11)
    sdk = farm.sdk
    seen: list[str] = []

    build = sdk.submit(model, "onnxruntime", batch_profile(), progress=lambda b: seen.append(b.status),
                       poll_interval=0.3, timeout=120)

    # the build: a partial target filled from the fleet, one attempt, on our worker, with a stored log
    assert build.status == "succeeded", build
    assert build.target == ort_runtime and build.attempt == 1
    assert build.worker == farm.workers[0].env["TRTFARM_WORKER_NAME"]
    assert build.queue == f"build.{ort_runtime.replace('==', '-').replace('@', '.')}"
    assert seen[-1] == "succeeded" and build.engine_id
    assert "succeeded" in sdk.log(build.id)

    # the engine row: validated against the original model, benchmarked
    engine = sdk.engine(build.engine_id)
    assert engine.toolchain == "onnxruntime" and f"onnxruntime=={engine.version}@{engine.device}" == ort_runtime
    assert engine.validation_passed is True and engine.validation["max_abs_error"] < 1e-3
    assert engine.latency_p50_ms is not None and engine.latency_p50_ms > 0
    assert engine.filename.endswith(".ort")
    with farm.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Engine)) == 1
        assert s.get(Build, build.id).status == "succeeded"

    # the blob: content-addressed in S3 under <prefix>/blobs/sha256/ab/<hex>, sha256 in its metadata
    raw = farm.s3.client()
    key = farm.blob_key(engine.digest)
    head = raw.head_object(Bucket=farm.s3.bucket, Key=key)
    assert head["ContentLength"] == engine.size
    assert head["Metadata"]["sha256"] == engine.digest.removeprefix("sha256:")
    stored = raw.get_object(Bucket=farm.s3.bucket, Key=key)["Body"].read()
    assert sha256(stored) == engine.digest
    # the model's file and the build log are blobs too
    model_key = farm.blob_key(sha256(model.read_bytes()))
    assert model_key in farm.s3_keys()

    # the artifact endpoint redirects (307) to a presigned URL of that object, which serves the bytes
    with farm.http() as http:
        r = http.get(f"/v1/engines/{engine.id}/artifact")
        assert r.status_code == 307, r.text
        assert r.headers["etag"] == f'"{engine.digest}"'
        location = r.headers["location"]
        assert location.startswith(farm.s3.endpoint)
        assert urlsplit(location).path.endswith(engine.digest.removeprefix("sha256:"))
        assert "Signature" in location
        assert httpx.get(location).content == stored
        head = http.head(f"/v1/engines/{engine.id}/artifact")  # answered by the API: the URL is signed for GET
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(stored))

    # resolve: the exact engine for this runtime
    found = sdk.resolve(build.model, ort_runtime)
    assert found.engine.id == engine.id and found.match_class == "exact"

    # fetch: downloaded through the presigned URL, verified, content-addressed in the SDK cache
    path = sdk.fetch(model, ort_runtime, batch_profile())
    assert path == sdk.cache_dir / "engines" / "sha256" / engine.digest[7:9] / f"{engine.digest[7:]}.ort"
    assert sha256(path.read_bytes()) == engine.digest
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".part")]

    # the engine runs and matches the original model
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    got = ort.InferenceSession(str(path),  # .ort: by its suffix
                               providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    # a second fetch is a local hit: with the API stopped, it still answers, from the same file
    farm.stop_api()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the farm really is gone
        httpx.get(f"{farm.url}/healthz", timeout=2)
    assert sdk.fetch(model, ort_runtime, batch_profile()) == path
    assert sdk.cached(model, ort_runtime, batch_profile()) == path


def test_resolve_answers_what_exists(farm: RunningFarm, ort_runtime: str, tmp_path: Path) -> None:
    """No compatible engine → 404 no_compatible_engine listing the engines that exist and why not;
    a shape outside every profile → 422 naming the profiles."""
    model = convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=12)
    sdk = farm.client()
    build = sdk.submit(model, ort_runtime, batch_profile(), poll_interval=0.3, timeout=120)
    kind, _, rest = ort_runtime.partition("==")
    version, _, cpu = rest.partition("@")

    with farm.http() as http:
        other = {"model": build.model, "toolchain": "onnxruntime", "version": "1.0.0", "cpu": cpu}
        r = http.get("/v1/engines/resolve", params=other)
        assert r.status_code == 404, r.text
        body = r.json()
        assert body["code"] == "no_compatible_engine"
        assert build.engine_id in body["message"]
        assert [rej["engine_id"] for rej in body["details"]["rejections"]] == [build.engine_id]
        assert body["details"]["suggested_target"] == f"onnxruntime==1.0.0@{cpu}"

        r = http.get("/v1/engines/resolve", params={**other, "version": version, "shape": "input:16x3x16x16"})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_input" and "outside every profile" in r.json()["message"]

        ok = http.get("/v1/engines/resolve", params={**other, "version": version, "shape": "input:4x3x16x16"})
        assert ok.status_code == 200 and ok.json()["engine"]["id"] == build.engine_id

    with pytest.raises(NoCompatibleEngine) as exc:
        sdk.fetch(model, f"onnxruntime==1.0.0@{cpu}")
    assert exc.value.status == 404 and exc.value.code == "no_compatible_engine"
