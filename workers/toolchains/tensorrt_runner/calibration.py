"""INT8 calibration (docs/design.md "INT8 calibration").

- A model with QuantizeLinear/DequantizeLinear nodes is quantized explicitly: TensorRT takes the scales from
  them. The runner sets the INT8 flag (TensorRT 8.x builds Q/DQ networks only with it) and attaches no
  calibrator.
- Otherwise an int8 build gets a calibrator: the algorithm's TensorRT class (IInt8EntropyCalibrator2 unless
  the spec's calibration_algorithm says otherwise; feature-detected), serving
  - `--calibration-cache`: a ready-made cache, read back at once (no batch is fed); the calibrator class is
    the one its header names, which TensorRT checks;
  - `--calibration-data`: an .npz data set, one array per network input, axis 0 counting samples. Batches of
    B consecutive samples (B: axis 0 of the calibration profile's opt shape, profile 0, or of the static
    input) are copied into one device buffer per input (CUDA driver API) and handed to TensorRT in order,
    then None. The cache TensorRT writes is kept and written to `--calibration-cache-out`.
"""

from __future__ import annotations

from ..common import RunnerError, atomic_write, log, read_bytes
from .options import option_problem

ALGORITHMS = {"entropy2": "IInt8EntropyCalibrator2", "entropy": "IInt8EntropyCalibrator",
              "minmax": "IInt8MinMaxCalibrator", "legacy": "IInt8LegacyCalibrator"}
DEFAULT_ALGORITHM = "entropy2"
# the calibrator a cache's header line (TRT-8601-EntropyCalibration2) names -> the spec's algorithm name
HEADER_ALGORITHMS = {"EntropyCalibration2": "entropy2", "EntropyCalibration": "entropy",
                     "MinMaxCalibration": "minmax", "LegacyCalibration": "legacy"}
QDQ_LAYER_TYPES = ("QUANTIZE", "DEQUANTIZE")


def qdq_layers(trt, network) -> int:
    """How many Quantize/Dequantize layers the parsed network has (0 where LayerType lacks them)."""
    kinds = [getattr(getattr(trt, "LayerType", None), name, None) for name in QDQ_LAYER_TYPES]
    kinds = [k for k in kinds if k is not None]
    if not kinds:
        return 0
    return sum(1 for i in range(network.num_layers) if network.get_layer(i).type in kinds)


def calibrator_base(trt, algorithm: str):
    """The TensorRT calibrator class of `algorithm`; unsupported_option where this TensorRT lacks it."""
    problem = option_problem(trt, f"calibration_algorithm={algorithm}")
    if problem:
        raise RunnerError("unsupported_option", problem)
    return getattr(trt, ALGORITHMS[algorithm])


def cache_algorithm(cache: bytes) -> str:
    """The algorithm a cache's header names (its first line, TRT-<version>-<Calibrator>)."""
    first = cache.split(b"\n", 1)[0].decode("ascii", "replace").strip()
    parts = first.split("-", 2)
    if len(parts) != 3 or parts[0] != "TRT" or parts[2] not in HEADER_ALGORITHMS:
        raise RunnerError("invalid_input", f"the calibration cache starts with {first[:80]!r}, not a TensorRT "
                                           "header like 'TRT-8601-EntropyCalibration2'")
    return HEADER_ALGORITHMS[parts[2]]


class BatchFeeder:
    """Successive batches of a data set in device buffers, one per input."""

    def __init__(self, np, cuda, arrays: dict, shapes: dict, dtypes: dict):
        self.np, self.cuda, self.shapes, self.dtypes = np, cuda, shapes, dtypes
        self.arrays = arrays
        self.batch_size = next(iter(shapes.values()))[0]
        samples = min(len(a) for a in arrays.values())
        self.batches, self.served, self.pointers = samples // self.batch_size, 0, {}
        left = samples - self.batches * self.batch_size
        log(f"calibration data: {samples} samples, {self.batches} batches of {self.batch_size}"
            + (f" ({left} left out: not a whole batch)" if left else ""))

    def next(self, names) -> list | None:
        if self.served >= self.batches:
            self.free()
            return None
        start = self.served * self.batch_size
        pointers = []
        for name in names:
            host = self.np.ascontiguousarray(self.arrays[name][start:start + self.batch_size], dtype=self.dtypes[name])
            if name not in self.pointers:
                self.pointers[name] = self.cuda.alloc(host.nbytes)
            self.cuda.to_device(self.pointers[name], host)
            pointers.append(self.pointers[name])
        self.served += 1
        return pointers

    def free(self) -> None:
        for pointer in self.pointers.values():
            self.cuda.free(pointer)
        self.pointers.clear()


def make_calibrator(base, *, batch_size: int = 1, feeder: BatchFeeder | None = None, cache: bytes | None = None):
    """A calibrator of TensorRT class `base`: serves `cache` when given, else the feeder's batches; the cache
    TensorRT writes is kept in `.written`."""

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)  # TensorRT's trampoline classes must be initialised explicitly
            self.written = None

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names, *args):
            return None if feeder is None else feeder.next(list(names))

        def read_calibration_cache(self, *args):
            return cache

        def write_calibration_cache(self, data, *args):
            self.written = bytes(data)

        # IInt8LegacyCalibrator's own questions: TensorRT's documented defaults
        def get_quantile(self):
            return 0.5

        def get_regression_cutoff(self):
            return 0.5

        def read_histogram_cache(self, *args):
            return None

        def write_histogram_cache(self, *args):
            return None

    return Calibrator()


