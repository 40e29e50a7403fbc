"""A model upload into an S3-backed farm against a raw boto3 upload of the same bytes: one `trtfarm api`
(SQLite, blobs in moto's S3 server over HTTP, in this process), a model of MODEL_MB (`tests.models.matmul_model`)
POSTed by httpx from a file, as the SDK sends it (the part states its digest in a Content-Digest header: the
API sends the file on to S3 while it arrives; the client's sha256 of the file is timed apart, the SDK has it
from its HEAD), then a plain POST of another model of the same size (no Content-Digest), then boto3's
`upload_file` of the first file to the same server; REPEAT such rounds, new models each time (same size,
another doc string). Reports the medians of the wall times, the ratios to boto3 (and each round's), and the
API's peak memory growth during an upload (VmHWM after − VmRSS before, the peak reset through
/proc/PID/clear_refs just before; the largest of the runs). The API takes one small model first, as a
running registry has (its intake fork server has imported onnx, its S3 connections are open): the figures
are those of an upload, not of the API's start.

    .venv/bin/python bench/upload.py --model-mb 100 --json /tmp/upload.json
    .venv/bin/python bench/upload.py --model-mb 4 --repeat 1   # the CI smoke
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import serve  # noqa: E402
from tests.models import convnet, matmul_model  # noqa: E402
from tests.s3server import AWS_TEST_ENV, start_moto_server  # noqa: E402


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def models(folder: Path, model_mb: int, count: int) -> list[Path]:
    """`count` models of about MODEL_MB that differ only in their doc string (each a new blob)."""
    import onnx

    k = max(8, int((model_mb * 2**20 / 4) ** 0.5))
    first = matmul_model(folder / "m0" / "m.onnx", k=k, n=k)
    paths = [first]
    for i in range(1, count):
        proto = onnx.load(str(first))
        proto.doc_string = f"copy {i}"
        paths.append(folder / f"m{i}" / "m.onnx")
        paths[-1].parent.mkdir()
        onnx.save_model(proto, str(paths[-1]))
    return paths


def farm_upload(api: subprocess.Popen, url: str, model: Path, digest: str | None) -> tuple[float, float]:
    """(seconds, the API's peak memory growth in MiB) of one POST /v1/models; with `digest`, the file part
    states it in a Content-Digest header, as the SDK does."""
    Path(f"/proc/{api.pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    before = memory_kib(api.pid, "VmRSS")
    stated = None if digest is None else base64.b64encode(bytes.fromhex(digest)).decode()
    headers = {} if stated is None else {"Content-Digest": f"sha-256=:{stated}:"}
    started = time.perf_counter()
    with open(model, "rb") as f:
        answer = httpx.post(url + "/v1/models", files={"file": ("m.onnx", f, "application/octet-stream", headers)},
                            timeout=600)
    took = time.perf_counter() - started
    assert answer.status_code == 201, answer.text
    return took, (memory_kib(api.pid, "VmHWM") - before) / 1024


def one_round(api: subprocess.Popen, url: str, s3: object, sdk_like: Path, plain: Path) -> dict:
    """The farm upload the SDK makes (its digest hashed first, as the SDK does for its HEAD; timed apart),
    a plain one of another model (no Content-Digest), and boto3's upload_file of the first model."""
    started = time.perf_counter()
    digest = hashlib.sha256(sdk_like.read_bytes()).hexdigest()
    hashed = time.perf_counter() - started
    farm_s, growth = farm_upload(api, url, sdk_like, digest)
    plain_s, plain_growth = farm_upload(api, url, plain, None)
    started = time.perf_counter()
    s3.upload_file(str(sdk_like), "farm", f"raw/{digest}")  # type: ignore[attr-defined]
    return {"farm_s": round(farm_s, 3), "client_sha256_s": round(hashed, 3), "farm_plain_s": round(plain_s, 3),
            "boto3_s": round(time.perf_counter() - started, 3), "api_memory_growth_mib": round(growth, 1),
            "plain_api_memory_growth_mib": round(plain_growth, 1)}


def summary(runs: list[dict], model_bytes: int) -> dict:
    median = {k: round(statistics.median(r[k] for r in runs), 3)
              for k in ("farm_s", "farm_plain_s", "client_sha256_s", "boto3_s")}
    return {"model_bytes": model_bytes, "runs": runs, "farm_upload_s": median["farm_s"],
            "farm_plain_upload_s": median["farm_plain_s"], "client_sha256_s": median["client_sha256_s"],
            "boto3_upload_file_s": median["boto3_s"],
            "farm_over_boto3": round(median["farm_s"] / median["boto3_s"], 2),
            "farm_over_boto3_per_pair": [round(r["farm_s"] / r["boto3_s"], 2) for r in runs],
            "farm_with_client_hash_over_boto3": round((median["farm_s"] + median["client_sha256_s"])
                                                      / median["boto3_s"], 2),
            "farm_plain_over_boto3": round(median["farm_plain_s"] / median["boto3_s"], 2),
            "api_memory_growth_mib": max(max(r["api_memory_growth_mib"], r["plain_api_memory_growth_mib"])
                                         for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-mb", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="rounds (two farm uploads and boto3), new models each")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.update(AWS_TEST_ENV)
    import boto3

    endpoint, stop = start_moto_server()
    runs = []
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="farm")
        with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
            paths = models(Path(tmp), args.model_mb, 2 * args.repeat)
            model_bytes = paths[0].stat().st_size
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}, "TRTFARM_HOME": tmp,
                   "TRTFARM_BLOB_URL": "s3://farm/blobs", "TRTFARM_S3_ENDPOINT_URL": endpoint,
                   "TRTFARM_S3_REGION": "us-east-1"}
            from registry.db.migrate import upgrade

            upgrade(f"sqlite:///{tmp}/farm.db")
            api, url = serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)
            try:
                httpx.get(url + "/readyz")
                small = convnet(Path(tmp) / "c.onnx").read_bytes()
                warm = httpx.post(url + "/v1/models", files={"file": ("c.onnx", small)}, timeout=600)
                assert warm.status_code == 201, warm.text
                runs = [one_round(api, url, s3, paths[2 * i], paths[2 * i + 1]) for i in range(args.repeat)]
            finally:
                api.terminate()
                api.wait(30)
    finally:
        stop()
    report = summary(runs, model_bytes)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
