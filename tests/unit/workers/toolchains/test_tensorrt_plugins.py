"""Plugin libraries in the TensorRT runner, against the fake `tensorrt` of test_tensorrt_options (its plugin
registry as TensorRT 8.5/8.6's Python API has it: init_libnvinfer_plugins, get_plugin_registry().
plugin_creator_list of creators with name / plugin_version / plugin_namespace) and a fake ctypes.CDLL: TensorRT's
own plugins are registered first, then each --plugin library is loaded RTLD_GLOBAL, before the model is parsed
(build) or the plan deserialized (run), and the log names what each library registered."""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np
import pytest

from tests.unit.workers.toolchains.test_tensorrt_options import (
    STATIC_X,
    FakeEngine,
    canonical,
    make_fake_trt,
    run_build,
    write_model,
)
from tests.unit.workers.toolchains.test_tensorrt_precisions import FakeContext, FakeCuda
from workers.toolchains.tensorrt_runner import __main__ as cli
from workers.toolchains.tensorrt_runner import runtime, session


@pytest.fixture
def cdll(monkeypatch):
    """ctypes.CDLL as the runner calls it: records (path, mode); a path containing 'broken' fails like dlopen,
    any other registers the creator named after the file (libmy_nms.so -> MY_NMS_TRT) in the fake's registry."""
    loaded = []

    def fake_cdll(path, mode=0):
        if "broken" in path:
            raise OSError(f"{path}: invalid ELF header")
        loaded.append((path, mode))
        trt = sys.modules["tensorrt"]
        trt.events.append(f"CDLL {path}")
        name = path.rsplit("/", 1)[-1].removeprefix("lib").removesuffix(".so").upper() + "_TRT"
        trt.get_plugin_registry().register(name, "2")
        return object()

    monkeypatch.setattr(runtime.ctypes, "CDLL", fake_cdll)
    return loaded


def test_a_build_loads_its_plugin_libraries_after_tensorrts_own_and_before_parsing(tmp_path, install, cdll, capsys):
    trt = install(make_fake_trt("8.6"))
    libs = [str(tmp_path / "libmy_nms.so"), str(tmp_path / "libother.so")]
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(),
                             "--plugin", libs[0], "--plugin", libs[1])
    assert code == 0, result
    assert cdll == [(libs[0], ctypes.RTLD_GLOBAL), (libs[1], ctypes.RTLD_GLOBAL)]
    assert trt.events[:4] == ["init_libnvinfer_plugins", f"CDLL {libs[0]}", f"CDLL {libs[1]}", "parse_from_file"]
    log = capsys.readouterr().err
    assert f"loaded plugin library {libs[0]}: MY_NMS_TRT (version 2) registered" in log
    assert f"loaded plugin library {libs[1]}: OTHER_TRT (version 2) registered" in log


def test_a_library_that_does_not_load_fails_the_build_naming_it(tmp_path, install, cdll):
    install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(),
                             "--plugin", str(tmp_path / "libbroken.so"))
    assert code == 2 and result["error"]["code"] == "invalid_input"
    assert result["error"]["message"].startswith(f"cannot load plugin library {tmp_path / 'libbroken.so'}")
    assert "invalid ELF header" in result["error"]["message"]


def test_a_library_registering_nothing_new_is_said_so(tmp_path, install, cdll, monkeypatch, capsys):
    trt = install(make_fake_trt("8.6"))
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda path, mode=0: object())
    assert runtime.load_plugins(trt, runtime.make_logger(trt), ["/x/libnvinfer_plugin.so.8"])
    assert "loaded plugin library /x/libnvinfer_plugin.so.8: it registered no new plugin creator" in \
        capsys.readouterr().err
    assert runtime.plugin_creators(trt) == ["EfficientNMS_TRT (version 1)", "BatchedNMS_TRT (version 1)"]


def built_engine(tmp_path, install, monkeypatch):  # noqa: ANN001, ANN201
    """A plan built by the fake TensorRT 8.6 at tmp_path/plan, run through a fake CUDA driver: (trt, cuda)."""
    trt = install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [{"name": "x", "shape": [1, 3, 4, 5]}], [{"name": "y", "shape": [1, 3, 4, 5]}])
    assert run_build(tmp_path, model, canonical())[0] == 0
    trt.events.clear()
    fake_cuda = FakeCuda()
    fake_cuda.make_current = lambda index: None
    monkeypatch.setattr(session, "CudaDriver", lambda: fake_cuda)
    monkeypatch.setattr(FakeEngine, "create_execution_context", lambda engine: FakeContext(engine, fake_cuda),
                        raising=False)
    return trt, fake_cuda


@pytest.mark.parametrize("command", ["run", "bench"])
def test_run_and_bench_load_the_libraries_before_deserializing(tmp_path, install, cdll, monkeypatch, command):
    trt, fake_cuda = built_engine(tmp_path, install, monkeypatch)
    if command == "bench":  # no CUDA events in the fake: time nothing but the order of the calls
        monkeypatch.setattr(session, "time_iterations", lambda s, warmup, iterations, max_seconds=None:
                            ([1.0], [1.0], "iterations"))
        monkeypatch.setattr(fake_cuda, "device_info", lambda index: {"name": "fake"}, raising=False)
    np.savez(tmp_path / "in.npz", x=np.ones((1, 3, 4, 5), np.float32))
    lib = str(tmp_path / "libmy_nms.so")
    extra = ["--outputs", str(tmp_path / "out.npz")] if command == "run" else ["--iterations", "1"]
    code = cli.main([command, "--engine", str(tmp_path / "plan"), "--inputs", str(tmp_path / "in.npz"), *extra,
                     "--plugin", lib, "--result", str(tmp_path / "r.json")])
    assert code == 0, (tmp_path / "r.json").read_text()
    assert trt.events == ["init_libnvinfer_plugins", f"CDLL {lib}", "deserialize_cuda_engine"]
    assert cdll == [(lib, ctypes.RTLD_GLOBAL)]
    if command == "run":
        assert json.loads((tmp_path / "r.json").read_text())["outputs"] == {"y": [1, 3, 4, 5]}


def test_run_without_plugins_still_registers_tensorrts_own(tmp_path, install, monkeypatch):
    """An engine with a built-in plugin layer (EfficientNMS_TRT) deserializes only after init_libnvinfer_plugins."""
    trt, fake_cuda = built_engine(tmp_path, install, monkeypatch)
    np.savez(tmp_path / "in.npz", x=np.ones((1, 3, 4, 5), np.float32))
    assert cli.main(["run", "--engine", str(tmp_path / "plan"), "--inputs", str(tmp_path / "in.npz"), "--outputs",
                     str(tmp_path / "out.npz"), "--result", str(tmp_path / "r.json")]) == 0
    assert trt.events == ["init_libnvinfer_plugins", "deserialize_cuda_engine"]
