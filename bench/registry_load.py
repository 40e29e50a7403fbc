"""The registry under concurrent clients: two `trtfarm api` processes on one PostgreSQL database, N clients
(wrk, half the connections on each API; `apt-get install wrk`) for S seconds, then a resolve-only run
against the same APIs and against a bare FastAPI app (bench/bare_app.py: one route returning a JSON body
of the resolve answer's size) under the same uvicorn settings and load generator.

    scripts/services && .venv/bin/python bench/registry_load.py --clients 200 --seconds 60 --json out.json

Mix: resolve 50 %, engine info 15 %, duplicate submit 15 %, list builds 10 %, artifact 5 %, model HEAD 5 %.
Reports requests/s, p50/p99, status counts, transport errors, and the farm database's connections after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serving import PG, scratch_database, serve, stop  # noqa: E402
from registry.readcache import APPLICATION  # noqa: E402
from registry.settings import Settings  # noqa: E402
from tests.models import convnet  # noqa: E402

TARGET = "onnxruntime==1.32.0@x86_64-avx2"
PROFILE = {"profiles": [{"input": {"min": [1, 3, 16, 16], "opt": [2, 3, 16, 16], "max": [4, 3, 16, 16]}}]}


def seed(url: str, home: Path) -> dict:
    """A model, a build and its engine, written through the services (as a worker would)."""
    from registry.db.migrate import upgrade
    from registry.schemas import BuildRequest
    from registry.services import attempts, builds, keys, models
    from registry.services.attempts import EngineRecord, Outcome
    from registry.settings import Settings
    from registry.status import BuildStatus
    from registry.stores import FarmStores

    upgrade(url)
    stores = FarmStores(Settings(home=home, database_url=url, blob_url=f"file://{home / 'blobs'}"))
    folder = home / "upload"
    convnet(folder / "m.onnx", channels=8, layers=2)
    model, _ = models.register_model(stores.db, stores.blobs, folder, "m.onnx")
    request = BuildRequest(model=model.id, target=TARGET, spec=PROFILE)
    build, _ = builds.submit(stores.db, stores.settings, request)
    claim = attempts.claim(stores.db, build.id, "bench", 60)
    blob = stores.blobs.put_bytes(os.urandom(256 << 10))
    record = EngineRecord(version="1.32.0", digest=blob.digest, size=blob.size, filename="m.ort", metadata={},
                          validation={"passed": True, "cases": []}, latency_p50_ms=0.3, latency_p99_ms=0.4)
    attempts.finish(stores.db, claim, Outcome(BuildStatus.SUCCEEDED, engine=record))
    engine_id = builds.read(stores.db, build.id).engine_id
    token = keys.create_key(stores.db, "bench", ["submit"]).token
    stores.db.engine.dispose()
    return {"model": model.id, "engine": engine_id, "request": request.model_dump(mode="json"), "token": token}


def operations(seeded: dict, resolve_only: bool) -> list[tuple[float, str, str, dict]]:
    query = {"model": seeded["model"], "toolchain": "onnxruntime", "version": "1.32.0", "cpu": "x86_64-avx2"}
    resolve = (0.5, "GET", "/v1/engines/resolve", {"params": query})
    if resolve_only:
        return [(1.0, *resolve[1:])]
    return [resolve, (0.15, "GET", f"/v1/engines/{seeded['engine']}", {}),
            (0.15, "POST", "/v1/builds", {"json": seeded["request"]}), (0.10, "GET", "/v1/builds", {}),
            (0.05, "GET", f"/v1/engines/{seeded['engine']}/artifact", {}),
            (0.05, "HEAD", f"/v1/models/{seeded['model']}", {})]


MIX_LUA = """
local ops = {}
local function add(weight, method, path, body)
  local headers = {["Host"] = "127.0.0.1", ["Content-Type"] = "application/json", ["Authorization"] = AUTH}
  for _ = 1, weight do ops[#ops + 1] = wrk.format(method, path, headers, body) end
end
%s
math.randomseed(os.time())
request = function() return ops[math.random(#ops)] end
"""


def lua(ops: list, token: str | None) -> str:
    lines = [f"AUTH = {json.dumps(f'Bearer {token}')}" if token else "AUTH = nil"]
    for weight, method, path, kw in ops:
        if "params" in kw:
            path += "?" + str(httpx.QueryParams(kw["params"]))
        body = json.dumps(kw["json"]) if "json" in kw else None
        lines.append(f"add({round(weight * 100)}, {json.dumps(method)}, {json.dumps(path)}, "
                     f"{json.dumps(body) if body else 'nil'})")
    return MIX_LUA.replace("%s", "\n".join(lines), 1)


def load(urls: list[str], ops: list, clients: int, seconds: float, tmp: Path, token: str | None = None) -> dict:
    """wrk against each URL at once (clients split between them); figures summed (rps) or worst (p99)."""
    script = tmp / f"mix-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(lua(ops, token))
    runs = [subprocess.Popen(["wrk", "-t", "1", "-c", str(clients // len(urls)), "-d", f"{seconds:g}s",
                              "--timeout", "10s", "--latency", "-s", str(script), url],
                             stdout=subprocess.PIPE, text=True) for url in urls]
    outs = [r.communicate()[0] for r in runs]
    parsed = [parse_wrk(o) for o in outs]
    return {"rps": round(sum(p["rps"] for p in parsed), 1), "requests": sum(p["requests"] for p in parsed),
            "p50_ms": max(p["p50_ms"] for p in parsed), "p99_ms": max(p["p99_ms"] for p in parsed),
            "non_2xx_3xx": sum(p["non_2xx_3xx"] for p in parsed),
            "socket_errors": [p["socket_errors"] for p in parsed]}


def parse_wrk(text: str) -> dict:
    def ms(value: str) -> float:
        units = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
        unit = next(u for u in ("us", "ms", "m", "s") if value.endswith(u))
        return round(float(value[: -len(unit)]) * units[unit], 2)

    found = {"non_2xx_3xx": 0, "socket_errors": ""}
    for line in text.splitlines():
        words = line.split()
        if line.strip().startswith("50%"):
            found["p50_ms"] = ms(words[1])
        elif line.strip().startswith("99%"):
            found["p99_ms"] = ms(words[1])
        elif line.startswith("Requests/sec:"):
            found["rps"] = float(words[1])
        elif "requests in" in line:
            found["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            found["non_2xx_3xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            found["socket_errors"] = line.strip()
    return found


def connections(dbname: str, idle_pool: int, settle_s: float = 10.0) -> dict:
    """The farm database's connections once the requests wrk left in flight are answered (up to settle_s):
    the APIs' pools, the read caches' change listeners, and how long they took to settle."""
    started = time.monotonic()
    while True:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as admin:
            found = dict(admin.execute("SELECT application_name = %s, count(*) FROM pg_stat_activity "
                                       "WHERE datname = %s GROUP BY 1", (APPLICATION, dbname)).fetchall())
        waited = time.monotonic() - started
        if found.get(False, 0) <= idle_pool or waited > settle_s:
            return {"pooled": found.get(False, 0), "change_listeners": found.get(True, 0),
                    "settled_after_s": round(waited, 2)}
        time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--json")
    parser.add_argument("--no-read-cache", action="store_true", help="TRTFARM_READ_CACHE=false: every read hits "
                        "the database (the figure the cache is measured against)")
    args = parser.parse_args()
    with scratch_database() as (dbname, url):
        procs: list[subprocess.Popen] = []
        try:
            with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
                seeded = seed(url, Path(tmp))
                env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")},
                       "TRTFARM_DATABASE_URL": url, "TRTFARM_BLOB_URL": f"file://{tmp}/blobs", "TRTFARM_HOME": tmp}
                api_env = {**env, "TRTFARM_AUTH": "required",  # as outside loopback: every request sends a key
                           "TRTFARM_READ_CACHE": str(not args.no_read_cache).lower()}
                token, auth = seeded["token"], {"Authorization": f"Bearer {seeded['token']}"}
                apis = [serve(["-m", "registry.cli", "api", "--no-dispatcher"], api_env) for _ in range(2)]
                procs += [p for p, _ in apis]
                urls = [u for _, u in apis]
                body = httpx.get(urls[0] + "/v1/engines/resolve", params=operations(seeded, True)[0][3]["params"],
                                 headers=auth).content
                mixed = load(urls, operations(seeded, False), args.clients, args.seconds, Path(tmp), token)
                resolve = load(urls, operations(seeded, True), args.clients, args.seconds / 2, Path(tmp), token)
                idle_after = connections(dbname, 2 * Settings().pool().size)
                bare_env = {**env, "BENCH_BODY_BYTES": str(len(body))}
                bares = [serve(["bench/bare_app.py"], bare_env) for _ in range(2)]
                procs += [p for p, _ in bares]
                bare = load([u for _, u in bares], [(1.0, "GET", "/bare", {})], args.clients, args.seconds / 2,
                            Path(tmp))
        finally:
            stop(procs)
    pool = Settings().pool()
    report = {"clients": args.clients, "seconds": args.seconds, "apis": 2,
              "auth": "required, a submit-scope key on every request", "read_cache": not args.no_read_cache,
              "mixed": mixed,
              "resolve_only": resolve, "bare_fastapi_same_body": bare, "resolve_body_bytes": len(body),
              "resolve_over_bare_rps": round(resolve["rps"] / bare["rps"], 3),
              "db_connections_after": idle_after, "db_pool_per_api": f"{pool.size} + {pool.overflow} overflow"}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
