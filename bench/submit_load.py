"""Duplicate submits under load, and exactly-once under a stampede: one `trtfarm api` on PostgreSQL (auth
required, a submit key), seeded like bench/registry_load.py.

1. wrk, 100 connections, S seconds: every request POSTs the same build request (the build exists: each
   answer is 200 with it), beside a bare FastAPI POST route answering a JSON body of the same size
   (bench/bare_app.py) under the same load; the ratio of requests/s. The same load once more against an
   API with its read cache off (every duplicate submit reads the database).
2. 1,000 concurrent identical submits of a new build request (httpx, 1,000 connections at once): exactly
   one 201, 999 × 200 with the same id, one build row with that key.

    scripts/services && .venv/bin/python bench/submit_load.py --seconds 30 --json /tmp/submit-load.json
    .venv/bin/python bench/submit_load.py --seconds 2 --stampede 100     # the CI smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.registry_load import load, seed  # noqa: E402
from bench.serving import PG, scratch_database, serve, stop  # noqa: E402


async def stampede(url: str, token: str, request: dict, count: int) -> dict:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        answers = await asyncio.gather(*(client.post("/v1/builds", json=request) for _ in range(count)),
                                       return_exceptions=True)
    failed = [repr(a) for a in answers if isinstance(a, Exception)]
    ok = [a for a in answers if not isinstance(a, Exception)]
    return {"submits": count, "statuses": dict(Counter(a.status_code for a in ok)), "transport_errors": len(failed),
            "build_ids": len({a.json()["id"] for a in ok if a.status_code in (200, 201)})}


def builds_with_key(dbname: str, build_id: str) -> int:
    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as conn:
        return conn.execute("SELECT count(*) FROM builds WHERE key = (SELECT key FROM builds WHERE id = %s)",
                            (build_id,)).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--stampede", type=int, default=1000)
    parser.add_argument("--json")
    args = parser.parse_args()
    with scratch_database() as (dbname, url):
        procs = []
        try:
            with tempfile.TemporaryDirectory(prefix="bench-submit-") as tmp:
                seeded = seed(url, Path(tmp))
                env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")}, "TRTFARM_HOME": tmp,
                       "TRTFARM_DATABASE_URL": url, "TRTFARM_BLOB_URL": f"file://{tmp}/blobs",
                       "TRTFARM_AUTH": "required"}
                api, api_url = serve(["-m", "registry.cli", "api", "--no-dispatcher"], env)
                procs.append(api)
                headers = {"Authorization": f"Bearer {seeded['token']}"}
                body = httpx.post(api_url + "/v1/builds", json=seeded["request"], headers=headers).content
                submits = load([api_url], [(1.0, "POST", "/v1/builds", {"json": seeded["request"]})],
                               args.connections, args.seconds, Path(tmp), seeded["token"])
                fresh = {**seeded["request"], "spec": {"profiles": [{"input": {  # another profile: another key
                    "min": [1, 3, 16, 16], "opt": [3, 3, 16, 16], "max": [4, 3, 16, 16]}}]}}
                once = asyncio.run(stampede(api_url, seeded["token"], fresh, args.stampede))
                first = httpx.post(api_url + "/v1/builds", json=fresh, headers=headers).json()["id"]
                once["build_rows_with_the_key"] = builds_with_key(dbname, first)
                stop([api])
                uncached, uncached_url = serve(["-m", "registry.cli", "api", "--no-dispatcher"],
                                               {**env, "TRTFARM_READ_CACHE": "false"})
                procs.append(uncached)
                from_database = load([uncached_url], [(1.0, "POST", "/v1/builds", {"json": seeded["request"]})],
                                     args.connections, args.seconds, Path(tmp), seeded["token"])
                stop([uncached])
                bare, bare_url = serve(["bench/bare_app.py"], {**env, "BENCH_BODY_BYTES": str(len(body))})
                procs.append(bare)
                baseline = load([bare_url], [(1.0, "POST", "/bare", {"json": seeded["request"]})],
                                args.connections, args.seconds, Path(tmp))
        finally:
            stop(procs)
    report = {"connections": args.connections, "seconds": args.seconds, "duplicate_submits": submits,
              "duplicate_submits_read_cache_off": from_database,
              "bare_post_same_body": baseline, "submit_over_bare_rps": round(submits["rps"] / baseline["rps"], 3),
              "uncached_submit_over_bare_rps": round(from_database["rps"] / baseline["rps"], 3),
              "response_bytes": len(body), "stampede": once}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
