"""Accuracy validation of a built engine against the original model, run by the worker.

1. `input_specs` reads the model's inputs (onnx, without loading external data).
2. `validation_shapes` picks the shapes to test: per optimization profile its opt, min and max shapes;
   with no profiles the model's static shapes.
3. `random_inputs` makes deterministic inputs for one set of shapes.
4. `reference_outputs` runs the ORIGINAL model in ONNX Runtime on CPU with every graph optimization off.
5. `compare` measures the engine's outputs against the reference.

Error measures (per output, then the maximum over outputs):
    abs_error = |actual - reference|
    rel_error = abs_error / max(max|reference|, 1e-6)    (max over the output's finite reference values)
The error is measured against the output's largest magnitude (never below 1e-6): in reduced precision
the error of an element follows the size of the values that were summed into it, not its own size, so an
output near zero (a cancellation) carries the same absolute error as a large one. Measured on an H100
with TensorRT 8.6 (docs/gpu-results.md): FP16 engines of the test convnets had max|error| / max|reference|
of 1.4e-3 (4 layers) and 2.9e-3 (12 layers), but 0.052 and 0.027 under the first version's floor (a
thousandth of the largest magnitude), so both would have failed their 1e-2 tolerance. NaN in the same
place on both sides counts as equal; NaN or inf on one side only is an infinite error.

An output passes when its max rel_error <= the tolerance of the precisions the builder was allowed (the
loosest decides): fp32 only 1e-3; fp16, bf16 or tf32 1e-2; int8, fp8 or int4 1e-1. TF32 (TensorRT's
default for FP32 math, `tf32: true`) keeps FP16's 10 mantissa bits, so it gets FP16's tolerance; a
TensorRT build wanting the 1e-3 bound sets `tf32: false`. ONNX Runtime on the CPU never uses TF32.

INT8, per output against FP32 ONNX Runtime (docs/design.md "INT8 calibration"):
- calibrated (`int8`, no Q/DQ nodes): 0.1. One INT8 step is 1/127 of a tensor's calibrated range (0.8% of
  it); entropy calibration clips the range below the largest values, so a step is larger still relative to
  the output's max|ref|, and every quantized layer adds its rounding (independent errors of L layers grow
  about like sqrt(L) steps). 0.1 leaves room for about a dozen steps while still failing what is really
  broken: wrong scales saturate or flush tensors, an error of the order of the output itself.
  Calibrated engines are validated on samples of their calibration data (workers/calibsamples.py).
- explicit (`int8_qdq`: the model has QuantizeLinear/DequantizeLinear nodes, any toolchain): 0.05. ONNX
  Runtime runs the same Q/DQ nodes in FP32 (quantize, round, dequantize), so the reference carries the same
  quantization; the engine differs only where a value lies on a rounding boundary (one step, 0.8% of the
  range, flipped by TensorRT's integer accumulation and fused requantization) and in the FP32/TF32 layers
  between, so 0.05 (about six steps) is tighter than calibration's bound and still clear of those flips.
  A Q/DQ model's `int8` means explicit quantization (TensorRT then quantizes only what the nodes cover), so
  int8_qdq replaces int8 there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry import onnxinfo
from registry.errors import InvalidInput, InvalidSpec

if TYPE_CHECKING:
    import numpy as np

    from registry.spec import BuildSpec

Shape = tuple[int, ...]
TOLERANCES = {"fp32": 1e-3, "tf32": 1e-2, "fp16": 1e-2, "bf16": 1e-2, "int8": 1e-1, "fp8": 1e-1, "int4": 1e-1,
              "int8_qdq": 5e-2}
REL_FLOOR_ABS = 1e-6  # the relative error's denominator never goes below this (an all-zero output)


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: Any  # numpy dtype
    shape: tuple[int | None, ...] | None  # None per dynamic dim; None when the rank is unknown
    dim_names: tuple[str | None, ...] = ()

    @property
    def dynamic(self) -> bool:
        return self.shape is None or any(d is None for d in self.shape)

    def describe(self) -> str:
        """`(N, 3, 224, 224)` with symbolic names (`?` for unnamed dynamic dims)."""
        if self.shape is None:
            return "(unknown rank)"
        dims = [str(d) if d is not None else (n or "?") for d, n in zip(self.shape, self.dim_names)]
        return "(" + ", ".join(dims) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": str(self.dtype), "shape": None if self.shape is None else list(self.shape),
                "dim_names": list(self.dim_names)}


# --------------------------------------------------------------------------------------------- inputs


def input_specs(model_path: str | Path) -> list[InputSpec]:
    """Graph inputs that are not initializers, read without loading external data."""
    return [_input_spec(d) for d in onnxinfo.graph_io(onnxinfo.load(model_path), inputs=True)]


def _input_spec(desc: onnxinfo.TensorDesc) -> InputSpec:
    if not desc.is_tensor:
        raise InvalidInput(f"input {desc.name!r} is not a tensor; validation handles tensor inputs only")
    return InputSpec(desc.name, onnxinfo.numpy_dtype(desc.elem_type), desc.dims, desc.dim_names)


# --------------------------------------------------------------------------------------------- shapes


def validation_shapes(inputs: list[InputSpec], spec: BuildSpec) -> list[dict[str, Shape]]:
    """Shape sets to validate: per profile its opt, min and max shapes (duplicates dropped); with no profiles
    the static shapes, and 1 for every dynamic dimension (trtexec's default; the build's warning says so)."""
    if not spec.profiles:
        return [{i.name: default_shape(i) for i in inputs}]
    known = {i.name for i in inputs}
    found: list[dict[str, Shape]] = []
    for k, profile in enumerate(spec.profiles):
        unknown = sorted(set(profile) - known)
        if unknown:
            raise InvalidSpec(f"profile {k} names input(s) {', '.join(unknown)} that the model lacks; "
                              f"its inputs are {', '.join(sorted(known))}")
        for which in ("opt", "min", "max"):
            shapes = {i.name: _profile_shape(i, profile, k, which) for i in inputs}
            if shapes not in found:
                found.append(shapes)
    return found


def default_shape(spec: InputSpec) -> Shape:
    """The input's shape with 1 for each dynamic dimension (InvalidSpec when even its rank is unknown)."""
    if spec.shape is None:
        return _static_shape(spec)
    return tuple(1 if d is None else int(d) for d in spec.shape)


