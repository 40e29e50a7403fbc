"""INT8 on the CPU: tests/models.qdq_convnet runs in ONNX Runtime (with its own INT8 kernels too), the farm sees
its Q/DQ nodes, and the validation tolerances of INT8 engines (workers/validation.py) and their inputs from the
calibration data set (workers/calibsamples.py)."""

from __future__ import annotations

import numpy as np
import pytest

from registry import onnxinfo
from registry.spec import parse_spec
from tests.models import calibration_set, convnet, convnet_proto, qdq_convnet, qdq_convnet_proto
from workers import calibsamples, validation


def session(model, level: str = "ORT_DISABLE_ALL"):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("layers,channels", [(2, 8), (4, 16)])
def test_qdq_convnet_runs_in_onnxruntime_close_to_its_float_network(layers, channels):
    """The fake-quantized reference stays within calibration's bound of the float network, and ONNX Runtime's
    own INT8 kernels (all optimizations: QLinearConv) within the Q/DQ bound of the fake-quantized reference:
    measured 7e-4 (2 layers) and 3.4e-3 (4 layers), over FP32's 1e-3 and well under int8_qdq's 5e-2."""
    qdq, plain = qdq_convnet_proto(channels, layers), convnet_proto(channels, layers)
    x = {"input": np.random.default_rng(9).uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32)}
    reference = session(qdq).run(None, x)[0]
    assert reference.shape == (8, 10)
    assert validation.errors(session(plain).run(None, x)[0], reference)[1] <= validation.TOLERANCES["int8"]
    kernels = session(qdq, "ORT_ENABLE_ALL").run(None, x)[0]
    assert validation.errors(reference, kernels)[1] <= validation.TOLERANCES["int8_qdq"]


def test_qdq_convnet_is_written_as_qat_exporters_write_it(tmp_path):
    proto = onnxinfo.load(qdq_convnet(tmp_path / "q.onnx", dynamic_batch=False))
    assert proto.opset_import[0].version == 13
    ops = onnxinfo.op_types(proto)
    assert ops == {"Conv": 2, "DequantizeLinear": 4, "Flatten": 1, "Gemm": 1, "QuantizeLinear": 4, "Relu": 2}
    weights = {i.name: i for i in proto.graph.initializer}
    quantizers = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    per_channel = [n for n in quantizers if n.input[0] in weights]  # float weights -> Q -> DQ -> Conv
    assert len(per_channel) == 2 and all({a.name: a.i for a in n.attribute} == {"axis": 0} for n in per_channel)
    assert [tuple(weights[n.input[1]].dims) for n in per_channel] == [(8,), (8,)]  # one scale per output channel
    activations = [n for n in quantizers if n.input[0] not in weights]
    assert all(tuple(weights[n.input[1]].dims) == () for n in activations)  # one scale per tensor
    assert all(weights[n.input[2]].data_type == 3 for n in quantizers)  # int8 zero points (symmetric)


def test_the_farm_tells_qdq_models_from_plain_ones(tmp_path):
    assert calibsamples.explicitly_quantized(qdq_convnet(tmp_path / "q.onnx"))
    assert not calibsamples.explicitly_quantized(convnet(tmp_path / "m.onnx"))
    assert onnxinfo.has_qdq(None) is None and onnxinfo.has_qdq({"com.microsoft:QuantizeLinear": 2}) is False


@pytest.mark.parametrize("precision,quantized,toolchain,tolerance", [
    (["int8"], False, "tensorrt", 0.1),  # calibrated
    (["int8", "fp16"], False, "tensorrt", 0.1),
    (["int8"], True, "tensorrt", 0.05),  # explicit: int8 means the model's Q/DQ nodes
    ([], True, "tensorrt", 0.05),  # the runner sets INT8 for a Q/DQ network anyway
    (["fp16", "int8"], True, "tensorrt", 0.05),
    ([], True, "onnxruntime", 0.05),  # ONNX Runtime's INT8 kernels (QLinearConv) on a Q/DQ model
    ([], False, "onnxruntime", 1e-3),
])
def test_int8_tolerances(precision, quantized, toolchain, tolerance):
    spec = parse_spec({"precision": precision})
    allowed = validation.allowed_precisions(spec, toolchain, quantized=quantized)
    assert validation.tolerance_for(allowed) == tolerance
    assert ("int8_qdq" in allowed) == quantized and ("int8" in allowed) == ("int8" in precision and not quantized)


def test_an_int8_output_passes_within_its_bound_and_fails_past_it():
    reference = {"logits": np.linspace(-2, 2, 40, dtype=np.float32)}  # max|ref| = 2
    for precision, bound in ((("int8",), 0.1), (("int8_qdq",), 0.05)):
        close = {"logits": reference["logits"] + np.float32(0.9 * bound * 2)}
        far = {"logits": reference["logits"] + np.float32(1.1 * bound * 2)}
        assert validation.compare(reference, close, precision).passed
        result = validation.compare(reference, far, precision)
        assert not result.passed and result.tolerance == bound and "max relative error" in result.reason


def test_validation_inputs_come_from_the_calibration_data_where_they_fit(tmp_path):
    path = calibration_set(tmp_path / "c.npz", samples=3, seed=4)
    data = np.load(path)["input"]
    inputs = validation.input_specs(convnet(tmp_path / "m.onnx"))
    said = []
    samples = calibsamples.load_samples(path, inputs, said.append)
    assert "samples of the calibration data set (3 held)" in said[0]
    feeds = calibsamples.sample_inputs(samples, inputs, {"input": (2, 3, 16, 16)})
    assert np.array_equal(feeds["input"], data[:2]) and feeds["input"].dtype == np.float32
    repeated = calibsamples.sample_inputs(samples, inputs, {"input": (5, 3, 16, 16)})  # more than it holds
    assert np.array_equal(repeated["input"], data[[0, 1, 2, 0, 1]])
    assert calibsamples.sample_inputs(samples, inputs, {"input": (2, 3, 8, 8)}) is None  # other size: random
    assert calibsamples.load_samples(None, inputs, said.append) == {}
    other = calibration_set(tmp_path / "o.npz", samples=3, name="image")
    assert calibsamples.load_samples(other, inputs, said.append) == {} and "random" in said[-1]
