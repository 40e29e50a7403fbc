"""One worker, two versions of one toolchain (TRTFARM_TOOLCHAINS=onnxruntime=A,onnxruntime=B): it probes
both, serves both versions' queues one build at a time, and each runtime resolves to its own version's
engine. The CPU stand-in for a GPU host with TensorRT 8.5 and 8.6 side by side (issue 8)."""

from __future__ import annotations

import sys
from pathlib import Path

import onnxruntime
import pytest

from registry.errors import ToolchainError
from registry.settings import Settings
from registry.targets import cpu_device
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet
from workers.context import discover


def test_one_worker_builds_for_both_versions_and_each_runtime_gets_its_own(farm_factory, peer_ort,  # noqa: ANN001
                                                                           tmp_path: Path) -> None:
    peer_python, peer_version = peer_ort
    assert peer_version != onnxruntime.__version__
    farm: RunningFarm = farm_factory(workers=0)
    farm.add_worker(TRTFARM_TOOLCHAINS=f"onnxruntime={sys.executable},onnxruntime={peer_python}")
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
