"""Fetch on an inference host: the SDK's cache hits and a cold download, against a real API process
(`trtfarm api`, SQLite, a blob folder) holding a model of MODEL_MB and an engine of ENGINE_MB.

1. cold fetch by model id (resolve + the blob copied from the farm's disk, the SDK on the API's host, or
   streamed by the API over HTTP + sha256 + rename) vs `shutil.copyfile` of the same blob file into a new
   file (the floor of a folder store on this disk), in interleaved pairs; then cold fetches of the same
   blob with its verified-stamp removed (over HTTP the API hashes it as it streams);
2. a cache hit by model id, in process (µs per call);
3. a cache hit by model file path: the first call hashes (and parses) the model, a repeat finds its
   digest by path, size, mtime and inode;
4. `trtfarm fetch MODEL_ID` on a hit: the wall time of the command, imports included.

    .venv/bin/python bench/fetch.py --model-mb 100 --engine-mb 100 --json /tmp/fetch.json
    .venv/bin/python bench/fetch.py --model-mb 2 --engine-mb 2 --hits 20     # the CI smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTLE_S = 3.0
sys.path.insert(0, str(REPO))

from bench.serving import serve  # noqa: E402
from tests.models import matmul_model  # noqa: E402

TARGET = "onnxruntime==1.32.0@x86_64-avx2"


def seed(home: Path, model_mb: int, engine_mb: int, **blob_settings: str) -> tuple[Path, str, str, dict]:
    """A model of about model_mb (x [N,k] @ W [k,k]) and an engine of engine_mb random bytes, written through
    the services as a worker would; (model path, model id, engine digest, build spec)."""
    from registry.db.migrate import upgrade
    from registry.db.session import Database
    from registry.schemas import BuildRequest
    from registry.services import attempts, builds, models
    from registry.services.attempts import EngineRecord, Outcome
    from registry.settings import Settings
    from registry.status import BuildStatus
    from registry.stores import FarmStores

    settings = Settings(home=home, **blob_settings)
    upgrade(settings.resolved_database_url())
    db, blobs = Database(settings.resolved_database_url()), FarmStores(settings).blobs
    k = max(8, int((model_mb * 2**20 / 4) ** 0.5))
    path = matmul_model(home / "model" / "m.onnx", k=k, n=k)
    past = time.time() - 3600  # an old file, as a deployed model is
    os.utime(path, (past, past))
    model, _ = models.register_model(db, blobs, path.parent, "m.onnx")
    spec = {"profiles": [{"x": {"min": [1, k], "opt": [2, k], "max": [4, k]}}]}
    build, _ = builds.submit(db, settings, BuildRequest(model=model.id, target=TARGET, spec=spec))
    claim = attempts.claim(db, build.id, "bench", 60)
    blob = blobs.put_bytes(os.urandom(engine_mb << 20))
    record = EngineRecord(version="1.32.0", digest=blob.digest, size=blob.size, filename="m.ort", metadata={},
                          validation={"passed": True, "cases": []}, latency_p50_ms=0.3, latency_p99_ms=0.4)
    attempts.finish(db, claim, Outcome(BuildStatus.SUCCEEDED, engine=record))
    db.engine.dispose()
    return path, model.id, blob.digest, spec


def timed(call, repeat: int) -> list[float]:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def s3_cold_fetch(engine_mb: int) -> dict:
    """A cold fetch from an S3-backed farm (moto's server over HTTP; the API answers with a presigned URL)
    against boto3's `download_file` of the same object."""
    import boto3

    from registry.client import Farm
    from tests.s3server import AWS_TEST_ENV, start_moto_server

    os.environ.update(AWS_TEST_ENV)
    endpoint, stop_s3 = start_moto_server()
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="farm")
        with tempfile.TemporaryDirectory(prefix="bench-fetch-s3-") as tmp:
            home = Path(tmp)
            s3 = {"blob_url": "s3://farm/blobs", "s3_endpoint_url": endpoint, "s3_region": "us-east-1"}
            _, model_id, digest, spec = seed(home / "farm", 1, engine_mb, **s3)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")},
                   "TRTFARM_HOME": str(home / "farm"), **{f"TRTFARM_{k.upper()}": v for k, v in s3.items()}}
            api, url = serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)
            try:
                colds = []
                for i in range(3):
                    with Farm(url, cache_dir=home / f"cold{i}") as sdk:
                        colds += timed(lambda sdk=sdk: sdk.fetch(model_id, TARGET, spec), 1)
            finally:
                api.terminate()
                api.wait(30)
            key = f"blobs/blobs/sha256/{digest[7:9]}/{digest[7:]}"
            client = boto3.client("s3", endpoint_url=endpoint)
            raw = timed(lambda: client.download_file("farm", key, str(home / "raw")), 3)
    finally:
        stop_s3()
    return {"s3_cold_fetch_s": round(statistics.median(colds), 3),
            "boto3_download_file_s": round(statistics.median(raw), 3),
            "s3_cold_over_boto3": round(statistics.median(colds) / statistics.median(raw), 2)}


