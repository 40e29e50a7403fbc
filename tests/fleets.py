"""Generated fleets of engines for resolve: random signatures (toolchain, version, device, hardware and
version compatibility), creation times with ties, latencies (some unmeasured), validation verdicts and batch
profiles (so profile widths, with ties; some ONNX Runtime engines have none: any shape), written as real build
and engine rows. Used by the resolve equivalence tests and bench/resolve_scale.py."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from registry import compat
from registry.db.session import Database
from registry.db.tables import Build, Engine
from registry.keys import spec_canonical, spec_family
from registry.services import shapes, signatures
from registry.spec import parse_spec
from registry.status import BuildStatus

GPUS = {"h100-80gb-hbm3": "sm_90", "a100-sxm4-40gb": "sm_80", "l4": "sm_89", "t4": "sm_75", "h200": "sm_90"}
TRT_VERSIONS = ("8.5.3", "8.6.0", "8.6.1", "9.0.1", "10.0.1", "10.3.0")
ORT_VERSIONS = ("1.16.3", "1.32.0")
CPUS = ("x86_64-avx2", "x86_64-avx512")
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def engine_rows(rng: random.Random, model_id: str, count: int, input_shape: tuple[int, ...] = (3, 16, 16),
                minutes: int = 12) -> list[dict]:
    """`count` engine rows of one model (each with the build row it needs: `row["build"]`), created within
    `minutes` whole minutes: the default makes many ties on purpose (the tie order is checked); a benchmark
    spreads them as a real fleet's history would."""
    side = random.Random(repr(rng.getstate()))  # draws added later: the fleet's own draws stay as they were
    return [_engine(rng, side, model_id, input_shape, minutes) for _ in range(count)]


def _engine(rng: random.Random, side: random.Random, model_id: str, rest: tuple[int, ...], minutes: int
            ) -> dict[str, Any]:
    lo = rng.choice((1, 1, 2, 4))
    hi = rng.choice((lo, 4, 8, 16, 32))
    profiles = [{"input": {"min": [lo, *rest], "opt": [lo, *rest], "max": [max(lo, hi), *rest]}}]
    optimization_level = rng.randint(0, 5)
    if rng.random() < 0.15:
        toolchain, version, hw = "onnxruntime", rng.choice(ORT_VERSIONS), rng.choice(("none", "any_isa"))
        device = sku = rng.choice(CPUS)
        cc, vc, lean = None, False, False
        if side.random() < 0.3:
            profiles = []  # ONNX Runtime takes any shape
    else:
        toolchain, version = "tensorrt", rng.choice(TRT_VERSIONS)
        sku = rng.choice(list(GPUS))
        cc = GPUS[sku]
        hw = rng.choice(("none", "none", "same_compute_capability", "ampere_plus"))
        device = {"none": sku, "same_compute_capability": cc, "ampere_plus": "ampere_plus"}[hw]
        vc = rng.random() < 0.3
        lean = vc and rng.random() < 0.3
        if rng.random() < 0.1:
            sku, cc = None, None  # an older row that recorded only its device
    parsed = parse_spec({"profiles": profiles, "optimization_level": optimization_level})
    spec = spec_canonical(parsed)
    created = EPOCH + timedelta(minutes=rng.randint(0, minutes))
    latency = None if rng.random() < 0.2 else round(rng.uniform(0.1, 5.0), 1)
    engine_id, build_id, key = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex + uuid.uuid4().hex
    build = dict(id=build_id, key=key, model_id=model_id, toolchain=toolchain, version=version, device=device,
                 target=f"{toolchain}=={version}@{device}", queue="build.fleet", spec=spec,
                 spec_family=spec_family(parse_spec(spec)), plugins=[], calibration=None,
                 status=BuildStatus.SUCCEEDED, attempt=1, max_attempts=3, log_tail="", timings={},
                 cancel_requested=False, created_at=created)
    return dict(id=engine_id, build_id=build_id, build_key=key, model_id=model_id, toolchain=toolchain,
                version=version, device=device, sku=sku, cc=cc, hardware_compatibility=hw, version_compatible=vc,
                exclude_lean_runtime=lean, refittable=False, spec=spec, spec_family=build["spec_family"],
                profile_width=shapes.profile_width(parsed, toolchain),
                digest="sha256:" + "0" * 64, size=1, filename="e.plan", meta={}, validation=None,
                validation_passed=rng.choice((True, True, True, None, False)), latency_p50_ms=latency,
                latency_p99_ms=latency, build_seconds=1.0, created_at=created, build=build)