def _static_shape(spec: InputSpec) -> Shape:
    if spec.dynamic:
        raise InvalidSpec(
            f"input {spec.name} has a dynamic shape {spec.describe()} and the spec has no optimization profile; "
            f"pass a profile --shape {spec.name}:MIN,OPT,MAX (e.g. --shape {spec.name}:{_example(spec)})"
        )
    return tuple(int(d) for d in spec.shape or ())


def _example(spec: InputSpec) -> str:
    if spec.shape is None:
        return "1x3x224x224,8x3x224x224,32x3x224x224"
    return ",".join("x".join(str(d) if d is not None else str(n) for d in spec.shape) for n in (1, 8, 32))


def _profile_shape(spec: InputSpec, profile: dict[str, Any], k: int, which: str) -> Shape:
    if spec.name not in profile:
        if spec.dynamic:
            raise InvalidSpec(f"profile {k} omits dynamic input {spec.name} {spec.describe()}; "
                              f"add --shape {spec.name}:MIN,OPT,MAX (e.g. --shape {spec.name}:{_example(spec)})")
        return _static_shape(spec)
    shape = tuple(getattr(profile[spec.name], which))
    if spec.shape is not None and (len(shape) != len(spec.shape)
                                   or any(d is not None and d != s for d, s in zip(spec.shape, shape))):
        raise InvalidSpec(f"profile {k}: {which} shape {shape} of input {spec.name} does not fit the model's "
                          f"shape {spec.describe()}")
    return shape


def check_shape_in_profiles(spec: BuildSpec, name: str, shape: Shape) -> None:
    """Raise InvalidSpec when `shape` lies outside every profile that covers input `name`."""
    ranges = spec.shape_ranges(name)
    shape = tuple(int(d) for d in shape)
    if not ranges or any(r.contains(shape) for r in ranges):
        return
    listed = "; ".join(f"profile {k}: min {r.min} max {r.max}" for k, r in enumerate(ranges))
    raise InvalidSpec(f"shape {shape} of input {name} is outside every profile: {listed}")


# ------------------------------------------------------------------------------------ data and reference


