"""Resolve as a model's engines grow, in a big table: four models with 10 / 100 / 1,000 / 10,000 engines
(generated fleets: tests/fleets.py) among TOTAL engine rows (copies spread over 1,000 other models), on
PostgreSQL.

1. The service alone (`registry.services.resolution.resolve`), concurrency 1, runtimes drawn from a fixed
   set: p50/p99 per engine count, and the growth from 10 to 10,000.
2. Over HTTP, one `trtfarm api` with its read cache OFF (every resolve reads the database): wrk at
   concurrency 1 (p50), then 10 and 50 (requests/s) against the 10,000-engine model, beside a bare FastAPI
   route returning a body of the same size (bench/bare_app.py) under the same load; and the same API with
   the read cache on.

    scripts/services && .venv/bin/python bench/resolve_scale.py --total 1000000 --json /tmp/resolve-scale.json
    .venv/bin/python bench/resolve_scale.py --total 20000 --seconds 2      # the CI smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.registry_load import load  # noqa: E402
from bench.serving import scratch_database, serve, stop  # noqa: E402
from tests import fleets  # noqa: E402
from tests.models import convnet  # noqa: E402

SIZES = (10, 100, 1000, 10_000)


def seed(url: str, home: Path, total: int) -> dict[int, str]:
    """Models with SIZES engines each, then copies of their engines under 1,000 filler models up to `total`."""
    from registry.blobs.local import LocalBlobStore
    from registry.db.migrate import upgrade
    from registry.db.session import Database
    from registry.services.models import register_model

    upgrade(url)
    db = Database(url)
    models = {}
    for i, n in enumerate(SIZES):
        folder = home / f"m{i}"
        convnet(folder / "m.onnx", channels=4 + i, layers=1)
        model, _ = register_model(db, LocalBlobStore(home / "blobs"), folder, "m.onnx")
        fleets.insert(db, fleets.engine_rows(random.Random(i), model.id, n, minutes=525_600))  # a year
        models[n] = model.id
    db.engine.dispose()
    _fill(url, models[SIZES[-1]], max(0, total - sum(SIZES)))
    return models


def _fill(url: str, template_model: str, count: int) -> None:
    """`count` more engine rows (and their builds) copied from the template model's engines, under 1,000
    filler models, in SQL; then the signature summary of every engine, recomputed."""
    from registry.db.tables import Build, Engine, Model
    from registry.services import signatures

    def copy(table, overrides: dict[str, str]) -> str:  # noqa: ANN001
        cols = [c.name for c in table.__table__.columns]
        return f"({', '.join(cols)}) SELECT {', '.join(overrides.get(c, f't.{c}') for c in cols)}"

    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    filler = "'sha256:' || lpad(to_hex({}), 64, '0')"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO models {copy(Model, {'id': filler.format('g')})} "
                     "FROM generate_series(1, 1000) g, models t WHERE t.id = %s", (template_model,))
        templates = "(SELECT row_number() OVER () - 1 AS n, * FROM {} WHERE model_id = %s) t"
        for start in range(0, count, 200_000):
            part, g = min(200_000, count - start), f"(g + {start})"
            ids = {"build": f"md5('b' || {g})", "key": f"md5('k' || {g}) || md5('x' || {g})",
                   "model": filler.format(f"1 + {g} %% 1000")}
            builds = copy(Build, {"id": ids["build"], "key": ids["key"], "model_id": ids["model"]})
            engines = copy(Engine, {"id": f"md5('e' || {g})", "build_id": ids["build"], "build_key": ids["key"],
                                    "model_id": ids["model"]})
            for table, columns in (("builds", builds), ("engines", engines)):
                conn.execute(f"INSERT INTO {table} {columns} FROM generate_series(1, {part}) g "
                             f"JOIN {templates.format(table)} ON t.n = g %% 10000", (template_model,))
        with conn.transaction():  # the copies' signature summary: the backfill migration 0006 runs
            conn.execute("DELETE FROM engine_signatures")
            for statement in signatures.backfill_statements():
                conn.execute(statement)
        for table in ("engines", "builds", "engine_signatures"):
            conn.execute(f"VACUUM ANALYZE {table}")


def runtimes(count: int = 20) -> list:
    rng = random.Random(7)
    return [fleets.runtime(rng) for _ in range(count)]


def in_process(url: str, models: dict[int, str], calls: int) -> dict:
    """`calls` resolves per model, the models taking turns (call i of each, then call i + 1), after a warm-up
    round: load that drifts on a shared machine then weighs on every size alike, not on whichever ran first."""
    from registry.db.session import Database
    from registry.errors import NoCompatibleEngine
    from registry.services.resolution import resolve

    db = Database(url)
    asked = runtimes()
    times: dict[int, list[float]] = {n: [] for n in models}
    for i in range(-len(asked), calls):  # the first round (negative i) warms caches and is not counted
        for n, model in models.items():
            started = time.perf_counter()
            with contextlib.suppress(NoCompatibleEngine):  # a refusal is an answer too (and costs more)
                resolve(db, model, asked[i % len(asked)])
            if i >= 0:
                times[n].append((time.perf_counter() - started) * 1000)
    found = {}
    for n, model in models.items():
        took = sorted(times[n])
        found[n] = {"p50_ms": round(statistics.median(took), 2), "p99_ms": round(took[int(len(took) * 0.99)], 2),
                    "summary_rows": _summary_rows(db, model)}
    db.engine.dispose()
    return found


def _summary_rows(db, model: str) -> int:  # noqa: ANN001
    """The model's rows in the signature summary under every spec family (what a resolve reads, at most)."""
    from sqlalchemy import func, select

    from registry.db.tables import EngineSignature

    with db.read_session() as s:
        return s.scalar(select(func.count()).where(EngineSignature.model_id == model,
                                                   EngineSignature.spec_family == "*"))