def folder_cold_fetch(url: str, home: Path, digest: str, model_id: str, spec: dict, runs: int,
                      local_reads: bool) -> dict:
    """Cold fetches (a new cache each) against `shutil.copyfile` of the blob file into a new file, in interleaved
    pairs so that both see the same load, both files removed after each pair (the one never writes back the
    other's dirty pages); then with the blob's verified-stamp removed before each fetch. `local_reads`: the SDK
    copies the blob from the farm's disk (a client on the API's host), else the API streams it over HTTP."""
    from registry.client import Farm

    store = home / "farm" / "blobs"
    blob = store / "blobs" / "sha256" / digest[7:9] / digest[7:]
    stamp = store / "verified" / "sha256" / digest[7:9] / digest[7:]
    copies, colds, unstamped = [], [], []
    for i in range(runs):
        copies += timed(lambda i=i: shutil.copyfile(blob, home / f"copy{i}"), 1)
        with Farm(url, cache_dir=home / f"cold{i}", local_reads=local_reads) as sdk:
            colds += timed(lambda sdk=sdk: sdk.fetch(model_id, TARGET, spec), 1)
        (home / f"copy{i}").unlink()
        shutil.rmtree(home / f"cold{i}")
    for i in range(max(1, runs // 2)):
        stamp.unlink(missing_ok=True)
        with Farm(url, cache_dir=home / f"unstamped{i}", local_reads=local_reads) as sdk:
            unstamped += timed(lambda sdk=sdk: sdk.fetch(model_id, TARGET, spec), 1)
        shutil.rmtree(home / f"unstamped{i}")
    copy, cold = statistics.median(copies), statistics.median(colds)
    how = "" if local_reads else "http_"
    return {f"{how}cold_fetch_s": round(cold, 3), f"{how}copyfile_s": round(copy, 3),
            f"{how}cold_over_copyfile": round(cold / copy, 2),
            f"{how}cold_fetch_runs_s": [round(t, 3) for t in colds],
            f"{how}copyfile_runs_s": [round(t, 3) for t in copies],
            f"{how}cold_fetch_unstamped_s": round(statistics.median(unstamped), 3),
            f"{how}unstamped_over_copyfile": round(statistics.median(unstamped) / copy, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-mb", type=int, default=100)
    parser.add_argument("--engine-mb", type=int, default=100)
    parser.add_argument("--hits", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    from registry.client import Farm

    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        home = Path(tmp)
        path, model_id, digest, spec = seed(home / "farm", args.model_mb, args.engine_mb)
        model_bytes = path.stat().st_size
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")},
               "TRTFARM_HOME": str(home / "farm")}
        api, url = serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)
        try:
            time.sleep(SETTLE_S)  # the API's start-up work (its intake fork server imports onnx) ends first
            cold = folder_cold_fetch(url, home, digest, model_id, spec, args.cold_runs, local_reads=True)
            cold |= folder_cold_fetch(url, home, digest, model_id, spec, args.cold_runs, local_reads=False)
            sdk = Farm(url, cache_dir=home / "cache")
            sdk.fetch(model_id, TARGET, spec)
            by_id = timed(lambda: sdk.fetch(model_id, TARGET, spec), args.hits)
            first_by_path = timed(lambda: sdk.fetch(path, TARGET, spec), 1)[0]
            by_path = timed(lambda: sdk.fetch(path, TARGET, spec), max(5, args.hits // 100))
            cli_env = {**env, "TRTFARM_URL": url, "TRTFARM_CACHE": str(home / "cache")}
            cli = [sys.executable, "-m", "registry.cli", "fetch", model_id, "--runtime", TARGET,
                   "--spec", json.dumps(spec)]
            walls = timed(lambda: subprocess.run(cli, env=cli_env, cwd=REPO, check=True, capture_output=True), 5)
            sdk.close()
        finally:
            api.terminate()
            api.wait(30)
    report = {
        "model_bytes": model_bytes, "engine_mb": args.engine_mb, **s3_cold_fetch(args.engine_mb), **cold,
        "hit_by_id_us": round(statistics.median(by_id) * 1e6, 1),
        "first_fetch_by_path_ms": round(first_by_path * 1000, 1),
        "hit_by_path_ms": round(statistics.median(by_path) * 1000, 3),
        "cli_fetch_hit_wall_s": round(statistics.median(walls), 3),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
