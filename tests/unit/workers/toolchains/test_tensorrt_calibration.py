"""INT8 calibration in the TensorRT runner, against the fake `tensorrt` of test_tensorrt_options (TensorRT
8.6's calibrator classes and CalibrationAlgoType) and a fake CUDA driver.

The fake builder calibrates the way TensorRT does: with the INT8 flag, a calibrator and no Q/DQ layers it
asks read_calibration_cache() first; without a cache it calls get_batch(names) until None, reading the device
buffers it is handed, then write_calibration_cache() with a cache whose header names the calibrator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.unit.workers.toolchains.test_tensorrt_options import (
    STATIC_X,
    FakeNetwork,
    canonical,
    enum,
    error_of,
    make_fake_trt,
    run_build,
    write_model,
)
from workers.toolchains.tensorrt_runner import calibration, cuda, options

HEADERS = {"ENTROPY_CALIBRATION_2": "EntropyCalibration2", "ENTROPY_CALIBRATION": "EntropyCalibration",
           "MINMAX_CALIBRATION": "MinMaxCalibration", "LEGACY_CALIBRATION": "LegacyCalibration"}
DYNAMIC_X = {"name": "x", "shape": [-1, 3, 8, 8]}


class FakeCuda:
    """Device memory as a dict: what get_batch copied, and what was freed."""

    def __init__(self):
        self.memory, self.next, self.freed, self.current = {}, 0x1000, [], False

    def make_current(self, ordinal=0):
        self.current = True

    def alloc(self, nbytes):
        self.next += 0x1000
        self.memory[self.next] = None
        return self.next

    def to_device(self, pointer, array):
        assert self.current and pointer in self.memory
        self.memory[pointer] = np.array(array)

    def free(self, pointer):
        self.freed.append(pointer)
        del self.memory[pointer]


def calibrating_trt(flavor="8.6", **kwargs):
    """The fake tensorrt with LayerType, layered networks (the model's "layers") whose inputs have dtypes, and a
    builder that runs the calibrator as TensorRT does (module docstring)."""
    trt = make_fake_trt(flavor, **kwargs)
    trt.LayerType = enum("LayerType", ["CONVOLUTION", "ACTIVATION", "QUANTIZE", "DEQUANTIZE"])
    trt.calibrated = None

    class LayeredNetwork(FakeNetwork):
        """Layers typed by their description's "type" (ILayer.type), inputs by their "dtype" (ITensor.dtype)."""

        def get_layer(self, i):
            layer = super().get_layer(i)
            layer.type = getattr(trt.LayerType, self.model["layers"][i].get("type", "CONVOLUTION"))
            return layer

        def get_input(self, i):
            tensor = super().get_input(i)
            tensor.dtype = getattr(trt.DataType, self.model["inputs"][i].get("dtype", "FLOAT"))
            return tensor

    build = trt.Builder.build_serialized_network

    def create_network(self, flags):
        return LayeredNetwork(flags, name_dims=trt.__version__.startswith("10"), trt=trt)

    def build_serialized_network(self, network, config):
        calibrator = getattr(config, "int8_calibrator", None)
        qdq = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
        explicit = any(network.get_layer(i).type in qdq for i in range(network.num_layers))
        if calibrator is not None and "INT8" in config.flags and not explicit:
            assert calibrator.base_initialised  # Base.__init__(self) was called
            trt.calibrated = {"read": calibrator.read_calibration_cache(), "batches": [],
                              "batch_size": calibrator.get_batch_size()}
            if not trt.calibrated["read"]:
                names = [network.get_input(i).name for i in range(network.num_inputs)]
                while (pointers := calibrator.get_batch(names)) is not None:
                    trt.calibrated["batches"].append({n: FAKE_CUDA[0].memory[p] for n, p in zip(names, pointers)})
                header = f"TRT-8600-{HEADERS[calibrator.get_algorithm().name]}"
                calibrator.write_calibration_cache(memoryview(f"{header}\nx: 3c010a14\n".encode()))
        return build(self, network, config)

    trt.Builder.create_network = create_network
    trt.Builder.build_serialized_network = build_serialized_network
    trt.IBuilderConfig.set_calibration_profile = lambda self, profile: self.calls.append(
        ("set_calibration_profile", profile))
    return trt


FAKE_CUDA: list[FakeCuda] = []


@pytest.fixture
def device(monkeypatch):
    FAKE_CUDA[:] = [FakeCuda()]
    monkeypatch.setattr(cuda, "CudaDriver", lambda: FAKE_CUDA[0])
    return FAKE_CUDA[0]


def data_set(tmp_path, samples=10, shape=(3, 8, 8), name="x", dtype=np.float32):
    path = tmp_path / "calib.npz"
    data = np.arange(samples * int(np.prod(shape)), dtype=np.float64).reshape(samples, *shape).astype(dtype)
    np.savez(path, **{name: data})
    return path, data


def calibrate(tmp_path, trt, spec, *extra, inputs=(STATIC_X,), **model):
    out = tmp_path / "made.cache"
    code, result = run_build(tmp_path, write_model(tmp_path, list(inputs), **model), spec,
                             "--calibration-cache-out", str(out), *extra)
    return code, result, out


# ---------------------------------------------------------------------------------------------------------
# Calibrating from a data set
# ---------------------------------------------------------------------------------------------------------
def test_batches_are_served_in_order_then_none_and_the_cache_is_written(tmp_path, install, device):
    trt = install(calibrating_trt())
    path, data = data_set(tmp_path, samples=3)  # static input [1, 3, 8, 8]: batches of 1
    code, result, out = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-data", str(path))
    assert code == 0, result
    batches = trt.calibrated["batches"]
    assert len(batches) == 3 and trt.calibrated["read"] is None and trt.calibrated["batch_size"] == 1
    for k, batch in enumerate(batches):
        assert batch["x"].dtype == np.float32 and np.array_equal(batch["x"], data[k:k + 1])
    assert out.read_bytes() == b"TRT-8600-EntropyCalibration2\nx: 3c010a14\n"
    assert result["metadata"]["calibration"] == {
        "mode": "calibrated", "algorithm": "entropy2", "batches": 3, "batch_size": 1, "batches_served": 3,
        "cache_bytes": len(out.read_bytes()), "tensorrt_algorithm": "ENTROPY_CALIBRATION_2"}
    _, config = trt.last_build
    assert isinstance(config.int8_calibrator, trt.IInt8EntropyCalibrator2) and "INT8" in config.flags
    assert device.memory == {} and len(device.freed) == 1  # one buffer for the input, freed after the build


def test_dynamic_shapes_calibrate_at_profile_zero_opt_and_leave_out_a_partial_batch(tmp_path, install, device):
    trt = install(calibrating_trt())
    path, data = data_set(tmp_path, samples=10, dtype=np.float16)
    spec = canonical(precision=["int8"], profiles=[{"x": "1x3x8x8,4x3x8x8,8x3x8x8"}])
    code, result, _ = calibrate(tmp_path, trt, spec, "--calibration-data", str(path), inputs=[DYNAMIC_X])
    assert code == 0, result
    batches = [b["x"] for b in trt.calibrated["batches"]]
    assert [b.shape for b in batches] == [(4, 3, 8, 8)] * 2  # 10 samples: 2 batches of 4, 2 left out
    assert all(b.dtype == np.float32 for b in batches)  # TensorRT reads float calibration input as float32
    assert np.array_equal(batches[1], data[4:8].astype(np.float32)) and trt.calibrated["batch_size"] == 4
    _, config = trt.last_build
    assert [c[0] for c in config.calls].count("set_calibration_profile") == 1
    assert config.calls[-1] == ("set_calibration_profile", config.profiles[0])
    assert result["metadata"]["calibration"]["batches"] == 2


@pytest.mark.parametrize("algorithm,cls", [("entropy2", "IInt8EntropyCalibrator2"),
                                           ("entropy", "IInt8EntropyCalibrator"),
                                           ("minmax", "IInt8MinMaxCalibrator"), ("legacy", "IInt8LegacyCalibrator")])
def test_the_spec_chooses_the_calibrator(tmp_path, install, device, algorithm, cls):
    trt = install(calibrating_trt())
    path, _ = data_set(tmp_path, samples=2)
    spec = canonical(precision=["int8"], calibration_algorithm=algorithm)
    code, result, out = calibrate(tmp_path, trt, spec, "--calibration-data", str(path))
    assert code == 0, result
    _, config = trt.last_build
    assert isinstance(config.int8_calibrator, getattr(trt, cls))
    assert out.read_bytes().startswith(f"TRT-8600-{HEADERS[config.int8_calibrator.get_algorithm().name]}".encode())
    assert result["metadata"]["calibration"]["algorithm"] == algorithm
    if algorithm == "legacy":  # IInt8LegacyCalibrator's own questions have answers
        assert (config.int8_calibrator.get_quantile(), config.int8_calibrator.get_regression_cutoff()) == (0.5, 0.5)


def test_a_calibrator_missing_from_the_toolchain_is_unsupported(tmp_path, install, device):
    old = make_fake_trt("8.6", version="5.1.5")
    error = error_of(options.check_options, old, canonical(calibration_algorithm="minmax"))
    assert (error.code, error.message) == (
        "unsupported_option", "calibration_algorithm=minmax needs TensorRT >= 6.0; this toolchain has 5.1.5")
    trt = install(calibrating_trt("10"))
    del trt.IInt8LegacyCalibrator  # a release without it
    error = error_of(options.check_options, trt, canonical(precision=["int8"], calibration_algorithm="legacy"))
    assert error.message == ("calibration_algorithm=legacy is not available in this toolchain's TensorRT 10.9.0 "
                             "(tensorrt.IInt8LegacyCalibrator is missing)")
    del trt.IInt8EntropyCalibrator2  # the default calibrator: refused when the build calibrates
    path, _ = data_set(tmp_path, samples=2)
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-data", str(path))
    assert code == 2 and result["error"]["code"] == "unsupported_option"
    assert "IInt8EntropyCalibrator2 is missing" in result["error"]["message"]


def test_a_data_set_that_does_not_fit_the_network_is_invalid_input(tmp_path, install, device):
    trt = install(calibrating_trt())
    path, _ = data_set(tmp_path, samples=2, name="image")
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-data", str(path))
    assert code == 2 and result["error"]["message"] == "the calibration data lacks input(s) x; it has image"
    path, _ = data_set(tmp_path, samples=2, shape=(3, 4, 4))
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-data", str(path))
    assert code == 2 and "calibration array x has shape [2, 3, 4, 4]; input x is calibrated at [1, 3, 8, 8]" in (
        result["error"]["message"])


# ---------------------------------------------------------------------------------------------------------
# A ready-made cache, explicit quantization, builds without int8
# ---------------------------------------------------------------------------------------------------------
def test_a_cache_is_served_with_the_calibrator_its_header_names_and_no_batch_is_fed(tmp_path, install, device):
    trt = install(calibrating_trt())
    cache = tmp_path / "given.cache"
    cache.write_bytes(b"TRT-8601-MinMaxCalibration\nx: 3c010a14\n")
    code, result, out = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-cache", str(cache))
    assert code == 0, result
    assert trt.calibrated == {"read": cache.read_bytes(), "batches": [], "batch_size": 1}
    _, config = trt.last_build
    assert isinstance(config.int8_calibrator, trt.IInt8MinMaxCalibrator) and not out.exists()
    assert result["metadata"]["calibration"] == {"mode": "cache", "algorithm": "minmax",
                                                 "tensorrt_algorithm": "MINMAX_CALIBRATION"}
    cache.write_bytes(b"not a cache")
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["int8"]), "--calibration-cache", str(cache))
    assert code == 2 and "not a TensorRT header" in result["error"]["message"]


