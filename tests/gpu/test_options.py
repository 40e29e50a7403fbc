"""Options TensorRT 8.6 lacks give a clear error; the plan header says which TensorRT built a plan.

- Submit-time: the fleet's feature list (each worker's runner --probe) lacks bf16, fp8, int4,
  strongly_typed, weight_streaming, strip_weights and same_compute_capability on 8.6, so POST /v1/builds
  answers 422 unsupported_option naming the option and the version, and nothing is queued.
- Build-time: version_compatible exists in 8.6's API but needs the lean runtime, which the PyPI 8.6.0
  wheel lacks: the build fails with the runner's unsupported_option error saying so.
- engine.version (read from plan bytes 24..27 by the worker) equals the probe's TensorRT version, and so
  does the header of the fetched file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gpu import support
from tests.gpu.support import TACTICS, build_summary, profile, submit_and_wait

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "options"
BASE = {"tf32": False, "profiles": [profile(1, 4, 16, 32)], "tactic_sources": TACTICS}
UNSUPPORTED = {
    "bf16": ({"precision": ["bf16"]}, "precision=bf16"),
    "fp8": ({"precision": ["fp8"]}, "precision=fp8"),
    "int4": ({"precision": ["int4"]}, "precision=int4"),
    "strongly_typed": ({"strongly_typed": True}, "strongly_typed"),
    "weight_streaming": ({"weight_streaming": True}, "weight_streaming"),
    "strip_weights": ({"strip_weights": True, "refit": "refit"}, "strip_weights"),
    "same_compute_capability": ({"hardware_compatibility": "same_compute_capability"},
                                "hardware_compatibility=same_compute_capability"),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_option_missing_from_8_6_is_refused_at_submit(farm, small_model: Path, trt_version: str, name: str,  # noqa: ANN001
                                                      results) -> None:
    from registry.errors import UnsupportedOption

    extra, feature = UNSUPPORTED[name]
    client = farm.client()
    spec = {**BASE, **extra}
    try:
        build = client.submit(small_model, "tensorrt", spec, wait=False)
    except UnsupportedOption as caught:
        exc = caught
    else:
        results.record(SECTION, name, {"unexpected": "accepted", "build": build.id, "status": build.status})
        pytest.fail(f"{name}: accepted at submit (build {build.id}), expected 422 unsupported_option")
    results.record(SECTION, name, {"status": exc.status, "code": exc.code, "message": exc.message[:600]})
    assert exc.status == 422 and exc.code == "unsupported_option", exc
    assert feature in exc.message and trt_version in exc.message, exc.message


def test_version_compatible_fails_clearly_without_lean_runtime(farm, small_model: Path, results) -> None:  # noqa: ANN001
    client = farm.client()
    info = submit_and_wait(client, small_model, {**BASE, "version_compatible": True}, timeout=600)
    summary = build_summary(client, info)
    results.record(SECTION, "version_compatible", summary)
    assert info.status == "failed", f"expected a clear failure (no lean runtime in the 8.6.0 wheel), got {info.status}"
    assert info.error is not None and info.error.code == "unsupported_option", info.error
    assert "lean" in info.error.message, info.error.message


def test_plan_header_version_equals_the_probe(farm, small_model: Path, trt_probe: dict, results) -> None:  # noqa: ANN001
    client = farm.client("cache-header")
    info = submit_and_wait(client, small_model, BASE)  # built by test_compat already (dedup) or now
    assert info.status == "succeeded", info.error
    engine = client.engine(info.engine_id)
    gpu = trt_probe["devices"][0]
    path = client.fetch(small_model, runtime=f"tensorrt=={trt_probe['version']}@{gpu['sku']}/{gpu['cc']}", spec=BASE)
    header = support.plan_header_version(path)
    workers = {t["version"] for w in client.workers() for t in w.toolchains if t["kind"] == "tensorrt"}
    results.record(SECTION, "plan_header", {"probe_version": trt_probe["version"], "engine_version": engine.version,
                                            "file_header": header,
                                            "metadata_plan_version": engine.metadata.get("plan_version"),
                                            "metadata_plan_build": engine.metadata.get("plan_build"),
                                            "fleet_versions": sorted(workers)})
    assert engine.version == trt_probe["version"]
    assert header.rsplit(".", 1)[0] == trt_probe["version"]
    assert engine.metadata.get("plan_version") == trt_probe["version"]
    assert workers == {trt_probe["version"]}
