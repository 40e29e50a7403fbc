"""Two GPUs, one worker each: the same batch of builds against one worker on one GPU.

Four distinct convnets (16/24/32/48 channels, so no build's tactics are in another's timing cache) are
submitted at once, FP16 with a dynamic batch profile. Wall time = first submit to last build finished
(build, validation and benchmark included: what a user waits for). Each side runs on a FRESH embedded
farm (empty timing caches): `--gpus auto` (one worker per GPU) and `--gpus 0` (one worker).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.embedded import EmbeddedFarm
from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, gpu_farm, profile, wait_all

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "two_gpus"
CHANNELS = (16, 24, 32, 48)
SPEC = {"precision": ["fp16"], "profiles": [profile(1, 4, 8, 48)], "tactic_sources": TACTICS}


def run_batch(farm: EmbeddedFarm, models: list[Path]) -> dict:
    client = farm.client()
    started = time.monotonic()
    submitted = [client.submit(m, "tensorrt", SPEC, wait=False) for m in models]
    done = wait_all(client, submitted, timeout=400)
    wall = time.monotonic() - started
    return {"wall_seconds": round(wall, 2), "builds": [build_summary(client, b) for b in done],
            "workers_used": sorted({b.worker for b in done if b.worker}),
            "all_succeeded": all(b.status == "succeeded" for b in done)}


def test_two_workers_share_a_batch_of_builds(trt_probe: dict, tmp_path_factory, logs_dir: Path,  # noqa: ANN001
                                             results) -> None:
    from tests.models import convnet

    if len(trt_probe["devices"]) < 2:
        pytest.skip(f"needs 2 GPUs; the toolchain sees {len(trt_probe['devices'])}")
    folder = tmp_path_factory.mktemp("two-gpu-models")
    models = [convnet(folder / f"convnet-{c}.onnx", channels=c, layers=6, size=48, seed=c) for c in CHANNELS]
    outcome = {}
    for label, gpus, workers in (("two_workers", "auto", len(trt_probe["devices"])), ("one_worker", "0", 1)):
        farm = gpu_farm(tmp_path_factory.mktemp(f"farm-{label}"), gpus, expected_workers=workers)
        try:
            farm.start()
            outcome[label] = run_batch(farm, models)
            results.record(SECTION, label, outcome[label])
        finally:
            farm.stop()
            farm.save_logs(logs_dir / "farm-logs.txt", chars=60_000)
    two, one = outcome["two_workers"], outcome["one_worker"]
    results.record(SECTION, "figures", {
        "builds": len(models), "gpus": len(trt_probe["devices"]), "two_workers_wall_seconds": two["wall_seconds"],
        "one_worker_wall_seconds": one["wall_seconds"],
        "speedup": round(one["wall_seconds"] / two["wall_seconds"], 3)})
    assert two["all_succeeded"] and one["all_succeeded"], (two, one)
    assert len(two["workers_used"]) >= 2, f"only {two['workers_used']} built anything"
    assert len(one["workers_used"]) == 1