def insert(db: Database, rows: list[dict], chunk: int = 5000) -> None:
    """Write the rows (builds first) in a few multi-row inserts."""
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        with db.session() as s:
            s.execute(sa.insert(Build), [r["build"] for r in part])
            engines = [{k: v for k, v in r.items() if k != "build"} for r in part]
            s.execute(sa.insert(Engine), engines)
            signatures.add(s, engines)  # the signature summary, as every engine write keeps it


def insert_as_of_then(session: sa.orm.Session, rows: list[dict]) -> None:
    """Write the rows' builds and engines with only the columns the rows name (typed, but without the columns
    later migrations added and their defaults): how a database of an older revision got them. The rows'
    profile_width (0010) is left out."""
    engines = [{k: v for k, v in r.items() if k not in ("build", "profile_width")} for r in rows]
    for table, values in ((Build.__table__, [r["build"] for r in rows]), (Engine.__table__, engines)):
        columns = [sa.column(name, table.c[name].type) for name in values[0]]
        session.execute(sa.insert(sa.table(table.name, *columns)), values)


def runtime(rng: random.Random) -> compat.Runtime:
    """A random runtime a fleet host could report."""
    if rng.random() < 0.15:
        return compat.Runtime("onnxruntime", rng.choice(ORT_VERSIONS), cpu=rng.choice(CPUS))
    sku = rng.choice([*GPUS, "b200"])
    cc = GPUS.get(sku, "sm_100")
    lean = rng.random() < 0.2
    return compat.Runtime("tensorrt", rng.choice(TRT_VERSIONS), sku=None if rng.random() < 0.1 else sku, cc=cc,
                          allow_cross_sku=rng.random() < 0.3, lean_runtime=lean,
                          engine_host_code_allowed=lean and rng.random() < 0.5)


def candidate(row: dict) -> compat.Candidate:
    return compat.Candidate(engine_id=row["id"], toolchain=row["toolchain"], version=row["version"],
                            device=row["device"], sku=row["sku"], cc=row["cc"],
                            hardware_compatibility=row["hardware_compatibility"],
                            version_compatible=row["version_compatible"],
                            exclude_lean_runtime=row["exclude_lean_runtime"], created_at=row["created_at"],
                            latency_ms=row["latency_p50_ms"], width=row["profile_width"])


def check_resolution(db: Database, model_id: str, rows: list[dict], rt: compat.Runtime,
                     shapes: dict[str, tuple[int, ...]] | None = None, spec_family: str | None = None,
                     include_failed: bool = False) -> str:
    """Assert that `services.resolution.resolve` (SQL) answers as `compat.resolve` over every usable engine
    (the pure ranking) would; returns which outcome it was (a match class, "none" or "outside")."""
    from collections import Counter

    import pytest

    from registry.errors import InvalidInput, NoCompatibleEngine
    from registry.services.resolution import resolve

    usable = [r for r in rows if (include_failed or r["validation_passed"] is not False)
              and spec_family in (None, r["spec_family"])]
    loadable = [r for r in usable if compat.classify(candidate(r), rt)]
    held = [r for r in loadable if _holds(r, shapes)] if shapes else loadable
    asked = dict(shapes=shapes, spec_family=spec_family, include_failed_validation=include_failed)
    if held:
        want = compat.resolve([candidate(r) for r in held], rt)
        got = resolve(db, model_id, rt, **asked)
        assert (got.engine.id, got.match_class) == (want.candidate.engine_id, want.match_class), (rt, asked)
        assert got.reason.startswith(f"{want.reason}; widest profiles of its class (")
        assert got.warning == want.warning
        return str(want.match_class)
    if loadable:
        with pytest.raises(InvalidInput, match="outside every profile"):
            resolve(db, model_id, rt, **asked)
        return "outside"
    with pytest.raises(NoCompatibleEngine) as refused:
        resolve(db, model_id, rt, **asked)
    want_reasons = Counter(compat.assess(candidate(r), rt).why for r in usable)
    got_reasons: Counter = Counter()
    for r in refused.value.details["rejections"]:
        got_reasons[r["why"]] += r["count"]
        # the example is the greatest id of the engines with that reason and signature, as a GROUP BY gives it
        assert r["engine_id"] in {u["id"] for u in usable if compat.assess(candidate(u), rt).why == r["why"]}
    assert got_reasons == want_reasons, (rt, asked)
    return "none"


