"""A model upload into an S3-backed farm against a raw boto3 upload of the same bytes: one `trtfarm api`
(SQLite, blobs in moto's S3 server over HTTP, in this process), a model of MODEL_MB (`tests.models.matmul_model`)
POSTed by httpx from a file; then boto3's `upload_file` of the same file to the same server. Reports both wall
times, their ratio, and the API's peak memory growth during the upload (VmHWM after − VmRSS before).

    .venv/bin/python bench/upload.py --model-mb 100 --json /tmp/upload.json
    .venv/bin/python bench/upload.py --model-mb 4          # the CI smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import serve  # noqa: E402
from tests.models import matmul_model  # noqa: E402
from tests.s3server import AWS_TEST_ENV, start_moto_server  # noqa: E402


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-mb", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ.update(AWS_TEST_ENV)
    import boto3

    endpoint, stop = start_moto_server()
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="farm")
        with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
            k = max(8, int((args.model_mb * 2**20 / 4) ** 0.5))
            model = matmul_model(Path(tmp) / "m" / "m.onnx", k=k, n=k)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}, "TRTFARM_HOME": tmp,
                   "TRTFARM_BLOB_URL": "s3://farm/blobs", "TRTFARM_S3_ENDPOINT_URL": endpoint,
                   "TRTFARM_S3_REGION": "us-east-1"}
            from registry.db.migrate import upgrade

            upgrade(f"sqlite:///{tmp}/farm.db")
            api, url = serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)
            try:
                httpx.get(url + "/readyz")
                before = memory_kib(api.pid, "VmRSS")
                started = time.perf_counter()
                with open(model, "rb") as f:
                    answer = httpx.post(url + "/v1/models", files={"file": ("m.onnx", f)}, timeout=600)
                farm_s = time.perf_counter() - started
                assert answer.status_code == 201, answer.text
                peak = memory_kib(api.pid, "VmHWM")
            finally:
                api.terminate()
                api.wait(30)
            started = time.perf_counter()
            s3.upload_file(str(model), "farm", "raw/m.onnx")
            raw_s = time.perf_counter() - started
    finally:
        stop()
    report = {"weights_bytes": k * k * 4, "farm_upload_s": round(farm_s, 3),
              "boto3_upload_file_s": round(raw_s, 3), "farm_over_boto3": round(farm_s / raw_s, 2),
              "api_memory_growth_mib": round((peak - before) / 1024, 1)}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