def random_inputs(inputs: list[InputSpec], shapes: dict[str, Shape], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic inputs: floats uniform in [-1, 1), integers in [0, 4) (safe as small indices),
    booleans random, strings short random lowercase words. One generator, inputs in declared order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        if spec.name not in shapes:
            raise InvalidInput(f"no shape given for input {spec.name}")
        feeds[spec.name] = _random_array(rng, spec, tuple(shapes[spec.name]))
    return feeds


def _random_array(rng: Any, spec: InputSpec, shape: Shape) -> np.ndarray:
    import numpy as np

    dtype = spec.dtype
    kind, name = dtype.kind, dtype.name
    if kind in "OUS":  # ONNX strings: short random lowercase words, as a numpy unicode array (no pickling)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        words = ["".join(rng.choice(letters, size=int(n))) for n in rng.integers(1, 9, size=int(np.prod(shape)))]
        return np.array(words, dtype=str).reshape(shape)
    if kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if kind in "iu" or name.startswith(("int", "uint")):
        return rng.integers(0, 4, size=shape).astype(dtype)
    if kind in "fc" or name.startswith(("float", "bfloat")):
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    raise InvalidInput(f"cannot make random values for input {spec.name} of type {name}")


def reference_outputs(model_path: str | Path, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run the original model in ONNX Runtime on CPU with graph optimizations off."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    values = session.run(None, feeds)
    return {o.name: np.asarray(v) for o, v in zip(session.get_outputs(), values)}


def unloadable(model_path: str | Path) -> str | None:
    """Why ONNX Runtime cannot load the model (None when it can), e.g. an opset it has no kernels for."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime's own exception types
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
    return None


def plugin_ops(model_path: str | Path) -> list[str]:
    """The model's TensorRT plugin ops (onnxinfo.plugin_ops): ONNX Runtime cannot run them, so no reference."""
    return onnxinfo.plugin_ops(onnxinfo.load(model_path))


PLUGIN_SKIP = "the model uses TensorRT plugin op(s) {ops} that ONNX Runtime cannot run"


def constant_feeds(model_path: str | Path, values: dict[str, Any]) -> dict[str, np.ndarray]:
    """spec.sanitize.shape_values as the model's own inputs take them (their dtype; a scalar for rank 0)."""
    import numpy as np

    specs = {i.name: i for i in input_specs(model_path)}
    feeds = {}
    for name, given in values.items():
        if name not in specs:
            raise InvalidSpec(f"spec.sanitize.shape_values.{name}: the model has no input {name!r}")
        array = np.array(list(given), dtype=specs[name].dtype)
        feeds[name] = array.reshape(()) if specs[name].shape == () and array.size == 1 else array
    return feeds


# -------------------------------------------------------------------------------------------- compare


@dataclass
class OutputComparison:
    name: str
    passed: bool
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    shape: list[int] | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


@dataclass
class ValidationResult:
    passed: bool
    tolerance: float
    precision: list[str]
    max_abs_error: float
    max_rel_error: float
    outputs: list[OutputComparison] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        body = _finite({k: v for k, v in asdict(self).items() if k != "outputs"})
        body["outputs"] = [o.to_dict() for o in self.outputs]
        return body


def allowed_precisions(spec: BuildSpec, toolchain: str, quantized: bool = False) -> tuple[str, ...]:
    """The reduced precisions the builder could use: the spec's flags, plus tf32 where TensorRT may use it, plus
    the reduced types of the I/O tensors (io_formats: an fp16 output is held to fp16's tolerance) and of the
    layer rules (a layer pinned to fp16 in an fp32 build). `quantized`: the model has Q/DQ nodes, int8_qdq for
    every toolchain (in place of int8: module docstring)."""
    tf32 = ("tf32",) if toolchain == "tensorrt" and spec.tf32 else ()
    typed = [io.dtype for io in spec.io_formats.values()]
    typed += [t for rule in spec.layer_precisions for t in (rule.precision, *rule.output_types) if t]
    reduced = [t for t in typed if t in TOLERANCES and t != "fp32"]
    own = (*(p for p in spec.precision if not (quantized and p == "int8")), *(("int8_qdq",) if quantized else ()))
    return tuple(dict.fromkeys((*own, *tf32, *reduced)))


# I/O types whose values depend on a scale TensorRT takes from calibration or Q/DQ nodes and does not record
# with the engine: the worker cannot make inputs or read outputs of them, so such engines are not validated
SCALED_IO = ("int8", "fp8")


def io_feeds(feeds: dict[str, Any], spec: BuildSpec) -> tuple[dict[str, Any], str | None]:
    """The inputs as the engine receives them (spec.io_formats): each one of another type at the engine's boundary
    rounded through that type (fp16, bf16) or made integral (int32, int64, uint8, bool), so that ONNX Runtime
    and the engine see the same values; the runner then casts them and lays them out in the engine's formats.
    Second: why the engine cannot be validated at all (int8 or fp8 I/O), else None."""
    import numpy as np

    scaled = sorted(name for name, io in spec.io_formats.items() if io.dtype in SCALED_IO)
    if scaled:
        return feeds, (f"{', '.join(scaled)}: int8/fp8 at the engine's boundary hold values scaled by a factor "
                       "TensorRT takes from calibration or Q/DQ nodes and does not record with the engine, so the "
                       "worker can neither make inputs nor read outputs; validation skipped (the benchmark runs)")
    rounded = dict(feeds)
    for name, io in spec.io_formats.items():
        if name in feeds and io.dtype != "fp32" and np.asarray(feeds[name]).dtype.kind == "f":
            rounded[name] = _through(np.asarray(feeds[name]), io.dtype)
    return rounded, None


def _through(array: np.ndarray, dtype: str) -> np.ndarray:
    """`array` (floats) rounded through `dtype` and back to its own type."""
    import numpy as np

    if dtype == "fp16":
        return array.astype(np.float16).astype(array.dtype)
    if dtype == "bf16":  # round to nearest even on the upper 16 bits of float32
        bits = array.astype(np.float32).view(np.uint32)
        bits = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16) << 16
        return bits.astype(np.uint32).view(np.float32).astype(array.dtype)
    if dtype == "bool":
        return (np.rint(array) != 0).astype(array.dtype)
    limits = np.iinfo({"int32": np.int32, "int64": np.int64, "uint8": np.uint8}[dtype])
    return np.clip(np.rint(array), limits.min, limits.max).astype(array.dtype)


def tolerance_for(precision: tuple[str, ...] | list[str]) -> float:
    """Relative tolerance for the loosest precision the builder was allowed (fp32 when none)."""
    return max((TOLERANCES.get(p, 1e-1) for p in precision), default=TOLERANCES["fp32"])


def compare(reference: dict[str, Any], actual: dict[str, Any], precision: tuple[str, ...] = ()) -> ValidationResult:
    tol = tolerance_for(precision)
    outputs = [_compare_one(name, ref, actual.get(name), tol) for name, ref in reference.items()]
    measured = [o for o in outputs if o.max_abs_error is not None]
    failed = [o for o in outputs if not o.passed]
    return ValidationResult(
        passed=not failed,
        tolerance=tol,
        precision=list(precision),
        max_abs_error=max((o.max_abs_error for o in measured), default=0.0),  # type: ignore[type-var]
        max_rel_error=max((o.max_rel_error for o in measured), default=0.0),  # type: ignore[type-var]
        outputs=outputs,
        reason="; ".join(f"{o.name}: {o.reason}" for o in failed) or None,
    )


def _compare_one(name: str, reference: Any, actual: Any, tol: float) -> OutputComparison:
    import numpy as np

    ref = np.asarray(reference)
    if actual is None:
        return OutputComparison(name, False, shape=list(ref.shape), reason="missing from the engine's outputs")
    act = np.asarray(actual)
    if act.shape != ref.shape:
        return OutputComparison(name, False, shape=list(act.shape),
                                reason=f"shape {tuple(act.shape)} differs from the reference {tuple(ref.shape)}")
    if ref.dtype.kind in "OUS" or act.dtype.kind in "OUS":  # strings: equal or not
        same = bool(np.array_equal(ref.astype(str), act.astype(str)))
        return OutputComparison(name, same, 0.0 if same else None, 0.0 if same else None, list(ref.shape),
                                None if same else "strings differ from the reference")
    abs_err, rel_err = errors(ref, act)
    passed = rel_err <= tol
    reason = None if passed else f"max relative error {rel_err:.3g} > tolerance {tol:g} (max abs error {abs_err:.3g})"
    return OutputComparison(name, passed, abs_err, rel_err, list(ref.shape), reason)


def errors(reference: Any, actual: Any) -> tuple[float, float]:
    """(max absolute error, max relative error) as defined in the module docstring."""
    import numpy as np

    ref = np.asarray(reference).astype(np.float64)
    act = np.asarray(actual).astype(np.float64)
    if ref.size == 0:
        return 0.0, 0.0
    both_nan = np.isnan(ref) & np.isnan(act)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(both_nan | (ref == act), 0.0, np.abs(act - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    finite = np.abs(ref[np.isfinite(ref)])
    scale = float(finite.max()) if finite.size else 0.0
    worst = float(diff.max())
    return worst, worst / max(scale, REL_FLOOR_ABS)


def _finite(body: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: non-finite floats become None (the reason says what went wrong)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in body.items()}
