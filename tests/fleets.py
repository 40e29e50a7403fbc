"""Generated fleets of engines for resolve: random signatures (toolchain, version, device, hardware and
version compatibility), creation times with ties, latencies (some unmeasured), validation verdicts and batch
profiles, written as real build and engine rows. Used by the resolve equivalence tests and bench/resolve_scale.py."""

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
    return [_engine(rng, model_id, input_shape, minutes) for _ in range(count)]


def _engine(rng: random.Random, model_id: str, rest: tuple[int, ...], minutes: int) -> dict[str, Any]:
    lo = rng.choice((1, 1, 2, 4))
    hi = rng.choice((lo, 4, 8, 16, 32))
    spec = spec_canonical(parse_spec({"profiles": [{"input": {"min": [lo, *rest], "opt": [lo, *rest],
                                                              "max": [max(lo, hi), *rest]}}],
                                      "optimization_level": rng.randint(0, 5)}))
    if rng.random() < 0.15:
        toolchain, version, hw = "onnxruntime", rng.choice(ORT_VERSIONS), "none"
        device = sku = rng.choice(CPUS)
        cc, vc, lean = None, False, False
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
                digest="sha256:" + "0" * 64, size=1, filename="e.plan", meta={}, validation=None,
                validation_passed=rng.choice((True, True, True, None, False)), latency_p50_ms=latency,
                latency_p99_ms=latency, build_seconds=1.0, created_at=created, build=build)


def insert(db: Database, rows: list[dict], chunk: int = 5000) -> None:
    """Write the rows (builds first) in a few multi-row inserts."""
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        with db.session() as s:
            s.execute(sa.insert(Build), [r["build"] for r in part])
            s.execute(sa.insert(Engine), [{k: v for k, v in r.items() if k != "build"} for r in part])


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
                            latency_ms=row["latency_p50_ms"])


def check_resolution(db: Database, model_id: str, rows: list[dict], rt: compat.Runtime,
                     shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """Assert that `services.resolution.resolve` (SQL) answers as `compat.resolve` over every usable engine
    (the pure ranking) would; returns which outcome it was (a match class, "none" or "outside")."""
    from collections import Counter

    import pytest

    from registry.errors import InvalidInput, NoCompatibleEngine
    from registry.services.resolution import resolve

    usable = [r for r in rows if r["validation_passed"] is not False]
    loadable = [r for r in usable if compat.classify(candidate(r), rt)]
    held = [r for r in loadable if _holds(r, shapes)] if shapes else loadable
    if held:
        want = compat.resolve([candidate(r) for r in held], rt)
        got = resolve(db, model_id, rt, shapes=shapes)
        assert (got.engine.id, got.match_class) == (want.candidate.engine_id, want.match_class), (rt, shapes)
        assert (got.reason, got.warning) == (want.reason, want.warning)
        return str(want.match_class)
    if loadable:
        with pytest.raises(InvalidInput, match="outside every profile"):
            resolve(db, model_id, rt, shapes=shapes)
        return "outside"
    with pytest.raises(NoCompatibleEngine) as refused:
        resolve(db, model_id, rt, shapes=shapes)
    want_reasons = Counter(compat.assess(candidate(r), rt).why for r in usable)
    got_reasons: Counter = Counter()
    for r in refused.value.details["rejections"]:
        got_reasons[r["why"]] += r["count"]
    assert got_reasons == want_reasons, rt
    return "none"


def _holds(row: dict, shapes: dict[str, tuple[int, ...]]) -> bool:
    spec = parse_spec(row["spec"])
    return any(all(p[name].contains(shape) for name, shape in shapes.items()) for p in spec.profiles)
