"""BuildSpec: how to build an engine. A frozen pydantic model; unknown fields are an error.

The spec covers TensorRT's option surface and ONNX Runtime's. Enum-like options are stored by
*name* (never TensorRT's integer enum values, which change between releases). Which options an
installed TensorRT actually has is decided by the runner, by feature detection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from registry.errors import InvalidSpec

Precision = Literal["fp16", "bf16", "fp8", "int8", "int4"]
TacticSource = Literal["cublas", "cublas_lt", "cudnn", "edge_mask_convolutions", "jit_convolutions"]
HardwareCompatibility = Literal["none", "ampere_plus", "same_compute_capability"]
Refit = Literal["none", "refit", "refit_identical"]
ProfilingVerbosity = Literal["none", "layer_names_only", "detailed"]
OrtOptimizationLevel = Literal["disable", "basic", "extended", "layout", "all"]
# Tensor data types and memory layouts by name (TensorRT's DataType / TensorFormat members, lower case).
DataType = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int32", "int64", "uint8", "bool"]
TensorFormat = Literal["linear", "chw2", "hwc8", "chw4", "chw16", "chw32", "dhwc8", "cdhw32", "hwc", "hwc16",
                       "dhwc"]
PrecisionConstraints = Literal["none", "prefer", "obey"]
# INT8 calibrators: IInt8EntropyCalibrator2, IInt8EntropyCalibrator, IInt8MinMaxCalibrator, IInt8LegacyCalibrator
CalibrationAlgorithm = Literal["entropy2", "entropy", "minmax", "legacy"]

# Options whose non-default value only means something to TensorRT.
TENSORRT_ONLY = (
    "precision", "strongly_typed", "workspace_mib", "tactic_sources", "hardware_compatibility",
    "version_compatible", "exclude_lean_runtime", "refit", "strip_weights", "weight_streaming",
    "dla_core", "gpu_fallback", "layer_precisions", "precision_constraints", "io_formats", "calibration_algorithm",
)
# Options that decide which runtimes can load a plan rather than what the plan computes.
COMPAT_OPTIONS = ("hardware_compatibility", "version_compatible", "exclude_lean_runtime")
# Options of the measurement after the build, not of the engine: outside the build key and the spec family.
MEASUREMENT_OPTIONS = ("bench",)
# Options added after key version 1: left out of the build key and the spec family while at their default,
# so that every spec written before them keeps its key (registry/keys.py).
ADDED_OPTIONS = ("layer_precisions", "precision_constraints", "io_formats", "sanitize", "calibration_algorithm")


INT32_MAX = 2**31 - 1


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def shape_text(dims: Sequence[int]) -> str:
    """(1, 3, 224, 224) -> '1x3x224x224', the farm's way of writing a shape (CLI, API, messages)."""
    return "x".join(str(int(d)) for d in dims)


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224); ValueError when a dimension is not an integer."""
    return tuple(int(d) for d in text.lower().split("x"))


class ShapeRange(_Frozen):
    """min/opt/max of one input's shape inside an optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"min, opt and max must have the same rank; got {self.min}, {self.opt}, {self.max}")
        if any(d > INT32_MAX for d in self.max):
            raise ValueError(f"dimensions must be <= {INT32_MAX} (TensorRT's dims are 32-bit); max is {self.max}")
        if any(d < 0 for d in self.min):  # 0 is an empty tensor: TensorRT and ONNX Runtime take it
            raise ValueError(f"dimensions must be >= 0; min is {self.min}")
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError("need min <= opt <= max in every dimension; "
                             f"got min={self.min} opt={self.opt} max={self.max}")
        return self

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(a <= s <= c for a, s, c in zip(self.min, shape, self.max))

    @classmethod
    def parse(cls, text: str) -> ShapeRange:
        """`1x3x224x224,8x3x224x224,32x3x224x224` (one shape = min = opt = max)."""
        parts = [p for p in text.split(",") if p]
        if len(parts) == 1:
            parts = parts * 3
        if len(parts) != 3:
            raise InvalidSpec(f"shape range {text!r}: give MIN,OPT,MAX like 1x3x224x224,8x3x224x224,32x3x224x224")
        try:
            dims = [parse_shape(p) for p in parts]
        except ValueError:
            raise InvalidSpec(f"shape range {text!r}: dimensions must be integers separated by 'x'") from None
        return _validated(cls, {"min": dims[0], "opt": dims[1], "max": dims[2]}, where="shape")


class OnnxRuntimeOptions(_Frozen):
    graph_optimization_level: OrtOptimizationLevel = "extended"
    optimized_model_format: Literal["ort", "onnx"] = "ort"


