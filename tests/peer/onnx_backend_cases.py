"""The ONNX backend test cases shipped inside the `onnx` package (model + inputs + expected outputs),
read the way onnx's own backend test runner reads them (onnx/backend/test/runner/__init__.py).

    <onnx>/backend/test/data/{pytorch-converted,pytorch-operator,simple}/<case>/model.onnx
    <onnx>/backend/test/data/.../<case>/test_data_set_0/input_N.pb, output_N.pb

Comparison (`compare`) follows onnx's `assert_similar_outputs`: same number of outputs, same shape,
same dtype, strings exactly equal, numbers within np.testing.assert_allclose(rtol=RTOL, atol=ATOL).
We use onnx's own default tolerances (rtol 1e-3, atol 1e-7), so a pass here is a pass by onnx's
standard, not a looser one of ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
RTOL = 1e-3  # onnx.backend.test.runner default
ATOL = 1e-7  # onnx.backend.test.runner default


def data_root() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    folder: Path

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"

    @property
    def model(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def data_set(self) -> Path:
        return self.folder / "test_data_set_0"


def discover() -> list[Case]:
    cases = []
    root = data_root()
    for suite in SUITES:
        for folder in sorted((root / suite).iterdir()):
            if (folder / "model.onnx").is_file() and (folder / "test_data_set_0").is_dir():
                cases.append(Case(suite, folder.name, folder))
    return cases


def graph_io(model_path: Path) -> tuple[list[Any], list[Any]]:
    """(graph inputs that are not initializers, graph outputs) as ValueInfoProtos."""
    import onnx

    model = onnx.load(str(model_path))
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits], list(model.graph.output)


def load_value(path: Path, type_proto: Any) -> Any:
    """One input_N.pb / output_N.pb, decoded by the type the model declares (as onnx's runner does)."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return numpy_helper.to_list(seq)
    if type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return numpy_helper.to_optional(opt)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def load_data(case: Case) -> tuple[dict[str, Any], list[Any]]:
    """(feeds by input name, expected outputs in graph order)."""
    inputs, outputs = graph_io(case.model)
    feeds = {vi.name: load_value(case.data_set / f"input_{k}.pb", vi.type) for k, vi in enumerate(inputs)}
    expected = [load_value(case.data_set / f"output_{k}.pb", vi.type) for k, vi in enumerate(outputs)]
    return feeds, expected


def profile_for(case: Case, feeds: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    """One optimization profile min = opt = max = the shipped input's shape, for every dynamic input."""
    inputs, _ = graph_io(case.model)
    profile = {}
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            continue
        dims = vi.type.tensor_type.shape.dim
        dynamic = not vi.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims)
        if dynamic:
            shape = [int(d) for d in feeds[vi.name].shape]
            profile[vi.name] = {"min": shape, "opt": shape, "max": shape}
    return profile


def checker_error(case: Case) -> str | None:
    import onnx

    try:
        onnx.checker.check_model(str(case.model))
    except Exception as exc:  # noqa: BLE001 - any checker complaint is the answer
        return f"{type(exc).__name__}: {exc}"
    return None


def run_model(path: Path, feeds: dict[str, Any]) -> list[Any]:
    """Run a model (or a fetched *.ort engine) with ONNX Runtime on CPU; outputs in graph order."""
    import onnxruntime as ort

    ort.set_default_logger_severity(4)  # the failures are reported by their exceptions; no stderr noise
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def compare(expected: list[Any], actual: list[Any]) -> str | None:
    """None when they match by onnx's backend-test rule; else what differs."""
    import numpy as np

    if len(expected) != len(actual):
        return f"{len(actual)} outputs, expected {len(expected)}"
    for k, (ref, out) in enumerate(zip(expected, actual)):
        if isinstance(ref, (list, tuple)):
            if not isinstance(out, (list, tuple)):
                return f"output {k}: got {type(out).__name__}, expected a sequence"
            problem = compare(list(ref), list(out))
            if problem:
                return f"output {k}: {problem}"
            continue
        out = np.asarray(out)
        ref = np.asarray(ref)
        if out.shape != ref.shape:
            return f"output {k}: shape {out.shape}, expected {ref.shape}"
        try:
            if ref.dtype == object:
                np.testing.assert_array_equal(out, ref)
            else:
                np.testing.assert_equal(out.dtype, ref.dtype)
                np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)
        except AssertionError as exc:
            return f"output {k}: " + " ".join(str(exc).split())[:400]
    return None


def direct_baseline(case: Case) -> str | None:
    """Can ONNX Runtime itself (no farm) run the shipped case and match? None = yes; else why not."""
    try:
        feeds, expected = load_data(case)
        actual = run_model(case.model, feeds)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        return "onnxruntime cannot run the model itself: " + " ".join(f"{type(exc).__name__}: {exc}".split())[:400]
    problem = compare(expected, actual)
    return None if problem is None else f"onnxruntime itself does not match the expected outputs: {problem}"
