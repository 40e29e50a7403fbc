"""Push ONNX backend cases through a running farm with the ONNX Runtime toolchain and record, per case,
what happened: passed / rejected by the farm (code + message) / build failed / fetch failed / run failed /
mismatch. Uses only the SDK (registry.client.Farm), as a user would.

Flow: upload every model and submit every build concurrently (wait=False) → poll the build list until all
are terminal → fetch each engine through the SDK (sha256 verified into the local cache) → run it with
ONNX Runtime on the shipped inputs → compare with the shipped outputs (onnx's rule, onnx_backend_cases).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry.client import Farm
from registry.errors import FarmError
from tests.peer.onnx_backend_cases import (
    Case,
    checker_error,
    compare,
    direct_baseline,
    load_data,
    profile_for,
    run_model,
)

TARGET = "onnxruntime"
PASSED, REJECTED, BUILD_FAILED, FETCH_FAILED, RUN_FAILED, MISMATCH = (
    "passed", "rejected", "build_failed", "fetch_failed", "run_failed", "mismatch")


@dataclass
class Outcome:
    case: str
    status: str = "pending"
    code: str | None = None  # the farm's error code (rejected / build failed)
    message: str | None = None
    direct: str | None = None  # None: ONNX Runtime alone runs and matches the case; else why not
    checker: str | None = None  # None: passes onnx.checker
    model: str | None = None
    build: str | None = None
    target: str | None = None
    engine_digest: str | None = None
    farm_validation: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Clients(threading.local):
    farm: Farm | None = None


def push(url: str, cases: list[Case], cache_dir: Path, *, timeout: float = 600, threads: int = 8,
         poll_interval: float = 0.5) -> dict[str, Outcome]:
    outcomes = {c.id: Outcome(c.id) for c in cases}
    clients = _Clients()

    def farm() -> Farm:
        if clients.farm is None:
            clients.farm = Farm(url, cache_dir=cache_dir, timeout=120)
        return clients.farm

    specs: dict[str, dict] = {}
    data: dict[str, tuple[dict, list]] = {}

    def submit(case: Case) -> None:
        out = outcomes[case.id]
        out.checker = checker_error(case)
        out.direct = direct_baseline(case)
        started = time.monotonic()
        try:
            feeds, expected = load_data(case)
            data[case.id] = (feeds, expected)
            profile = profile_for(case, feeds)
            spec = {"profiles": [profile]} if profile else {}
            specs[case.id] = spec
            out.model = farm().upload(case.model).id
            build = farm().submit(out.model, TARGET, spec, wait=False)
        except FarmError as exc:  # refused by the farm, or by the SDK before reaching it (e.g. not readable ONNX)
            out.status, out.code, out.message = REJECTED, exc.code, exc.message
            return
        finally:
            out.seconds["submit"] = round(time.monotonic() - started, 3)
        out.build, out.target, out.status = build.id, build.target, build.status

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(submit, cases))

    _wait_all(farm(), outcomes, timeout, poll_interval)

    def finish(case: Case) -> None:
        out = outcomes[case.id]
        if out.status != "succeeded":
            return
        started = time.monotonic()
        try:
            path = farm().fetch(out.model, runtime="auto", spec=specs[case.id])
            engine = farm().engine(farm().build(out.build).engine_id)
            out.engine_digest = engine.digest
            out.farm_validation = {k: engine.validation.get(k) for k in ("passed", "max_abs_error", "max_rel_error")} \
                if engine.validation else None
        except FarmError as exc:
            out.status, out.code, out.message = FETCH_FAILED, getattr(exc, "code", None), str(exc)
            return
        feeds, expected = data[case.id]
        try:
            actual = run_model(path, feeds)
        except Exception as exc:  # noqa: BLE001 - ORT's own exception types
            out.status, out.message = RUN_FAILED, " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            return
        problem = compare(expected, actual)
        out.status, out.message = (PASSED, None) if problem is None else (MISMATCH, problem)
        out.seconds["fetch_run"] = round(time.monotonic() - started, 3)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(finish, cases))
    return outcomes


def _wait_all(farm: Farm, outcomes: dict[str, Outcome], timeout: float, poll_interval: float) -> None:
    """Poll the build list until every submitted build is terminal. Identical cases (same model bytes and
    spec) share one build: the farm deduplicates them by key, so one build may stand for several cases."""
    pending: dict[str, list[Outcome]] = {}
    for o in outcomes.values():
        if o.build and o.status not in ("succeeded", "failed", "cancelled"):
            pending.setdefault(o.build, []).append(o)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(poll_interval)
        for info in farm.builds(limit=500).items:
            if info.id in pending and info.done:
                for out in pending.pop(info.id):
                    _record(out, info)
    for build_id, outs in pending.items():  # still not done at the deadline: say so
        info = farm.build(build_id)
        for out in outs:
            if info.done:
                _record(out, info)
            else:
                out.status, out.code = BUILD_FAILED, "peer_timeout"
                out.message = (f"build {build_id} still {info.status} after {timeout:.0f} s "
                               f"({info.waiting_reason or info.progress})")


def _record(out: Outcome, info: Any) -> None:
    if info.status == "succeeded":
        out.status = "succeeded"
    else:
        out.status = BUILD_FAILED
        out.code = info.error.code if info.error else info.status
        out.message = info.error.message if info.error else f"build {info.status}"
    if info.timings:
        out.seconds.update({k: v for k, v in info.timings.items() if isinstance(v, (int, float))})