class BenchSettings(_Frozen):
    """How the worker times a built engine after validating it. Not part of the build key or the spec
    family: it changes the measurement, not the engine (the first submission's settings are used)."""

    enabled: bool = True
    iterations: int | None = Field(default=None, ge=1, le=1_000_000)  # None: the worker's TRTFARM_BENCH_ITERATIONS
    warmup: int | None = Field(default=None, ge=0, le=100_000)  # None: TRTFARM_BENCH_WARMUP
    max_seconds: float | None = Field(default=None, gt=0, le=3600)  # None: TRTFARM_BENCH_MAX_S


class LayerPrecision(_Frozen):
    """A per-layer constraint (trtexec's --layerPrecisions / --layerOutputTypes): the layers whose name matches
    `pattern` (fnmatch: `*`, `?`, `[...]`) compute in `precision` and/or write their outputs as `output_types`
    (one type for every output, or one per output). The first rule that matches a layer applies."""

    pattern: str = Field(min_length=1, max_length=512)
    precision: DataType | None = None
    output_types: tuple[DataType, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> LayerPrecision:
        if self.precision is None and not self.output_types:
            raise ValueError(f"layer rule {self.pattern!r}: give precision, output_types or both")
        return self


class IOFormat(_Frozen):
    """One network input's or output's data type and allowed memory layouts at the engine's boundary (trtexec's
    --inputIOFormats / --outputIOFormats): the application binds buffers of this type and layout."""

    dtype: DataType = "fp32"
    formats: tuple[TensorFormat, ...] = ("linear",)

    @field_validator("formats")
    @classmethod
    def _format_set(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one format (e.g. linear)")
        return tuple(sorted(set(value)))


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
SANITIZE_STEPS = ("fold_constants", "opset", "symbolic_dims", "shape_values")


class SanitizeSteps(_Frozen):
    """What the worker does to the model before any toolchain sees it (workers/sanitize.py). `sanitize: true`
    is this object with its defaults: the standard steps. Part of the key and the spec family: the engine
    computes the sanitized graph."""

    fold_constants: bool = True  # nodes whose inputs are all constants become initializers
    # the lowest ai.onnx opset the model may have: an older model is converted up to it (onnx's version
    # converter); null: never convert
    opset: int | None = Field(default=7, ge=7)
    symbolic_dims: bool = True  # each '?', unnamed or -1 dimension of an input gets a name of its own
    # input name -> its values: the input (a shape tensor, e.g. Expand's shape) becomes that constant
    shape_values: dict[str, tuple[int, ...]] = {}

    @field_validator("shape_values")
    @classmethod
    def _int64(cls, value: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        for name, values in value.items():
            if not name:
                raise ValueError("an input name must not be empty")
            if any(not INT64_MIN <= v <= INT64_MAX for v in values):
                raise ValueError(f"values of input {name!r} must fit in int64")
        return value

    def does_anything(self) -> bool:
        return self.fold_constants or self.opset is not None or self.symbolic_dims or bool(self.shape_values)


class BuildSpec(_Frozen):
    # precision: fp32 is always allowed; these add lower precisions the builder may choose
    precision: tuple[Precision, ...] = ()
    tf32: bool = True
    strongly_typed: bool = False
    # one dict per optimization profile: input name -> ShapeRange
    profiles: tuple[dict[str, ShapeRange], ...] = ()
    workspace_mib: int | None = Field(default=None, gt=0)
    optimization_level: int = Field(default=3, ge=0, le=5)
    tactic_sources: tuple[TacticSource, ...] | None = None
    hardware_compatibility: HardwareCompatibility = "none"
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    refit: Refit = "none"
    strip_weights: bool = False
    weight_streaming: bool = False
    dla_core: int | None = Field(default=None, ge=0)
    gpu_fallback: bool = False
    profiling_verbosity: ProfilingVerbosity = "layer_names_only"
    # per-layer precision: rules in order (first match wins), enforced as precision_constraints says
    layer_precisions: tuple[LayerPrecision, ...] = ()
    precision_constraints: PrecisionConstraints = "none"
    # network input/output name -> its data type and layouts at the engine's boundary
    io_formats: dict[str, IOFormat] = Field(default_factory=dict)
    # the INT8 calibrator when the build calibrates from a data set; null: entropy2 (docs/design.md "INT8")
    calibration_algorithm: CalibrationAlgorithm | None = None
    onnxruntime: OnnxRuntimeOptions = OnnxRuntimeOptions()
    # None (false): the model as uploaded; true: SanitizeSteps() (the standard steps); or an object of steps
    sanitize: SanitizeSteps | None = None
    bench: BenchSettings = BenchSettings()

    @field_validator("sanitize", mode="before")
    @classmethod
    def _sanitize_form(cls, value: Any) -> Any:
        if value is True:
            return SanitizeSteps()
        if value is False:
            return None
        if value is not None and not isinstance(value, (dict, SanitizeSteps)):
            raise ValueError("give true (the standard steps), false, or an object naming steps: "
                             + ", ".join(SANITIZE_STEPS))
        return value

    @field_validator("sanitize")
    @classmethod
    def _sanitize_off(cls, value: SanitizeSteps | None) -> SanitizeSteps | None:
        # steps that do nothing are no sanitizing: the same key as `false`
        return value if value is not None and value.does_anything() else None

    @field_validator("precision", "tactic_sources")
    @classmethod
    def _as_set(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # Sets in meaning: one canonical order so that equal specs get equal keys.
        return None if value is None else tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _consistent(self) -> BuildSpec:
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ValueError("exclude_lean_runtime needs version_compatible=true")
        if self.strip_weights and self.refit == "none":
            raise ValueError("strip_weights needs refit='refit' or 'refit_identical' "
                             "(the weights come back by refitting)")
        if self.gpu_fallback and self.dla_core is None:
            raise ValueError("gpu_fallback needs dla_core")
        if self.strongly_typed and self.precision:
            raise ValueError("strongly_typed takes precisions from the model; leave precision empty")
        if self.layer_precisions and self.precision_constraints == "none":
            raise ValueError("layer_precisions need precision_constraints 'obey' or 'prefer' (with 'none' TensorRT "
                             "may ignore them)")
        if self.strongly_typed and self.layer_precisions:
            raise ValueError("strongly_typed takes every layer's type from the model (TensorRT refuses layer "
                             "precisions there); leave layer_precisions empty")
        names = [set(p) for p in self.profiles]
        if any(n != names[0] for n in names[1:]):
            raise ValueError("every optimization profile must name the same inputs")
        constant = sorted(set(self.sanitize.shape_values if self.sanitize else ()) & (names[0] if names else set()))
        if constant:
            raise ValueError(f"sanitize.shape_values makes input(s) {', '.join(constant)} constants; "
                             "drop their ranges from the profiles")
        return self

    def uses_tensorrt_options(self) -> list[str]:
        """The TensorRT-only options this spec sets away from their defaults."""
        default = BuildSpec()
        return [name for name in TENSORRT_ONLY if getattr(self, name) != getattr(default, name)]

    def shape_ranges(self, name: str) -> list[ShapeRange]:
        return [p[name] for p in self.profiles if name in p]


def parse_spec(data: dict[str, Any] | BuildSpec | None) -> BuildSpec:
    """Validate user input into a BuildSpec; errors name the field and the allowed values."""
    if isinstance(data, BuildSpec):
        return data
    return _validated(BuildSpec, data or {}, where="spec")


def _validated(model: type[_Frozen], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(where, err, model) for err in exc.errors()]
        raise InvalidSpec("; ".join(problems), details={"errors": problems}) from None


def _describe(where: str, err: dict[str, Any], model: type[_Frozen] = BuildSpec) -> str:
    loc = ".".join(str(p) for p in (where, *err["loc"]))
    msg = err["msg"].removeprefix("Value error, ")
    msg = {"tuple_type": "should be a list", "dict_type": "should be an object ({...})"}.get(err["type"], msg)
    if err["type"] == "extra_forbidden":
        owner = _owner(model, tuple(err["loc"]))
        allowed = ", ".join(sorted(owner.model_fields)) if owner is not None else ""
        return f"{loc}: unknown field" + (f" (known fields: {allowed})" if allowed else "")
    got = err.get("input")
    return f"{loc}: {msg}" + (f" (got {got!r})" if got is not None and not isinstance(got, dict) else "")


def _owner(model: type[_Frozen], loc: tuple[Any, ...]) -> type[_Frozen] | None:
    """The model class that holds the field at `loc` (for listing its known fields)."""
    if len(loc) == 1:
        return model
    if model is BuildSpec and loc[0] == "onnxruntime" and len(loc) == 2:
        return OnnxRuntimeOptions
    if model is BuildSpec and loc[0] == "bench" and len(loc) == 2:
        return BenchSettings
    if model is BuildSpec and loc[0] == "sanitize" and len(loc) == 2:
        return SanitizeSteps
    if model is BuildSpec and loc[0] == "profiles" and len(loc) == 4:  # profiles.<k>.<input>.<field>
        return ShapeRange
    if model is BuildSpec and loc[0] == "layer_precisions" and len(loc) == 3:  # layer_precisions.<k>.<field>
        return LayerPrecision
    if model is BuildSpec and loc[0] == "io_formats" and len(loc) == 3:  # io_formats.<name>.<field>
        return IOFormat
    return None