@pytest.mark.parametrize("precision", [[], ["int8"], ["fp16", "int8"]])
def test_a_qdq_network_builds_int8_without_a_calibrator(tmp_path, install, device, precision):
    trt = install(calibrating_trt())
    path, _ = data_set(tmp_path, samples=2)
    layers = [{"name": "x.quant", "type": "QUANTIZE"}, {"name": "x.dequant", "type": "DEQUANTIZE"},
              {"name": "conv0", "type": "CONVOLUTION"}, {"name": "relu0", "type": "ACTIVATION"}]
    code, result, out = calibrate(tmp_path, trt, canonical(precision=precision), "--calibration-data", str(path),
                                  layers=layers)
    assert code == 0, result
    _, config = trt.last_build
    assert "INT8" in config.flags and not hasattr(config, "int8_calibrator") and trt.calibrated is None
    assert ("set_flag", "INT8") in config.calls and not out.exists()
    assert result["metadata"]["calibration"] == {"mode": "explicit", "qdq_layers": 2}
    assert FAKE_CUDA[0].memory == {}  # the data set was not even loaded


def test_calibration_is_ignored_without_int8_and_int8_alone_attaches_nothing(tmp_path, install, device):
    trt = install(calibrating_trt())
    path, _ = data_set(tmp_path, samples=2)
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["fp16"]), "--calibration-data", str(path))
    assert code == 0 and "calibration" not in result["metadata"]
    code, result, _ = calibrate(tmp_path, trt, canonical(precision=["int8"]),
                                build_errors=["Calibration failure occurred with no scaling factors detected."])
    assert code == 1 and result["error"]["hint"].startswith("int8 needs calibration (a data set")


def test_cache_algorithm_reads_the_header():
    assert calibration.cache_algorithm(b"TRT-8601-EntropyCalibration2\nx: 1\n") == "entropy2"
    assert calibration.cache_algorithm(b"TRT-7103-LegacyCalibration") == "legacy"
    assert json.dumps(calibration.ALGORITHMS) == json.dumps(
        {a: options.OPTIONS[f"calibration_algorithm={a}"][1] for a in calibration.ALGORITHMS})
