"""TensorRT plugins through the farm (docs/design.md "Security model").

1. TensorRT's own EfficientNMS_TRT plugin, reached through the ONNX parser's plugin fallback (an op ONNX does not
   define, in the default domain: tests/models.efficient_nms_model), built by the session farm. The farm records
   its validation as skipped (ONNX Runtime cannot run the op; the engine still ran and was timed); our own check
   runs the FETCHED engine on crafted boxes and scores (clusters that overlap, swapped corners, no tied scores)
   and compares it with the numpy reference (tests/gpu/nms_reference.py): detection counts and classes exact,
   boxes and scores within 1e-5.
2. A plugin library end to end, in a farm of its own whose TRTFARM_ALLOWED_PLUGINS names it: uploaded, named by
   the build, checked against the worker's own allow-list, downloaded, hashed again and loaded by every runner
   command (the build log says so), listed in the engine's metadata, announced by fetch (PluginLibrariesNeeded);
   an uploaded library the farm does not allow is refused at submit. The C library's libm stands in for a custom
   plugin library (any ELF shared object goes through the same path; a real one also registers plugin creators,
   which the runner logs: tests/unit/workers/toolchains/test_tensorrt_plugins.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from registry.digests import digest_of_file
from tests.gpu import support
from tests.gpu.nms_reference import crafted_inputs, efficient_nms, iou_margin
from tests.gpu.support import TACTICS, build_summary

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(support.TRT_PYTHON is None, reason=support.SKIP_REASON)]
SECTION = "plugins"
# 64 boxes x 4 classes per image: about 190 candidates, about 120 after NMS (seed 0: 120 cut at the limit, 115)
NMS = {"batch": 2, "boxes": 64, "classes": 4, "max_output_boxes": 120, "score_threshold": 0.25, "iou_threshold": 0.5}
SPEC = {"tactic_sources": TACTICS}  # the plugin's kernels need neither cuBLAS nor cuDNN (the kit's are stubs)
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def nms_model(models_dir: Path) -> Path:
    from tests.models import efficient_nms_model

    return efficient_nms_model(models_dir / "efficient-nms.onnx", **NMS)


@pytest.fixture(scope="module")
def feeds() -> dict[str, np.ndarray]:
    """Crafted inputs of the first seed whose box pairs all keep 1e-4 away from the IoU threshold."""
    for seed in range(20):
        found = crafted_inputs(NMS["batch"], NMS["boxes"], NMS["classes"], seed=seed)
        if iou_margin(found["boxes"], NMS["iou_threshold"]) > 1e-4:
            return found
    raise AssertionError("no seed gives boxes clear of the IoU threshold")


def reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return efficient_nms(feeds["boxes"], feeds["scores"], score_threshold=NMS["score_threshold"],
                         iou_threshold=NMS["iou_threshold"], max_output_boxes=NMS["max_output_boxes"])


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Counts and classes exact, boxes and scores within TOLERANCE, over each image's valid detections."""
    assert ours["num_detections"].tolist() == ref["num_detections"].tolist(), \
        (ours["num_detections"].tolist(), ref["num_detections"].tolist())
    worst = {"boxes": 0.0, "scores": 0.0}
    for image, (count,) in enumerate(ref["num_detections"].tolist()):
        assert ours["detection_classes"][image, :count].tolist() == ref["detection_classes"][image, :count].tolist()
        for name in worst:
            got, want = ours[f"detection_{name}"][image, :count], ref[f"detection_{name}"][image, :count]
            worst[name] = max(worst[name], float(np.max(np.abs(got - want), initial=0.0)))
    assert max(worst.values()) <= TOLERANCE, worst
    return {**worst, "detections": ref["num_detections"][:, 0].tolist()}


def runtime_of(trt_probe: dict) -> str:
    gpu = trt_probe["devices"][0]
    return f"tensorrt=={trt_probe['version']}@{gpu['sku']}/{gpu['cc']}"


