"""/metrics of a real farm (PostgreSQL, Redis, S3, API + one worker) after one real ONNX Runtime build, a
resolve and an artifact download: the farm's state from the database, request latency and bytes by route
template, and every metric name the alert rules and the dashboard in infra/ query."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.infra_metrics import metric_names
from tests.integration.conftest import RunningFarm, batch_profile
from tests.models import convnet


def _samples(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_after_one_build(farm_factory, ort_runtime: str, tmp_path: Path) -> None:  # noqa: ANN001
    farm: RunningFarm = farm_factory(blobs="file")  # the API streams artifacts itself (no presigned redirect)
    sdk = farm.client()
    build = sdk.submit(convnet(tmp_path / "m.onnx", channels=4, layers=1, seed=71), ort_runtime, batch_profile(),
                       poll_interval=0.3, timeout=120)
    assert build.status == "succeeded"
    engine = sdk.engine(build.engine_id)
    with farm.http() as http:
        resolved = http.get("/v1/engines/resolve", params={"model": build.model, "toolchain": "onnxruntime",
                                                           "version": engine.version, "cpu": engine.device})
        artifact = http.get(f"/v1/engines/{engine.id}/artifact", follow_redirects=False)
        scraped = http.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    samples = _samples(scraped.text)

    assert _value(samples, "trtfarm_builds", status="succeeded", toolchain="onnxruntime") == 1
    assert _value(samples, "trtfarm_builds_finished_total", status="succeeded") == 1
    assert _value(samples, "trtfarm_workers_live") == 1 and _value(samples, "trtfarm_workers", state="idle") == 1
    assert _value(samples, "trtfarm_queue_workers") >= 1 and _value(samples, "trtfarm_queue_depth") == 0
    assert _value(samples, "trtfarm_build_phase_duration_seconds_count", phase="build", toolchain="onnxruntime") == 1
    assert _value(samples, "trtfarm_engine_validations_total", toolchain="onnxruntime") == 1
    assert _value(samples, "trtfarm_engines", toolchain="onnxruntime") == 1
    route = "/v1/engines/{engine_id}/artifact"
    assert _value(samples, "trtfarm_http_request_duration_seconds_count", route="/v1/engines/resolve",
                  status=f"{resolved.status_code // 100}xx") == 1
    assert _value(samples, "trtfarm_http_request_duration_seconds_count", route=route) == 1
    assert artifact.status_code == 200 and len(artifact.content) == engine.size
    assert _value(samples, "trtfarm_http_response_bytes_total", route=route) == engine.size
    assert not any(engine.id in s.labels.get("route", "") for s in samples["trtfarm_http_response_bytes_total"])

    missing = sorted(name for name in metric_names() if name not in samples)
    assert not missing, f"infra/ queries metrics the farm does not export: {missing}"
