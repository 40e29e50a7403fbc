"""What the farm adds to a build: N tiny ONNX Runtime builds (distinct keys) through a farm of real processes
(`trtfarm api` with its dispatcher, W `trtfarm worker`s, PostgreSQL, a private redis-server), against the
runner's build command called directly on the same model and spec.

    scripts/services && .venv/bin/python bench/schedule.py --builds 100 --workers 2 --json /tmp/schedule.json
    .venv/bin/python bench/schedule.py --builds 6 --direct 2          # the CI smoke

Reports the farm's wall time from the first submit to the last success, its cost per build on one worker
(wall × W / N), the runner's build command alone (median of --direct runs), and the difference: what
scheduling, validation, benchmark and bookkeeping add to each build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import scratch_database, serve, stop  # noqa: E402
from tests.models import convnet  # noqa: E402
from tests.net import free_port  # noqa: E402
from workers.toolchains import runner_argv  # noqa: E402


def spec(i: int) -> dict:
    return {"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [2 + i, 3, 16, 16]}}]}


def direct(model: Path, runs: int, tmp: Path) -> float:
    """Median wall of the runner's build command alone (a fresh process each time, as a build gets)."""
    from registry.keys import spec_canonical
    from registry.spec import parse_spec

    walls = []
    for i in range(runs):
        spec_path = tmp / f"spec{i}.json"
        spec_path.write_text(json.dumps(spec_canonical(parse_spec(spec(i)))))
        cmd = [*runner_argv("onnxruntime", sys.executable), "build", "--model", str(model), "--spec", str(spec_path),
               "--out", str(tmp / f"e{i}.ort"), "--result", str(tmp / f"r{i}.json")]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def farm_run(env: dict, model: Path, builds: int, workers: int, tmp: Path) -> dict:
    procs = []
    try:
        api, api_url = serve(["-m", "registry.cli", "api"], env)
        procs.append(api)
        for w in range(workers):
            with open(tmp / f"worker{w}.log", "wb") as log:
                procs.append(subprocess.Popen([sys.executable, "-m", "registry.cli", "worker"], cwd=REPO, stdout=log,
                                              stderr=subprocess.STDOUT, env={**env, "TRTFARM_WORKER_NAME": f"w{w}"}))
        with httpx.Client(base_url=api_url, timeout=60) as http:
            while len([w for w in http.get("/v1/workers").json() if w["live"]]) < workers:
                time.sleep(0.2)
            time.sleep(1)  # consumers attached
            from registry.client import Farm

            with Farm(api_url, cache_dir=tmp / "sdk") as sdk:
                model_id = sdk.upload(model).id
                started = time.monotonic()
                with ThreadPoolExecutor(8) as pool:  # submitted at once, as a matrix or rollout would
                    ids = list(pool.map(lambda i: sdk.submit(model_id, "onnxruntime", spec(i), wait=False).id,
                                        range(builds)))
                submit_s = time.monotonic() - started
                done = {}
                while len(done) < builds:
                    for b in http.get("/v1/builds", params={"limit": 500}).json()["items"]:
                        if b["id"] in ids and b["status"] in ("succeeded", "failed", "cancelled"):
                            done[b["id"]] = b
                    time.sleep(0.05)
                wall = time.monotonic() - started
        failed = [b for b in done.values() if b["status"] != "succeeded"]
        phases = {k for b in done.values() for k, v in (b["timings"] or {}).items() if isinstance(v, (int, float))}
        medians = {k: round(statistics.median(b["timings"][k] for b in done.values() if k in (b["timings"] or {})), 3)
                   for k in sorted(phases)}
        return {"wall_s": round(wall, 2), "submit_s": round(submit_s, 2), "failed": len(failed),
                "median_recorded_timings_s": medians}
    finally:
        stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--builds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--direct", type=int, default=10)
    parser.add_argument("--cold-runners", action="store_true",
                        help="a fresh runner process per command (TRTFARM_WARM_RUNNERS=false), as before warm runners")
    parser.add_argument("--json")
    args = parser.parse_args()
    port = free_port()
    broker = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        with scratch_database() as (_, url), tempfile.TemporaryDirectory(prefix="bench-schedule-") as tmp_name:
            tmp = Path(tmp_name)
            from registry.db.migrate import upgrade

            upgrade(url)
            model = convnet(tmp / "tiny.onnx", channels=4, layers=1)
            runner_s = direct(model, args.direct, tmp)
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}, "TRTFARM_HOME": tmp_name,
                   "TRTFARM_DATABASE_URL": url, "TRTFARM_BLOB_URL": f"file://{tmp}/blobs",
                   "TRTFARM_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                   "TRTFARM_WARM_RUNNERS": "false" if args.cold_runners else "true"}
            run = farm_run(env, model, args.builds, args.workers, tmp)
    finally:
        stop([broker])
    per_build = run["wall_s"] * args.workers / args.builds
    report = {"builds": args.builds, "workers": args.workers, "warm_runners": not args.cold_runners,
              **run, "per_build_on_one_worker_s": round(per_build, 3),
              "runner_build_alone_s": round(runner_s, 3), "added_per_build_ms": round((per_build - runner_s) * 1000)}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
