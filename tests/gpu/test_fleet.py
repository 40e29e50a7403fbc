"""Issue 8's proof on a GPU host: TensorRT 8.5.3.1 and 8.6.0 side by side, one worker per GPU serving both.

The farm here is its own (not the session farm of the other GPU tests): `trtfarm up --gpus auto` with
TRTFARM_TOOLCHAINS listing both kit interpreters (GPU_FLEET_TOOLCHAINS, default
`tensorrt=/opt/trt85/bin/python,tensorrt=/opt/trt86/bin/python,onnxruntime=python3`). In order:

1. the worker probes both versions and subscribes to both versions' queues, under one unique name;
2. five models are built for the OLD version, one is fetched (the fetch is counted);
3. a rollout OLD -> NEW (dry run, then for real, then again: all "already there") with its report
   (accuracy and latency of both engines); each runtime resolves to its own version's plan, exact match;
   a fetched NEW plan's header says NEW; an OLD plan's header layout is recorded as unknown, with why;
4. a matrix build of a sixth model covers both versions (and a second matrix finds both there);
5. drain during a running build: the worker finishes it, takes nothing new (the next build waits, saying
   why), and builds it after resume;
6. the warm runners: per build, the runner's wall time minus TensorRT's builder seconds, and every runner
   command of a build log served by a warm process (merges included);
7. gc, dry run then for real (keep_last=0, unused_days=0): only the pinned engine and the ones handed out
   within the grace period stay.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, wait_all

FLEET_TOOLCHAINS = os.environ.get(
    "GPU_FLEET_TOOLCHAINS", "tensorrt=/opt/trt85/bin/python,tensorrt=/opt/trt86/bin/python,onnxruntime=python3")
PYTHONS = [p for k, p in support.toolchain_entries(FLEET_TOOLCHAINS) if k == "tensorrt"]
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON),
    pytest.mark.skipif(len(PYTHONS) < 2 or not all(Path(p).exists() for p in PYTHONS),
                       reason=f"needs two TensorRT interpreters in GPU_FLEET_TOOLCHAINS ({FLEET_TOOLCHAINS})"),
]
SECTION = "fleet"
SIDE = 32
SPEC = {"precision": ["fp16"], "profiles": [profile(1, 4, 8, SIDE)], "tactic_sources": TACTICS}
MODELS = [(8, 1), (16, 2), (8, 3), (16, 4), (8, 5), (16, 6), (24, 7), (24, 8)]  # (channels, seed)


@pytest.fixture(scope="module")
def fleet(trt_probe: dict, tmp_path_factory, logs_dir: Path, results):  # noqa: ANN001, ANN201
    """The two-version farm, its SDK client, the two versions (old, new) and this host's GPU."""
    versions = sorted((support.probe(p)["version"] for p in PYTHONS), key=lambda v: tuple(map(int, v.split("."))))
    gpus = len(trt_probe["devices"])
    farm = support.gpu_farm(tmp_path_factory.mktemp("fleet"), "auto", expected_workers=gpus,
                            toolchains=FLEET_TOOLCHAINS, accept=lambda w: len(
                                [t for t in w.toolchains if t["kind"] == "tensorrt"]) >= 2,
                            TRTFARM_BENCH_MAX_S="2")
    started = time.monotonic()
    try:
        farm.start()
        results.record(SECTION, "farm", {"start_seconds": round(time.monotonic() - started, 2),
                                         "toolchains": FLEET_TOOLCHAINS, "versions": versions})
        with farm.client("fleet-sdk", timeout=300) as sdk:
            yield {"farm": farm, "sdk": sdk, "old": versions[0], "new": versions[-1],
                   "gpu": trt_probe["devices"][0]}
    finally:
        farm.stop()
        farm.save_logs(logs_dir / "fleet-logs.txt", chars=200_000)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:  # noqa: ANN001
    from tests.models import convnet

    folder = tmp_path_factory.mktemp("fleet-models")
    return [convnet(folder / f"fleet-{i}.onnx", channels=c, layers=3, size=SIDE, seed=s)
            for i, (c, s) in enumerate(MODELS)]


