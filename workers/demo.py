"""The README's demo (`trtfarm up --demo`): make a real convnet, build it on the embedded farm with ONNX
Runtime, fetch the engine back through the SDK, run it, and compare with the original model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def make_convnet(path: Path, channels: int = 16, layers: int = 3, size: int = 32) -> Path:
    """A small conv-relu stack + global pool + gemm with a dynamic batch dimension named N."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "input", 3
    for i in range(layers):
        w = numpy_helper.from_array((rng.standard_normal((channels, cin, 3, 3)) * 0.2).astype("float32"), f"w{i}")
        b = numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype("float32"), f"b{i}")
        inits += [w, b]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        prev, cin = f"r{i}", channels
    fc = numpy_helper.from_array((rng.standard_normal((channels, 10)) * 0.2).astype("float32"), "fc")
    inits.append(fc)
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["pool"]),
              helper.make_node("Flatten", ["pool"], ["flat"]),
              helper.make_node("MatMul", ["flat", "fc"], ["logits"])]
    graph = helper.make_graph(
        nodes, "demo_convnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="trtfarm-demo")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def run_demo(url: str, workdir: Path, say: Callable[[str], None]) -> bool:
    import numpy as np
    import onnxruntime as ort

    from registry.client import Farm

    farm = Farm(url, cache_dir=workdir / "client-cache")
    _wait_for_worker(farm, say)
    model_path = make_convnet(workdir / "demo" / "convnet.onnx")
    say(f"demo: made a convnet at {model_path}")
    spec = {"profiles": [{"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}}],
            "onnxruntime": {"graph_optimization_level": "all"}}
    build = farm.submit(model_path, target="onnxruntime", spec=spec, wait=True,
                        progress=lambda b: None)
    say(f"demo: build {build.id} {build.status} on {build.worker} -> engine {build.engine_id}")
    engine_path = farm.fetch(build.model, runtime="auto", spec=spec)
    say(f"demo: fetched {engine_path} through the SDK (sha256 verified)")
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype("float32")
    ours = ort.InferenceSession(str(engine_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    ref = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    err = float(np.max(np.abs(ours - ref)))
    engine = farm.engine(build.engine_id)
    say(f"demo: ran the engine on a 4x3x32x32 batch: max abs error vs the original model {err:.2e}; "
        f"farm validation passed={engine.validation_passed}, p50 {engine.latency_p50_ms:.3f} ms")
    ok = err < 1e-4 and bool(engine.validation_passed)
    say("demo: OK" if ok else "demo: FAILED")
    return ok


def _wait_for_worker(farm, say: Callable[[str], None], timeout_s: float = 120) -> None:  # noqa: ANN001
    import time

    deadline = time.monotonic() + timeout_s
    while not any(w.live for w in farm.workers()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no worker registered within {timeout_s:.0f} s; see the worker logs in the farm's home")
        time.sleep(0.5)
    say("demo: workers up: " + ", ".join(f"{w.name} ({', '.join(w.queues)})" for w in farm.workers() if w.live))
