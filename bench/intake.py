"""Model intake under hostile and heavy uploads, against a real API process (`trtfarm api`, SQLite, a blob
folder) on this machine:

1. a protobuf bomb (8 MiB of empty NodeProtos) vs a small real model: wall time of each POST /v1/models and
   the API's peak RSS growth (VmHWM) across the bomb;
2. /healthz latency while idle (baseline) and while a 600 MB upload streams in (sent by curl, another
   process): p50 and max, and their ratio.

    .venv/bin/python bench/intake.py [--upload-mb 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import serve  # noqa: E402
from tests.models import convnet, protobuf_bomb  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def start_api(home: Path) -> tuple[subprocess.Popen, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}, "TRTFARM_HOME": str(home)}
    subprocess.run([sys.executable, "-m", "registry.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    return serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)


def timed_upload(url: str, name: str, data: bytes) -> tuple[float, int]:
    started = time.perf_counter()
    r = httpx.post(f"{url}/v1/models", files={"file": (name, data)}, timeout=600)
    return time.perf_counter() - started, r.status_code


def healthz_latencies(url: str, seconds: float, stop: threading.Event | None = None) -> list[float]:
    samples, end = [], time.monotonic() + seconds
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < end and not (stop and stop.is_set()):
            t = time.perf_counter()
            http.get(f"{url}/healthz")
            samples.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    return samples


def summary(samples: list[float]) -> dict:
    return {"n": len(samples), "p50_ms": round(statistics.median(samples), 2), "max_ms": round(max(samples), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upload-mb", type=int, default=600)
    parser.add_argument("--json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as tmp:
        proc, url = start_api(Path(tmp) / "farm")
        try:
            small = convnet(Path(tmp) / "small.onnx", channels=16, layers=3).read_bytes()
            small_s, small_status = timed_upload(url, "small.onnx", small)
            before = peak_rss_mib(proc.pid)
            bomb = protobuf_bomb()
            bomb_s, bomb_status = timed_upload(url, "bomb.onnx", bomb)
            growth = peak_rss_mib(proc.pid) - before
            idle = healthz_latencies(url, 3)
            big = Path(tmp) / "big.onnx"  # not a model: the whole upload path runs (spool, copy, scan), then 422
            with open(big, "wb") as f:
                for _ in range(args.upload_mb):
                    f.write(os.urandom(1 << 20))
            done = threading.Event()
            result: dict = {}

            def upload() -> None:  # curl in its own process: the client must not share this process's GIL
                started = time.perf_counter()
                out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-F",
                                      f"file=@{big}", f"{url}/v1/models"], capture_output=True, text=True)
                result["seconds"], result["status"] = time.perf_counter() - started, int(out.stdout or 0)
                done.set()

            worker = threading.Thread(target=upload)
            worker.start()
            busy = healthz_latencies(url, 600, stop=done)
            worker.join()
        finally:
            proc.terminate()
            proc.wait(30)
    report = {
        "small_model": {"seconds": round(small_s, 3), "status": small_status, "bytes": len(small)},
        "bomb": {"seconds": round(bomb_s, 3), "status": bomb_status, "bytes": len(bomb),
                 "api_peak_rss_growth_mib": round(growth, 1), "seconds_over_small_model": round(bomb_s / small_s, 2)},
        "healthz_idle": summary(idle),
        "healthz_during_upload": {**summary(busy), "upload_mb": args.upload_mb,
                                  "upload_seconds": round(result["seconds"], 2), "upload_status": result["status"]},
    }
    report["healthz_p50_ratio_busy_over_idle"] = round(report["healthz_during_upload"]["p50_ms"] /
                                                       report["healthz_idle"]["p50_ms"], 2)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