def http_runs(url_api: str, bare_url: str, model: str, seconds: float, tmp: Path) -> dict:
    queries = [(1.0 / 20, "GET", "/v1/engines/resolve", {"params": {"model": model, **rt.to_query()}})
               for rt in runtimes()]
    runs = {"c1": load([url_api], queries, 1, seconds, tmp)}
    for c in (10, 50):
        runs[f"c{c}"] = load([url_api], queries, c, seconds, tmp)
        runs[f"bare_c{c}"] = load([bare_url], [(1.0, "GET", "/bare", {})], c, seconds, tmp)
        runs[f"ratio_c{c}"] = round(runs[f"c{c}"]["rps"] / runs[f"bare_c{c}"]["rps"], 3)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=1_000_000, help="engine rows in the table")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--json")
    args = parser.parse_args()
    report: dict = {"total_engine_rows": args.total}
    with scratch_database() as (_, url):
        procs = []
        try:
            with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
                started = time.monotonic()
                models = seed(url, Path(tmp), args.total)
                report["seed_s"] = round(time.monotonic() - started, 1)
                report["service"] = in_process(url, models, args.calls)
                service = report["service"]
                report["growth_10_to_10000"] = round(service[10_000]["p50_ms"] / service[10]["p50_ms"], 2)
                env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRTFARM_")},
                       "TRTFARM_DATABASE_URL": url, "TRTFARM_HOME": tmp, "TRTFARM_BLOB_URL": f"file://{tmp}/blobs"}
                big = models[SIZES[-1]]
                probe = {"model": big, **runtimes()[0].to_query()}
                for cache in ("false", "true"):
                    api, api_url = serve(["-m", "registry.cli", "api", "--no-dispatcher"],
                                         {**env, "TRTFARM_READ_CACHE": cache})
                    procs.append(api)
                    body = httpx.get(api_url + "/v1/engines/resolve", params=probe).content
                    bare, bare_url = serve(["bench/bare_app.py"], {**env, "BENCH_BODY_BYTES": str(len(body))})
                    procs.append(bare)
                    report[f"http_read_cache_{cache}"] = http_runs(api_url, bare_url, big, args.seconds, Path(tmp))
                    stop([api, bare])
        finally:
            stop(procs)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