def test_efficient_nms_builds_and_matches_the_numpy_reference(farm, nms_model: Path, feeds: dict, trt_probe: dict,  # noqa: ANN001
                                                               results, tmp_path: Path) -> None:
    client = farm.client("cache-nms")
    info = support.submit_and_wait(client, nms_model, SPEC, timeout=600)
    summary = build_summary(client, info)
    results.record(SECTION, "efficient_nms", summary)
    assert info.status == "succeeded", f"{info.error}\n{summary.get('log_tail', '')}"
    engine = client.engine(info.engine_id)
    assert engine.validation_passed is None, engine.validation  # not failed: no reference to compare with
    assert "TensorRT plugin op(s) EfficientNMS_TRT that ONNX Runtime cannot run" in engine.validation["skipped"]
    assert engine.latency_p50_ms is not None and engine.plugins == []
    path = client.fetch(nms_model, runtime=runtime_of(trt_probe), spec=SPEC)
    figures = compare(support.run_engine(path, feeds, tmp_path), reference(feeds))
    results.record(SECTION, "efficient_nms", {**summary, "own_check": figures, "tolerance": TOLERANCE,
                                              "validation_skipped": engine.validation["skipped"]})


def stand_in_library() -> Path:
    """The C math library this process has loaded (numpy links it): an ELF shared object at the same path in the
    TensorRT interpreter's process on this host."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "/libm.so" in path or "/libm-" in path:
            return Path(path)
    pytest.skip("no libm mapped in this process to stand in for a plugin library")


@pytest.fixture(scope="module")
def plugin_farm(trt_probe: dict, tmp_path_factory: pytest.TempPathFactory, logs_dir: Path):  # noqa: ANN201
    library = stand_in_library()
    digest, _ = digest_of_file(library)
    instance = support.gpu_farm(tmp_path_factory.mktemp("plugin-farm"), "auto", expected_workers=1,
                                TRTFARM_ALLOWED_PLUGINS=digest)
    try:
        instance.start()
        yield instance, library, digest
    finally:
        instance.stop()
        instance.save_logs(logs_dir / "farm-logs.txt", chars=60_000)


def test_an_allowed_plugin_library_is_loaded_by_the_worker_and_listed_with_the_engine(  # noqa: ANN201
        plugin_farm, nms_model: Path, feeds: dict, trt_probe: dict, results, tmp_path: Path):
    from registry.errors import PluginNotAllowed
    from registry.pluginclient import PluginLibrariesNeeded

    farm, library, digest = plugin_farm
    client = farm.client("cache-plugin")
    uploaded = client.upload_plugin(library)
    assert (uploaded.digest, uploaded.allowed) == (digest, True)
    info = client.submit(nms_model, "tensorrt", SPEC, plugins=[library], wait=True, timeout=600)
    log = client.log(info.id)
    assert f"plugin library {digest}" in log and "digest verified" in log
    assert f"lib{digest[7:23]}.so" in log and "loaded plugin library" in log  # the runner's line: the build's copy
    engine = client.engine(info.engine_id)
    assert engine.plugins == [digest] and engine.metadata["plugins"] == [digest]
    with pytest.warns(PluginLibrariesNeeded, match=digest):
        path = client.fetch(nms_model, runtime=runtime_of(trt_probe), spec=SPEC)
    figures = compare(support.run_engine(path, feeds, tmp_path), reference(feeds))
    other = tmp_path / "libother.so"
    shutil.copyfile(library, other)
    with open(other, "ab") as f:
        f.write(b"\0")  # still an ELF shared object, another digest
    refused = client.upload_plugin(other)
    assert not refused.allowed
    with pytest.raises(PluginNotAllowed, match="TRTFARM_ALLOWED_PLUGINS"):
        client.submit(nms_model, "tensorrt", SPEC, plugins=[refused.digest], wait=False)
    results.record(SECTION, "plugin_library", {"library": str(library), "digest": digest, "build": info.id,
                                               "engine_plugins": engine.plugins, "own_check": figures,
                                               "log": [ln[:300] for ln in log.splitlines() if "plugin" in ln][:10]})
