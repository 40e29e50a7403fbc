"""One worker, two versions of one toolchain (TRTFARM_TOOLCHAINS=onnxruntime=A,onnxruntime=B): it probes
both, serves both versions' queues one build at a time, and each runtime resolves to its own version's
engine. The CPU stand-in for a GPU host with TensorRT 8.5 and 8.6 side by side (issue 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime
import pytest

from registry.errors import ToolchainError
from registry.settings import Settings
from registry.targets import cpu_device
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import calibration_set, convnet
from workers.context import discover


def two_version_farm(farm_factory, peer_python: str) -> RunningFarm:  # noqa: ANN001
    """A farm whose one worker serves this interpreter's ONNX Runtime and the peer's (older) one."""
    farm: RunningFarm = farm_factory(workers=0)
    farm.add_worker(TRTFARM_TOOLCHAINS=f"onnxruntime={sys.executable},onnxruntime={peer_python}")
    return farm


def cli(farm: RunningFarm, home: Path, *args: str) -> subprocess.CompletedProcess:
    """`trtfarm ARGS` against the farm, as a user's shell runs it."""
    env = {**os.environ, "TRTFARM_URL": farm.url, "HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "registry.cli", *args], capture_output=True, text=True, env=env,
                          timeout=180)


def test_one_worker_builds_for_both_versions_and_each_runtime_gets_its_own(farm_factory, peer_ort,  # noqa: ANN001
                                                                           tmp_path: Path) -> None:
    peer_python, peer_version = peer_ort
    assert peer_version != onnxruntime.__version__
    farm = two_version_farm(farm_factory, peer_python)
    sdk = farm.client()
    (worker,) = sdk.workers()
    assert sorted(t["version"] for t in worker.toolchains) == sorted([onnxruntime.__version__, peer_version])
    cpu = cpu_device()
    assert {f"build.onnxruntime-{v}.{cpu}" for v in (onnxruntime.__version__, peer_version)} <= set(worker.queues)

    model = sdk.upload(convnet(tmp_path / "two.onnx", channels=4, layers=1, seed=61))
    builds = {v: sdk.submit(model.id, f"onnxruntime=={v}@{cpu}", batch_profile(), wait=False)
              for v in (onnxruntime.__version__, peer_version)}
    for version, build in builds.items():
        done = farm.wait_build(build.id)
        assert done["status"] == "succeeded", done
        engine = sdk.engine(done["engine_id"])
        assert engine.version == version and engine.validation_passed is True
        answer = sdk.resolve(model.id, runtime=f"onnxruntime=={version}@{cpu}")
        assert answer.engine.id == engine.id and answer.match_class == "exact"


def test_the_same_version_twice_is_refused_at_start(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, toolchains=f"onnxruntime={sys.executable},onnxruntime={sys.executable}")
    with pytest.raises(Exception, match="twice"):
        settings.toolchain_entries()
    link = tmp_path / "python-again"  # another path to the same interpreter
    link.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    link.chmod(0o755)
    settings = Settings(home=tmp_path, toolchains=f"onnxruntime={sys.executable},onnxruntime={link}")
    with pytest.raises(ToolchainError, match=f"are both onnxruntime {onnxruntime.__version__}; give each version once"):
        discover(settings)


def test_matrix_builds_every_version_once_and_reports_what_is_there(farm_factory, peer_ort,  # noqa: ANN001
                                                                     tmp_path: Path) -> None:
    peer_python, peer_version = peer_ort
    farm = two_version_farm(farm_factory, peer_python)
    sdk = farm.client()
    path = convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=62)
    seen: list[int] = []
    rows = sdk.matrix(path, toolchain="onnxruntime", spec=batch_profile(),
                      progress=lambda rs: seen.append(sum(r.outcome != "waiting" for r in rs)))
    cpu = cpu_device()
    assert sorted(r.target for r in rows) == sorted(f"onnxruntime=={v}@{cpu}"
                                                   for v in (onnxruntime.__version__, peer_version))
    assert [r.outcome for r in rows] == ["built", "built"] and seen[-1] == 2
    assert {sdk.engine(r.build.engine_id).version for r in rows} == {onnxruntime.__version__, peer_version}

    shape = "input:1x3x16x16,2x3x16x16,4x3x16x16"
    done = cli(farm, tmp_path, "matrix", str(path), "--shape", shape, "--json")
    assert done.returncode == 0, done.stderr
    assert [r["outcome"] for r in json.loads(done.stdout)] == ["already there", "already there"]
    assert "2/2 done" in done.stderr
    refused = cli(farm, tmp_path, "matrix", str(path), "--shape", shape, "--precision", "fp16", "--json")
    rows = json.loads(refused.stdout)
    assert refused.returncode == 1 and {r["outcome"] for r in rows} == {"refused"}
    assert all("invalid_spec" in r["reason"] and "TensorRT option" in r["reason"] for r in rows)


def test_rollout_from_the_old_version_builds_what_it_serves_and_reports_changes(farm_factory, peer_ort,  # noqa: ANN001
                                                                                 tmp_path: Path) -> None:
    peer_python, peer_version = peer_ort
    farm = two_version_farm(farm_factory, peer_python)
    sdk = farm.client()
    cpu = cpu_device()
    old, new = f"onnxruntime=={peer_version}", f"onnxruntime=={onnxruntime.__version__}"
    models = [sdk.upload(convnet(tmp_path / f"r{i}.onnx", channels=4, layers=1, seed=63 + i)) for i in range(3)]
    calib = sdk.upload_calibration(calibration_set(tmp_path / "calib.npz", samples=8)).digest
    for i, m in enumerate(models):  # the last one with a calibration data set (ONNX Runtime keeps it, unused)
        build = sdk.submit(m.id, f"{old}@{cpu}", batch_profile(), wait=True, calibration=calib if i == 2 else None)
        assert build.status == "succeeded"
    sdk.fetch(models[0].id, runtime=f"{old}@{cpu}")  # only the first is used lately

    plan = sdk.rollout(old, new, dry_run=True)
    assert sorted(r.old.model for r in plan) == sorted(m.id for m in models)
    assert {r.outcome for r in plan} == {"planned"} and {r.target for r in plan} == {f"{new}@{cpu}"}
    recent = sdk.rollout(old, new, since_days=1)
    assert [r.old.model for r in recent] == [models[0].id] and recent[0].outcome == "built"

    done = cli(farm, tmp_path, "rollout", "--from", old, "--to", new, "--json")
    assert done.returncode == 0, done.stderr
    report = {r["model"]: r for r in json.loads(done.stdout)}
    assert report[models[0].id]["outcome"] == "already there"  # resumed: what the first run built is kept
    assert {report[m.id]["outcome"] for m in models[1:]} == {"built"}
    for row in report.values():
        assert row["old"]["version"] == peer_version and row["new"]["version"] == onnxruntime.__version__
        assert row["new"]["validation_passed"] is True and row["latency_ratio"] > 0
        assert row["new"]["max_rel_error"] is not None
    again = {r.old.model: r for r in sdk.rollout(old, new, wait=False)}  # the same inputs as the old build's
    assert again[models[2].id].build.calibration == calib and again[models[0].id].build.calibration is None
    assert sdk.resolve(models[1].id, runtime=f"{new}@{cpu}").engine.version == onnxruntime.__version__
    with pytest.raises(Exception, match="from one version of a toolchain to another"):
        sdk.rollout(old, old)
