"""Run and bench: one engine, one execution context, buffers on the device (CUDA driver API)."""

from __future__ import annotations

import time

from .. import layouts
from ..common import RunnerError, atomic_write, check_bench_args, latency_summary, log, read_bytes, timed_runs
from .cuda import CudaDriver
from .describe import (
    NON_NUMPY_DTYPES,
    deserialize,
    dtype_name,
    plan_header,
    profile_shapes,
    tensor_format,
)
from .network import shape_text
from .runtime import import_trt, load_plugins, make_logger


def float32_to_bf16_bits(np, array):
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, (bits >> 16) | np.uint32(0x40), rounded).astype(np.uint16)


def bf16_bits_to_float32(np, bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


# I/O types whose values the runner cannot derive from the float inputs: fed as the cast (int8) or as zeros
# (fp8) -- right for timing, meaningless as results (workers/validation.py skips checking such engines)
SCALED_TYPES = ("int8", "float8_e4m3fn")


class EngineSession:
    """Deserialize a plan, bind inputs (converted to the engine's dtypes and laid out in its formats), allocate
    outputs, execute; outputs come back in logical (NCHW) order, bf16 as float32."""

    def __init__(self, trt, np, cuda: CudaDriver, logger, engine_path: str, profile: int, plugins: list = ()):
        self.trt, self.np, self.cuda, self.logger = trt, np, cuda, logger
        self.plugins = plugins  # the plugin libraries' handles: loaded before, alive as long as the engine
        plan = read_bytes(engine_path, "engine")
        self.runtime, self.engine = deserialize(trt, logger, plan)
        if self.engine is None:
            built_by = plan_header(plan)[0] or "unknown"
            raise RunnerError("run_error", f"TensorRT {trt.__version__} cannot deserialize {engine_path} "
                                           f"(plan built by TensorRT {built_by}): " + "; ".join(logger.errors))
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RunnerError("run_error", "create_execution_context failed: " + "; ".join(logger.errors))
        self.stream = cuda.stream()
        self.buffers: dict = {}  # name -> (device pointer, host array)
        self.shapes: dict = {}  # output name -> its logical shape
        self.select_profile(profile)

    @property
    def stream_handle(self) -> int:
        return self.stream.value or 0

    def names(self, mode) -> list:
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [n for n in names if self.engine.get_tensor_mode(n) == mode]

    def select_profile(self, profile: int) -> None:
        count = self.engine.num_optimization_profiles
        if not 0 <= profile < count:
            raise RunnerError("invalid_input", f"--profile {profile}: the engine has {count} profile(s)")
        if profile != 0:
            self.context.set_optimization_profile_async(profile, self.stream_handle)
            self.cuda.synchronize(self.stream)
        self.profile = profile

    def bind(self, arrays: dict) -> None:
        inputs = self.names(self.trt.TensorIOMode.INPUT)
        missing = [n for n in inputs if n not in arrays]
        if missing:
            expected = ", ".join(f"{n} {shape_text(self.engine.get_tensor_shape(n))}" for n in inputs)
            raise RunnerError("invalid_input", f"inputs lack {', '.join(missing)}; the engine expects: {expected}")
        for extra in sorted(set(arrays) - set(inputs)):
            log(f"input {extra} is not an engine input; ignored")
        for name in inputs:
            self.bind_input(name, arrays[name])
        for name in self.names(self.trt.TensorIOMode.OUTPUT):
            self.bind_output(name)

    def bind_input(self, name: str, array) -> None:
        host = self.laid_out(name, self.to_engine_dtype(name, array))
        if not self.context.set_input_shape(name, tuple(int(d) for d in array.shape)):
            ranges = profile_shapes(self.engine, name, self.profile)
            raise RunnerError("invalid_input", f"input {name} shape {shape_text(array.shape)} is outside profile "
                                               f"{self.profile} (min {ranges['min']}, max {ranges['max']})")
        if self.on_host(name):
            self.buffers[name] = (None, host)
            self.context.set_tensor_address(name, host.ctypes.data)
            return
        pointer = self.cuda.alloc(host.nbytes)
        self.buffers[name] = (pointer, host)
        self.cuda.to_device(pointer, host)
        self.context.set_tensor_address(name, pointer)

    def bind_output(self, name: str) -> None:
        shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
        if any(d < 0 for d in shape):
            raise RunnerError("run_error", f"output {name} has a data-dependent shape {shape_text(shape)}; "
                                           "this runner does not support output allocators")
        host = self.np.empty(self.packed_shape(name, shape), dtype=self.storage_dtype(name))
        pointer = self.cuda.alloc(host.nbytes)
        self.buffers[name] = (pointer, host)
        self.shapes[name] = shape
        self.context.set_tensor_address(name, pointer)

    def on_host(self, name: str) -> bool:
        location = getattr(self.engine, "get_tensor_location", None)
        host = getattr(getattr(self.trt, "TensorLocation", None), "HOST", None)
        return location is not None and host is not None and location(name) == host

    def storage_dtype(self, name: str):
        kind = dtype_name(self.trt, self.engine.get_tensor_dtype(name))
        if kind == "bfloat16":
            return self.np.uint16
        if kind == "float8_e4m3fn":
            return self.np.uint8  # the bits, unread
        if kind in NON_NUMPY_DTYPES.values():
            raise RunnerError("run_error", f"tensor {name} has dtype {kind}, which numpy cannot hold")
        return self.np.dtype(kind)

    def to_engine_dtype(self, name: str, array):
        kind = dtype_name(self.trt, self.engine.get_tensor_dtype(name))
        if kind == "bfloat16":
            return float32_to_bf16_bits(self.np, array)
        if kind in SCALED_TYPES and array.dtype.kind == "f":
            log(f"input {name} is {kind} at the engine's boundary and its scale is not known here: fed "
                + ("zeros" if kind != "int8" else "the values cast to int8") + " (fine for timing, not for results)")
            if kind != "int8":
                return self.np.zeros(array.shape, dtype=self.np.uint8)
        return self.np.ascontiguousarray(array, dtype=self.storage_dtype(name))

    def tensor_format(self, name: str) -> str:
        return tensor_format(self.engine, name)

    def packed_shape(self, name: str, shape) -> tuple:
        try:
            return layouts.packed_shape(self.tensor_format(name), shape)
        except ValueError as exc:
            raise RunnerError("run_error", f"tensor {name}: {exc}") from None

    def laid_out(self, name: str, array):
        """`array` (logical order) in the engine's format for tensor `name` (a copy unless linear)."""
        self.packed_shape(name, array.shape)  # a format this runner cannot lay out fails here, named
        return layouts.pack(array, self.tensor_format(name))

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream_handle):
            raise RunnerError("run_error", "execute_async_v3 failed: " + "; ".join(self.logger.errors))

    def fetch(self) -> dict:
        self.cuda.synchronize(self.stream)
        outputs = {}
        for name in self.names(self.trt.TensorIOMode.OUTPUT):
            pointer, host = self.buffers[name]
            self.cuda.to_host(host, pointer)
            logical = layouts.unpack(host, self.tensor_format(name), self.shapes[name])
            is_bf16 = dtype_name(self.trt, self.engine.get_tensor_dtype(name)) == "bfloat16"
            outputs[name] = bf16_bits_to_float32(self.np, logical) if is_bf16 else logical
        return outputs

    def close(self) -> None:
        for pointer, _ in self.buffers.values():
            if pointer is not None:
                self.cuda.free(pointer)
        self.buffers.clear()


