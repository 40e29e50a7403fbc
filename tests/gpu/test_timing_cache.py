"""Shared timing caches on a real GPU (docs/design.md "Timing caches").

Runs first in the suite so that the FP16 partition starts empty: the first build of the medium convnet
is cold (generation 0), everything after it finds the partition's cache.

1. Warm rebuild: the same model with a spec that changes the build key but not the timing-cache
   partition (registry.services.timing_caches.partition_key: precision, tf32, strong typing, hardware
   compatibility, tactic sources). `profiling_verbosity=detailed` changes the key and not a single tactic
   choice; a second warm build changes the profile's max batch (8 -> 16), which TensorRT must time for.
   Claim: warm engine.build_seconds <= 0.3 x cold.
2. A second model that shares every layer shape with the first (8 of the same 64-channel 3x3 convs at
   64x64, other weights) built through the farm with the shared cache, against the fairest cold
   baseline we have: the same runner, same spec, same GPU model, no --timing-cache-in (a cold build in
   an empty partition), run after the farm's builds. CUDA_CACHE_DISABLE=1 (set by scripts/gpu-suite.sh)
   keeps the driver's JIT cache from helping whichever build comes second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, submit_and_wait

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "timing_cache"


def fp16_spec(batch_max: int = 8, **extra) -> dict:
    return {"precision": ["fp16"], "profiles": [profile(1, 4, batch_max, 64)], "tactic_sources": TACTICS, **extra}


def test_warm_rebuild_uses_the_shared_cache(farm, medium_model: Path, results) -> None:  # noqa: ANN001
    client = farm.client()
    cold = submit_and_wait(client, medium_model, fp16_spec())
    results.record(SECTION, "cold", build_summary(client, cold))
    assert cold.status == "succeeded", f"cold build failed: {cold.error}\n{client.log(cold.id)[-4000:]}"
    warm = submit_and_wait(client, medium_model, fp16_spec(profiling_verbosity="detailed"))
    results.record(SECTION, "warm_same_tactics", build_summary(client, warm))
    warm_max = submit_and_wait(client, medium_model, fp16_spec(batch_max=16))
    results.record(SECTION, "warm_profile_max_16", build_summary(client, warm_max))

    assert warm.status == "succeeded", f"warm build failed: {warm.error}\n{client.log(warm.id)[-4000:]}"
    assert warm.key != cold.key
    cold_tc, warm_tc = cold.timing_cache or {}, warm.timing_cache or {}
    assert cold_tc.get("partition") == warm_tc.get("partition"), (cold_tc, warm_tc)
    assert cold_tc.get("generation_used") == 0 and cold_tc.get("written_generation") == 1, cold_tc
    assert (warm_tc.get("generation_used") or 0) >= 1, warm_tc
    assert not warm_tc.get("rejected"), f"TensorRT rejected the shared cache: {warm_tc}"
    cold_s = client.engine(cold.engine_id).build_seconds
    warm_s = client.engine(warm.engine_id).build_seconds
    ratio = warm_s / cold_s
    figures = {"cold_build_seconds": cold_s, "warm_build_seconds": warm_s, "ratio": round(ratio, 4),
               "cache_size_after_cold": cold_tc.get("size_after"), "cache_size_after_warm": warm_tc.get("size_after"),
               "warm_mismatch_ignored": bool((client.engine(warm.engine_id).metadata.get("timing_cache") or {})
                                             .get("mismatch_ignored"))}
    if warm_max.status == "succeeded":
        warm_max_s = client.engine(warm_max.engine_id).build_seconds
        figures.update(warm_profile_max_16_build_seconds=warm_max_s, ratio_profile_max_16=round(warm_max_s / cold_s, 4))
    results.record(SECTION, "figures", figures)
    assert ratio <= 0.3, f"warm rebuild took {warm_s:.2f} s = {ratio:.2f} x the cold {cold_s:.2f} s (claim: <= 0.3)"


def test_second_model_benefits_from_the_first_models_cache(farm, models_dir: Path, medium_model: Path,  # noqa: ANN001
                                                          results, tmp_path: Path) -> None:
    from registry.keys import spec_canonical
    from registry.spec import parse_spec
    from tests.models import convnet

    client = farm.client()
    first = submit_and_wait(client, medium_model, fp16_spec())  # built by the test above (dedup), or now
    assert first.status == "succeeded", first.error
    second_model = convnet(models_dir / "convnet-medium-b.onnx", channels=64, layers=8, size=64, seed=1)
    shared = submit_and_wait(client, second_model, fp16_spec())
    results.record(SECTION, "second_model_shared_cache", build_summary(client, shared))
    assert shared.status == "succeeded", f"{shared.error}\n{client.log(shared.id)[-4000:]}"

    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec_canonical(parse_spec(fp16_spec()))))
    rc, body, log, wall = support.runner_call(
        "build", ["--model", second_model, "--spec", spec_path, "--out", tmp_path / "cold.plan",
                  "--timing-cache-out", tmp_path / "cold.cache"], tmp_path, gpu=0)
    assert rc == 0 and body.get("ok"), f"cold baseline build failed: {body.get('error')}\n{log[-4000:]}"
    cold_s = body["metadata"]["build_seconds"]
    shared_tc = shared.timing_cache or {}
    shared_s = client.engine(shared.engine_id).build_seconds
    results.record(SECTION, "second_model", {
        "shared_cache_build_seconds": shared_s, "cold_baseline_build_seconds": cold_s,
        "ratio": round(shared_s / cold_s, 4), "generation_used": shared_tc.get("generation_used"),
        "cache_size_before": shared_tc.get("size_before"), "cache_size_after": shared_tc.get("size_after"),
        "cold_baseline_cache_bytes": body["metadata"]["timing_cache"].get("out_bytes"),
        "baseline": "same runner + spec on GPU 0, no --timing-cache-in, run after the farm builds"})
    assert (shared_tc.get("generation_used") or 0) >= 1, f"the second model did not get the shared cache: {shared_tc}"
    assert shared_s < cold_s, (f"the second model with the first's cache took {shared_s:.2f} s; "
                               f"a cold build of it took {cold_s:.2f} s")
