"""The worker's side of plugin libraries (workers/plugins.py) and of validating a model with TensorRT plugin ops
(workers/verify.py), with a folder blob store and a recording fake of the runners: a worker loads only what its
OWN TRTFARM_ALLOWED_PLUGINS allows (nothing is downloaded otherwise), hashes the downloaded bytes again, and hands
every runner command (run, bench) the libraries; an engine whose model ONNX Runtime cannot run is run, timed and
recorded as skipped, not failed."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from registry.blobs.local import LocalBlobStore
from registry.errors import DigestMismatch, InvalidInput, PluginNotAllowed
from registry.settings import Settings
from registry.spec import parse_spec
from tests.models import efficient_nms_model
from workers import plugins, validation
from workers.launcher import BuildLog
from workers.verify import EngineUnderTest, check_engine

LIBRARY = b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00\x3e\x00" + bytes(44) + b"fake plugin"


@pytest.fixture
def stored(tmp_path: Path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    return blobs, blobs.put_bytes(LIBRARY).digest


def context(blobs, allowed: str = "", **extra):
    settings = Settings(home=Path("/nonexistent"), allowed_plugins=allowed, bench_iterations=3)
    return types.SimpleNamespace(settings=settings, blobs=blobs, name="gpu-host:gpu0", **extra)


def job(digests, toolchain="tensorrt", spec=None):
    return types.SimpleNamespace(plugins=tuple(digests), toolchain=toolchain, spec=parse_spec(spec or {}))


def test_a_library_this_worker_does_not_allow_is_refused_before_any_download(stored, tmp_path, monkeypatch):
    blobs, digest = stored
    monkeypatch.setattr(blobs, "get_to_file", lambda *a, **k: pytest.fail("downloaded a library it does not allow"))
    other = "sha256:" + "ab" * 32
    for allowed in ("", other):  # none allowed; another one allowed (say, by the API's setting, not this worker's)
        with pytest.raises(PluginNotAllowed) as refused:
            plugins.before_build(context(blobs, allowed), job([digest]), tmp_path, BuildLog(tmp_path / "log"))
        assert refused.value.code == "plugin_not_allowed"
        assert f"worker gpu-host:gpu0 does not load plugin library {digest}" in refused.value.message
        assert "its TRTFARM_ALLOWED_PLUGINS does not name that digest" in refused.value.message
        assert refused.value.details["setting"] == "TRTFARM_ALLOWED_PLUGINS"
    assert not (tmp_path / "plugins").exists()


def test_an_allowed_library_is_downloaded_verified_and_passed_to_the_runner(stored, tmp_path):
    blobs, digest = stored
    log = BuildLog(tmp_path / "log")
    found = plugins.before_build(context(blobs, digest), job([digest]), tmp_path, log)
    path = tmp_path / "plugins" / f"lib{digest[7:23]}.so"
    assert found.digests == (digest,) and found.paths == (path,) and found.args == ["--plugin", str(path)]
    assert path.read_bytes() == LIBRARY
    assert f"plugin library {digest}: {len(LIBRARY)} bytes, digest verified, allowed by TRTFARM_ALLOWED_PLUGINS" in \
        log.tail_text()
    assert plugins.before_build(context(blobs), job([]), tmp_path, log).args == []  # no plugins: nothing to allow


def test_bytes_that_do_not_hash_to_the_digest_are_not_loaded(stored, tmp_path, monkeypatch):
    blobs, digest = stored
    monkeypatch.setattr(blobs, "get_to_file", lambda d, dest, **k: Path(dest).write_bytes(LIBRARY + b"tampered"))
    with pytest.raises(DigestMismatch, match="not loaded"):
        plugins.before_build(context(blobs, digest), job([digest]), tmp_path, BuildLog(tmp_path / "log"))
    assert list((tmp_path / "plugins").iterdir()) == []


def test_a_missing_blob_or_an_onnxruntime_build_fails_clearly(stored, tmp_path):
    blobs, digest = stored
    missing = "sha256:" + "cd" * 32
    with pytest.raises(InvalidInput, match="cannot be read from the blob store"):
        plugins.before_build(context(blobs, missing), job([missing]), tmp_path, BuildLog(tmp_path / "log"))
    with pytest.raises(InvalidInput, match="onnxruntime builds load none"):
        plugins.before_build(context(blobs, digest), job([digest], "onnxruntime"), tmp_path, BuildLog(tmp_path / "l"))


class FakeRunners:
    """The runner commands check_engine sends: `run` writes outputs of the model's declared shapes."""

    def __init__(self):
        self.calls = []

    def run(self, toolchain, command, args, *, workdir, log, timeout, should_stop):
        self.calls.append((command, list(args)))
        if command == "bench":
            return {"latency_ms": {"p50": 0.1, "p99": 0.2, "iterations": 3}, "device": "fake"}
        out = Path(args[args.index("--outputs") + 1])
        np.savez(out, num_detections=np.zeros((1, 1), np.int32), detection_boxes=np.zeros((1, 16, 4), np.float32))
        return {"outputs": {}}


def test_a_model_with_plugin_ops_is_run_and_timed_but_its_validation_is_skipped(tmp_path):
    model = efficient_nms_model(tmp_path / "nms.onnx")
    assert validation.plugin_ops(model) == ["EfficientNMS_TRT"]
    runners = FakeRunners()
    ctx = context(None, runners=runners)
    eut = EngineUnderTest(types.SimpleNamespace(kind="tensorrt"), model, tmp_path / "engine.plan", tmp_path,
                          plugin_args=("--plugin", "/b/plugins/libx.so"))
    log = BuildLog(tmp_path / "build.log")
    keeper = types.SimpleNamespace(step=lambda name: None, should_stop=lambda: False)
    verdict = check_engine(ctx, job([]), eut, log, keeper)
    reason = "the model uses TensorRT plugin op(s) EfficientNMS_TRT that ONNX Runtime cannot run"
    assert verdict.validation["passed"] is None and verdict.validation["skipped"] == reason
    assert verdict.validation["cases"][0]["skipped"] == reason
    assert verdict.latency["p50"] == 0.1  # the benchmark ran
    assert [c for c, _ in runners.calls] == ["run", "bench"]
    assert all(args[-2:] == ["--plugin", "/b/plugins/libx.so"] for _, args in runners.calls)
    text = log.tail_text()
    assert f"skipped: {reason}" in text and "the engine ran; no reference to compare its outputs with" in text