def open_session(args):
    trt = import_trt()
    import numpy as np
    logger = make_logger(trt, getattr(args, "verbose", False))
    arrays = load_inputs(np, args.inputs)
    libraries = load_plugins(trt, logger, getattr(args, "plugin", []))  # before the plan is deserialized
    cuda = CudaDriver()
    cuda.make_current(0)
    session = EngineSession(trt, np, cuda, logger, args.engine, args.profile, libraries)
    session.bind(arrays)
    return session


def load_inputs(np, path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise RunnerError("invalid_input", f"cannot read inputs {path}: {exc}") from None


def cmd_run(args) -> dict:
    session = open_session(args)
    try:
        session.execute()
        outputs = session.fetch()
    finally:
        session.close()
    write_npz(session.np, args.outputs, outputs)
    return {"outputs": {name: list(array.shape) for name, array in outputs.items()}}


def write_npz(np, path: str, arrays: dict) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def cmd_bench(args) -> dict:
    check_bench_args(args)
    session = open_session(args)
    try:
        gpu_ms, wall_ms, stopped = time_iterations(session, args.warmup, args.iterations, args.max_seconds)
        device = session.cuda.device_info(0)["name"]
    finally:
        session.close()
    return {"latency_ms": latency_summary(gpu_ms), "wall_ms": latency_summary(wall_ms), "stopped_by": stopped,
            "warmup": args.warmup, "device": device}


def time_iterations(session: EngineSession, warmup: int, iterations: int,
                    max_seconds: float | None = None) -> tuple[list, list, str]:
    """GPU time (CUDA events) and wall time of each timed run, and which limit stopped it (timed_runs)."""
    cuda, stream = session.cuda, session.stream
    for _ in range(warmup):
        session.execute()
    cuda.synchronize(stream)
    start, end = cuda.event(), cuda.event()
    wall_ms: list = []

    def step() -> float:
        began = time.perf_counter()
        cuda.record(start, stream)
        session.execute()
        cuda.record(end, stream)
        gpu = cuda.elapsed_ms(start, end)
        wall_ms.append((time.perf_counter() - began) * 1000.0)
        return gpu

    gpu_ms, stopped = timed_runs(step, iterations, max_seconds)
    return gpu_ms, wall_ms, stopped