def question(rng: random.Random, rows: list[dict]) -> dict[str, Any]:
    """A random resolve question's options: shapes 30 % of the time, a spec family (one of the fleet's, or
    one it lacks) 20 %, failed validations included 15 %."""
    asked: dict[str, Any] = {}
    if rng.random() < 0.3:
        asked["shapes"] = {"input": (rng.choice((1, 2, 8, 32, 64)), 3, 16, 16)}
    if rng.random() < 0.2:
        asked["spec_family"] = rng.choice(rows)["spec_family"] if rng.random() < 0.9 else "f" * 64
    if rng.random() < 0.15:
        asked["include_failed"] = True
    return asked


def _holds(row: dict, shapes: dict[str, tuple[int, ...]]) -> bool:
    spec = parse_spec(row["spec"])
    if not spec.profiles:  # ONNX Runtime takes any shape (the questions' shapes fit the model's input)
        return row["toolchain"] == "onnxruntime"
    return any(all(p[name].contains(shape) for name, shape in shapes.items()) for p in spec.profiles)


def summary(rows: list[dict]) -> dict[tuple, tuple]:
    """The signature summary these engine rows should have, computed in Python: key -> (newest, count, example,
    widest, widest_newest)."""
    from registry.services.signatures import ANY_FAMILY

    found: dict[tuple, tuple] = {}
    for r in rows:
        signature = (r["toolchain"], r["version"], r["device"], r["sku"] or "", r["cc"] or "",
                     r["hardware_compatibility"], r["version_compatible"], r["exclude_lean_runtime"],
                     r["validation_passed"] is False)
        for family in (r["spec_family"], ANY_FAMILY):
            key = (r["model_id"], family, *signature)
            newest, count, example, *widest = found.get(key, (r["created_at"], 0, r["id"], r["profile_width"],
                                                              r["created_at"]))
            found[key] = (max(newest, r["created_at"]), count + 1, max(example, r["id"]),
                          *max(tuple(widest), (r["profile_width"], r["created_at"])))
    return found


def summary_in(db: Database) -> dict[tuple, tuple]:
    """The signature summary as the database holds it, in `summary`'s form."""
    from registry.db.tables import EngineSignature
    from registry.services.signatures import KEY

    with db.session() as s:
        return {tuple(getattr(r, k) for k in KEY): (r.newest, r.engines, r.example, r.widest, r.widest_newest)
                for r in s.scalars(sa.select(EngineSignature))}


def model_at_revision(url: str, revision: str, folder: Any) -> str:
    """A registered model (tests.models.convnet) in a database left at an older `revision`: registered at
    head by the service of today (whose ORM knows every later column), then migrated down. The model's
    id."""
    from alembic import command

    from registry.blobs.local import LocalBlobStore
    from registry.db.migrate import alembic_config, upgrade
    from registry.services.models import register_model
    from tests.models import convnet

    upgrade(url)
    db = Database(url)
    try:
        convnet(folder / "upload" / "m.onnx")
        info, _ = register_model(db, LocalBlobStore(folder / "blobs"), folder / "upload", "m.onnx")
    finally:
        db.engine.dispose()
    command.downgrade(alembic_config(url), revision)
    return info.id