def runtime(fleet: dict, version: str) -> str:
    return f"tensorrt=={version}@{fleet['gpu']['sku']}/{fleet['gpu']['cc']}"


def test_one_worker_per_gpu_serves_both_versions(fleet: dict, trt_probe: dict, results) -> None:  # noqa: ANN001
    workers = [w for w in fleet["sdk"].workers() if w.live]
    results.record(SECTION, "workers", [{"name": w.name, "state": w.state, "queues": w.queues,
                                         "toolchains": [f"{t['kind']}=={t['version']}" for t in w.toolchains]}
                                        for w in workers])
    assert len(workers) == len(trt_probe["devices"])
    assert len({w.name for w in workers}) == len(workers)
    for w in workers:
        versions = {t["version"] for t in w.toolchains if t["kind"] == "tensorrt"}
        assert versions == {fleet["old"], fleet["new"]}, w.toolchains
        for v in versions:
            assert any(q.startswith(f"build.tensorrt-{v}.") for q in w.queues), (v, w.queues)


@pytest.fixture(scope="module")
def old_engines(fleet: dict, models: list[Path], results) -> list:  # noqa: ANN001
    """The first five models built for the old version."""
    sdk, target = fleet["sdk"], f"tensorrt=={fleet['old']}"
    done = wait_all(sdk, [sdk.submit(m, target, SPEC, wait=False) for m in models[:5]], timeout=600)
    results.record(SECTION, "old_builds", [build_summary(sdk, b) for b in done])
    assert all(b.status == "succeeded" for b in done), [(b.id, b.status, b.error) for b in done]
    return [sdk.engine(b.engine_id) for b in done]


def test_rollout_old_to_new_with_its_report(fleet: dict, models: list[Path], old_engines: list,  # noqa: ANN001
                                            results, tmp_path: Path) -> None:
    sdk, old, new = fleet["sdk"], fleet["old"], fleet["new"]
    fetched = sdk.fetch(models[0], runtime=runtime(fleet, old), spec=SPEC)
    head = fetched.read_bytes()[:28]
    old_header = ".".join(str(b) for b in head[24:28])
    planned = sdk.rollout(f"tensorrt=={old}", f"tensorrt=={new}", dry_run=True)
    assert len(planned) == 5 and {r.outcome for r in planned} == {"planned"}
    started = time.monotonic()
    rows = sdk.rollout(f"tensorrt=={old}", f"tensorrt=={new}", timeout=900)
    wall = time.monotonic() - started
    again = sdk.rollout(f"tensorrt=={old}", f"tensorrt=={new}", wait=False)
    since = sdk.rollout(f"tensorrt=={old}", f"tensorrt=={new}", since_days=1, dry_run=True)
    report = [{"model": r.old.model[:12], "target": r.target, "outcome": r.outcome, "reason": r.reason,
               "old_p50_ms": r.old.latency_p50_ms, "new_p50_ms": r.new.latency_p50_ms if r.new else None,
               "latency_ratio": r.latency_ratio,
               "old_max_rel": (r.old.validation or {}).get("max_rel_error"),
               "new_max_rel": ((r.new.validation or {}).get("max_rel_error")) if r.new else None,
               "new_build": build_summary(sdk, r.build) if r.build else None} for r in rows]
    results.record(SECTION, "rollout", {"wall_seconds": round(wall, 2), "rows": report,
                                        "rerun_outcomes": sorted({r.outcome for r in again}),
                                        "since_1_day_rows": len(since), "old_fetched_plan_header": old_header,
                                        "old_plan_magic": repr(head[:4]),
                                        "old_plan_metadata": {k: (old_engines[0].metadata or {}).get(k) for k in
                                                              ("plan_version", "plan_build", "plan_header")}})
    assert [r.outcome for r in rows] == ["built"] * 5, report
    assert {r.outcome for r in again} == {"already there"}
    assert len(since) == 1, "only the fetched engine was used within a day"
    meta = old_engines[0].metadata or {}
    if not old_header.startswith(old):  # 8.5.3.1 writes another header layout: recorded, with why
        assert meta.get("plan_version") is None and "unknown layout" in (meta.get("plan_header") or "")
    for row in rows:  # rows come in the engine listing's order, not the models'
        for version, engine in ((old, row.old), (new, row.new)):
            answer = sdk.resolve(row.old.model, runtime=runtime(fleet, version), spec=SPEC)
            assert answer.engine.id == engine.id and answer.match_class == "exact", (version, answer)
            assert engine.version == version and engine.validation_passed is True
    new_plan = sdk.fetch(models[1], runtime=runtime(fleet, new), spec=SPEC)
    assert support.plan_header_version(new_plan).startswith(new)