def attach_calibrator(trt, config, spec: dict, args, network, profiles: list) -> dict | None:
    """Set up INT8 for the build (module docstring). Returns the calibration state (keep it alive until the
    plan is written, then `finish_calibration`), or None when the build does not calibrate."""
    data, cache_path = getattr(args, "calibration_data", None), args.calibration_cache
    explicit = qdq_layers(trt, network)
    if explicit:
        return explicit_int8(trt, config, spec, explicit, bool(data or cache_path))
    if not (data or cache_path):
        return None
    if "int8" not in spec["precision"]:
        log(f"calibration {data or cache_path} ignored: the spec does not ask for int8")
        return None
    if cache_path:
        cache = read_bytes(cache_path, "calibration cache")
        algorithm = cache_algorithm(cache)
        calibrator = make_calibrator(calibrator_base(trt, algorithm), cache=cache)
        state = {"mode": "cache", "algorithm": algorithm, "calibrator": calibrator}
    else:
        state = data_calibrator(trt, spec, data, network)
    config.int8_calibrator = state["calibrator"]
    if profiles and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profiles[0])
    return state


def explicit_int8(trt, config, spec: dict, layers: int, given: bool) -> dict:
    log(f"explicit quantization: the network has {layers} Quantize/Dequantize layers; TensorRT takes the INT8 "
        "scales from them" + ("; the calibration given is not used" if given else ""))
    if spec.get("strongly_typed"):
        return {"mode": "explicit", "qdq_layers": layers}
    if "int8" not in spec["precision"]:
        config.set_flag(trt.BuilderFlag.INT8)  # TensorRT 8.x builds Q/DQ networks only with it
        log("INT8 builder flag set for the Q/DQ network")
    return {"mode": "explicit", "qdq_layers": layers}


def data_calibrator(trt, spec: dict, path: str, network) -> dict:
    import numpy as np

    from .cuda import CudaDriver

    algorithm = spec.get("calibration_algorithm") or DEFAULT_ALGORITHM
    base = calibrator_base(trt, algorithm)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    shapes = {t.name: calibration_shape(t, spec) for t in inputs}
    arrays = load_data(np, path, shapes)
    dtypes = {t.name: input_dtype(trt, np, t) for t in inputs}
    cuda = CudaDriver()
    cuda.make_current(0)
    feeder = BatchFeeder(np, cuda, arrays, shapes, dtypes)
    calibrator = make_calibrator(base, batch_size=feeder.batch_size, feeder=feeder)
    return {"mode": "calibrated", "algorithm": algorithm, "calibrator": calibrator, "feeder": feeder,
            "batches": feeder.batches, "batch_size": feeder.batch_size}


def calibration_shape(tensor, spec: dict) -> tuple:
    """The shape an input is calibrated at: the calibration profile's (profile 0's) opt shape, else static."""
    first = spec["profiles"][0] if spec["profiles"] else {}
    if tensor.name in first:
        return tuple(int(d) for d in first[tensor.name]["opt"])
    return tuple(int(d) for d in tensor.shape)


def input_dtype(trt, np, tensor):
    """float32 for float inputs (what TensorRT reads calibration batches as), else the input's own type."""
    try:
        dtype = np.dtype(trt.nptype(tensor.dtype))
    except (TypeError, KeyError, AttributeError):  # a type numpy lacks (bf16 through float32 anyway)
        return np.dtype(np.float32)
    return np.dtype(np.float32) if dtype.kind == "f" else dtype


def load_data(np, path: str, shapes: dict) -> dict:
    """The data set's arrays, checked against the inputs' calibration shapes."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise RunnerError("invalid_input", f"cannot read the calibration data {path}: {exc}") from None
    missing = [n for n in shapes if n not in arrays]
    if missing:
        raise RunnerError("invalid_input", f"the calibration data lacks input(s) {', '.join(missing)}; it has "
                                           f"{', '.join(arrays) or 'no array'}")
    sizes = {shape[0] if shape else 0 for shape in shapes.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise RunnerError("invalid_input", f"calibration needs one batch size for every input; the inputs' "
                                           f"calibration shapes are {shapes}")
    for name, shape in shapes.items():
        if tuple(arrays[name].shape[1:]) != tuple(shape[1:]) or len(arrays[name]) < shape[0]:
            raise RunnerError("invalid_input", f"calibration array {name} has shape {list(arrays[name].shape)}; "
                                               f"input {name} is calibrated at {list(shape)}")
    return {name: arrays[name] for name in shapes}


def release_calibration(state: dict | None) -> None:
    """Free the batches' device buffers (also after a failed build)."""
    feeder = (state or {}).get("feeder")
    if feeder is not None:
        feeder.free()


def finish_calibration(trt, state: dict | None, out: str | None) -> dict | None:
    """The engine metadata's `calibration` entry; writes the cache TensorRT made to `out`."""
    if state is None:
        return None
    feeder, calibrator = state.pop("feeder", None), state.pop("calibrator", None)
    if feeder is not None:
        feeder.free()
        state["batches_served"] = feeder.served
    if state["mode"] == "calibrated":
        written = getattr(calibrator, "written", None)
        if not written:
            raise RunnerError("build_error", "TensorRT built the plan but wrote no calibration cache")
        if out:
            atomic_write(out, written)
        state["cache_bytes"] = len(written)
        log(f"calibrated with {ALGORITHMS[state['algorithm']]} over {state['batches_served']} batches of "
            f"{state['batch_size']}; the cache is {len(written)} bytes")
    algorithm = getattr(calibrator, "get_algorithm", None)
    if algorithm is not None and getattr(trt, "CalibrationAlgoType", None) is not None:
        state["tensorrt_algorithm"] = getattr(algorithm(), "name", str(algorithm()))
    return state