def test_matrix_covers_both_versions(fleet: dict, models: list[Path], results) -> None:  # noqa: ANN001
    sdk = fleet["sdk"]
    rows = sdk.matrix(models[5], "tensorrt", SPEC, timeout=600)
    second = sdk.matrix(models[5], "tensorrt", SPEC, wait=False)
    results.record(SECTION, "matrix", {"rows": [{"target": r.target, "outcome": r.outcome, "reason": r.reason,
                                                 "build": build_summary(sdk, r.build) if r.build else None}
                                                for r in rows],
                                       "second": [(r.target, r.outcome) for r in second]})
    versions = {r.target.split("==")[1].split("@")[0] for r in rows}
    assert versions == {fleet["old"], fleet["new"]}
    assert {r.outcome for r in rows} == {"built"}, [(r.target, r.reason) for r in rows]
    assert {r.outcome for r in second} == {"already there"}


@pytest.mark.parametrize("extra,named", [({"optimization_level": 5}, "optimization_level"),
                                         ({"hardware_compatibility": "ampere_plus"}, "ampere_plus")],
                         ids=["optimization_level", "ampere_plus"])
def test_an_option_the_old_version_lacks_is_refused_at_submit_by_name(fleet: dict, models: list[Path],  # noqa: ANN001
                                                                     results, extra: dict, named: str) -> None:
    """TensorRT 8.5 has no builder_optimization_level and no AMPERE_PLUS: the worker's probe says so, and a submit
    for 8.5.3.1 asking for either is a 422 naming it, while 8.6.0 takes it (issue 9 item 8)."""
    from registry.errors import FarmError

    sdk, old = fleet["sdk"], fleet["old"]
    with pytest.raises(FarmError) as refused:
        sdk.submit(models[0], f"tensorrt=={old}", {**SPEC, **extra}, wait=False)
    results.record(SECTION, f"refused_on_{old}_{named}", {"status": refused.value.status, "code": refused.value.code,
                                                            "message": refused.value.message})
    assert refused.value.status == 422 and refused.value.code == "unsupported_option", refused.value
    assert named in refused.value.message and old in refused.value.message


def test_drain_during_a_running_build(fleet: dict, models: list[Path], results) -> None:  # noqa: ANN001
    sdk, new = fleet["sdk"], fleet["new"]
    worker = next(w for w in sdk.workers() if w.live)
    first = sdk.submit(models[6], f"tensorrt=={new}", SPEC, wait=False)
    deadline = time.monotonic() + 120
    while sdk.build(first.id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    drained = sdk.drain(worker.name)
    second = sdk.submit(models[7], f"tensorrt=={new}", SPEC, wait=False)
    (first_done,) = wait_all(sdk, [first], timeout=300)
    deadline = time.monotonic() + 60
    while _state(sdk, worker.name) != "drained" and time.monotonic() < deadline:
        time.sleep(0.5)
    state_after, waiting = _state(sdk, worker.name), sdk.build(second.id)
    time.sleep(5)
    still = sdk.build(second.id)
    sdk.resume(worker.name)
    (second_done,) = wait_all(sdk, [second], timeout=300)
    results.record(SECTION, "drain", {"state_at_drain": drained.state, "state_after_build": state_after,
                                      "first": build_summary(sdk, first_done), "second_waiting_reason":
                                      waiting.waiting_reason, "second_status_5s_later": still.status,
                                      "second": build_summary(sdk, second_done)})
    assert drained.state in ("draining", "drained") and first_done.status == "succeeded"
    assert state_after == "drained"
    assert still.status == "queued" and "drain" in (waiting.waiting_reason or ""), waiting
    assert second_done.status == "succeeded" and second_done.worker == worker.name


def _state(sdk, name: str) -> str:  # noqa: ANN001
    return next(w.state for w in sdk.workers() if w.name == name)


def test_warm_runners_serve_every_command(fleet: dict, results) -> None:  # noqa: ANN001
    """Runs last: every build of this module, its runner wall time minus TensorRT's builder seconds, and the
    runner commands its log shows (all served by a warm process, none started for a merge alone)."""
    sdk = fleet["sdk"]
    rows, cold_commands = [], []
    for b in sdk.builds(limit=100).items:
        if b.status != "succeeded" or not b.engine_id:
            continue
        engine = sdk.engine(b.engine_id)
        log = sdk.log(b.id)
        commands = [ln for ln in log.splitlines() if ln.startswith("$ ")]
        cold_commands += [c for c in commands if "warm" not in c]
        pids = sorted(set(re.findall(r"pid (\d+)", "\n".join(commands))))
        build_s = (b.timings or {}).get("build_s")
        rows.append({"build": b.id[:12], "version": b.version, "timings": b.timings,
                     "builder_seconds": engine.build_seconds, "runner_pids": pids,
                     "overhead_s": round(build_s - engine.build_seconds, 3) if build_s and engine.build_seconds
                     else None, "commands": [c[:160] for c in commands]})
    overheads = sorted(r["overhead_s"] for r in rows if r["overhead_s"] is not None)
    results.record(SECTION, "warm", {"builds": rows, "cold_commands": cold_commands[:20],
                                     "overhead_s_sorted": overheads})
    assert rows and not cold_commands, cold_commands[:5]
    assert overheads[len(overheads) // 2] <= 2.0, overheads


def test_gc_keeps_the_pinned_and_the_fetched_and_removes_the_rest(fleet: dict, models: list[Path],  # noqa: ANN001
                                                                     results) -> None:
    """Runs after the warm-runner test (it removes most engines): keep_last=0, unused_days=0 keeps only what
    is pinned or was handed out within the grace period (model 0's old plan and model 1's new plan were fetched)."""
    sdk, new = fleet["sdk"], fleet["new"]
    pinned = sdk.resolve(models[3], runtime=runtime(fleet, new), spec=SPEC).engine
    fetched = {sdk.resolve(models[i], runtime=runtime(fleet, v), spec=SPEC).engine.id
               for i, v in ((0, fleet["old"]), (1, new))}
    before = {e.id for m in models for e in sdk.engines(m)}
    sdk.pin(pinned.id)
    planned = sdk.gc(keep_last=0, unused_days=0, dry_run=True)
    after_dry = {e.id for m in models for e in sdk.engines(m)}
    done = sdk.gc(keep_last=0, unused_days=0, dry_run=False)
    after = {e.id for m in models for e in sdk.engines(m)}
    results.record(SECTION, "gc", {"engines_before": len(before), "engines_after": len(after),
                                   "dry_run": planned.model_dump(mode="json"), "real": done.model_dump(mode="json")})
    assert after_dry == before, "a dry run removes nothing"
    assert {r.engine_id for r in done.removed} == {r.engine_id for r in planned.removed}
    assert after == {pinned.id} | fetched, (after, pinned.id, fetched)
    assert before - after == {r.engine_id for r in done.removed} and done.bytes_freed > 0
    with pytest.raises(Exception, match="no engine|NoCompatibleEngine|404"):
        sdk.resolve(models[2], runtime=runtime(fleet, new), spec=SPEC)
