"""Option mapping of the TensorRT runner, against a recording fake `tensorrt` module.

Logic tests only: the fakes have the enum members of a TensorRT 8.6-like and a 10.x-like release (with
different integer values, so nothing may depend on stored integers); the real proof runs on a GPU host.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from registry.keys import spec_canonical
from registry.spec import ShapeRange, parse_spec
from registry.targets import sku_slug
from workers.toolchains import common
from workers.toolchains.tensorrt_runner import __main__ as cli
from workers.toolchains.tensorrt_runner import network, options, probe, runtime, session


# ---------------------------------------------------------------------------------------------------------
# The fake tensorrt
# ---------------------------------------------------------------------------------------------------------
class Member:
    """An enum member: a singleton with a name and an integer value."""

    def __init__(self, owner: str, name: str, value: int):
        self.owner, self.name, self.value = owner, name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"{self.owner}.{self.name}"


def enum(owner: str, names: list[str], reverse: bool = False) -> type:
    values = range(len(names) - 1, -1, -1) if reverse else range(len(names))
    return type(owner, (), {n: Member(owner, n, v) for n, v in zip(names, values)})


FLAGS_86 = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
            "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
            "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8"]
FLAGS_10 = FLAGS_86 + ["ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN",
                       "REFIT_IDENTICAL", "WEIGHT_STREAMING", "INT4"]
TACTIC_SOURCES = ["CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"]
TENSOR_FORMATS = ["LINEAR", "CHW2", "HWC8", "CHW4", "CHW16", "CHW32", "DHWC8", "CDHW32", "HWC", "DLA_LINEAR",
                  "DLA_HWC4", "HWC16", "DHWC"]  # 8.6's members (10.x has the same)
NPTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool",
           "UINT8": "uint8", "INT64": "int64"}


def make_fake_trt(flavor: str = "8.6", version: str | None = None, dla_cores: int = 0,
                  without_config_attrs: tuple[str, ...] = ()) -> types.ModuleType:
    ten = flavor == "10"
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version or ("10.9.0" if ten else "8.6.0")
    trt.builders_created = 0
    trt.plugins_initialised = 0
    trt.last_build = None
    trt.BuilderFlag = enum("BuilderFlag", FLAGS_10 if ten else FLAGS_86, reverse=ten)
    creation_flags = ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if ten else ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"]
    trt.NetworkDefinitionCreationFlag = enum("NetworkDefinitionCreationFlag", creation_flags)
    trt.MemoryPoolType = enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM",
                                                 "TACTIC_DRAM"], reverse=ten)
    trt.TacticSource = enum("TacticSource", TACTIC_SOURCES, reverse=ten)
    trt.HardwareCompatibilityLevel = enum(
        "HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"] + (["SAME_COMPUTE_CAPABILITY"] if ten else []))
    trt.DeviceType = enum("DeviceType", ["GPU", "DLA"])
    trt.ProfilingVerbosity = enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
    trt.TensorIOMode = enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    trt.TensorLocation = enum("TensorLocation", ["DEVICE", "HOST"])
    trt.LayerInformationFormat = enum("LayerInformationFormat", ["ONELINE", "JSON"])
    trt.DataType = enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8", "FP8"]
                        + (["BF16", "INT64", "INT4"] if ten else []))
    trt.TensorFormat = enum("TensorFormat", TENSOR_FORMATS, reverse=ten)
    trt.ILayer = FakeLayer

    import numpy as np

    def nptype(dtype):
        if dtype.name not in NPTYPES:
            raise TypeError(f"no numpy type for {dtype}")
        return np.dtype(NPTYPES[dtype.name]).type

    trt.nptype = nptype

    class ILogger:
        Severity = enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"])

        def __init__(self):
            pass

    trt.ILogger = ILogger
    trt.CalibrationAlgoType = enum("CalibrationAlgoType", ["LEGACY_CALIBRATION", "ENTROPY_CALIBRATION",
                                                           "ENTROPY_CALIBRATION_2", "MINMAX_CALIBRATION"])
    for name, algorithm in CALIBRATORS.items():
        setattr(trt, name, make_calibrator_base(trt, name, algorithm))

    trt.events = []  # the order of plugin registration, parsing and deserialization (test_tensorrt_plugins)
    registry = FakePluginRegistry()

    def init_libnvinfer_plugins(logger, namespace):
        """Registers libnvinfer_plugin's creators (8.6 ships EfficientNMS_TRT, version 1), once per process."""
        trt.plugins_initialised += 1
        trt.events.append("init_libnvinfer_plugins")
        registry.register("EfficientNMS_TRT", "1", namespace)
        registry.register("BatchedNMS_TRT", "1", namespace)
        return True

    trt.init_libnvinfer_plugins = init_libnvinfer_plugins
    trt.get_plugin_registry = lambda: registry
    trt.IBuilderConfig = make_config_class(trt, without_config_attrs)
    trt.Builder = make_builder_class(trt, dla_cores)
    trt.OnnxParser = FakeParser
    trt.Runtime = make_runtime_class(trt, ten)
    return trt


# TensorRT's INT8 calibrator base classes and the CalibrationAlgoType each one's get_algorithm() answers
CALIBRATORS = {"IInt8EntropyCalibrator2": "ENTROPY_CALIBRATION_2", "IInt8EntropyCalibrator": "ENTROPY_CALIBRATION",
               "IInt8MinMaxCalibrator": "MINMAX_CALIBRATION", "IInt8LegacyCalibrator": "LEGACY_CALIBRATION"}


def make_calibrator_base(trt, name: str, algorithm: str) -> type:
    """A calibrator base like TensorRT's pybind trampolines: a subclass must call Base.__init__(self) (TensorRT
    crashes otherwise; the fake remembers it), and get_algorithm() names the algorithm."""

    def __init__(self):
        self.base_initialised = True

    def get_algorithm(self):
        return getattr(trt.CalibrationAlgoType, algorithm)

    return type(name, (), {"__init__": __init__, "get_algorithm": get_algorithm})


class Recorder:
    """Records method calls and public attribute writes as (what, *names-or-values)."""

    def __init__(self):
        object.__setattr__(self, "calls", [])

    def __setattr__(self, name, value):
        self.calls.append(("set", name, getattr(value, "name", value)))
        object.__setattr__(self, name, value)


def make_config_class(trt, without: tuple[str, ...]):
    class IBuilderConfig(Recorder):
        builder_optimization_level = 3
        hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE
        profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY

        def __init__(self):
            super().__init__()
            object.__setattr__(self, "profiles", [])
            object.__setattr__(self, "flags", set())
            object.__setattr__(self, "timing_cache", None)

        def set_flag(self, flag):
            self.calls.append(("set_flag", flag.name))
            self.flags.add(flag.name)

        def clear_flag(self, flag):
            self.calls.append(("clear_flag", flag.name))
            self.flags.discard(flag.name)

        def set_memory_pool_limit(self, pool, size):
            self.calls.append(("set_memory_pool_limit", pool.name, size))

        def set_tactic_sources(self, mask):
            self.calls.append(("set_tactic_sources", mask))
            return True

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data):
            data = bytes(data)
            if data.startswith(b"BAD"):
                raise RuntimeError("malformed timing cache")
            return FakeTimingCache(data) if data == b"" or data.startswith(b"TC") else None

        def set_timing_cache(self, cache, ignore_mismatch):
            object.__setattr__(self, "timing_cache", cache)
            return True

        def get_timing_cache(self):
            return self.timing_cache

    for name in without:
        delattr(IBuilderConfig, name)
    return IBuilderConfig


class FakeTimingCache:
    def __init__(self, data: bytes):
        self.entries = [e for e in data[2:].split(b";") if e]
        self.version = b"v2" if data.startswith(b"TCv2") else b""

    def combine(self, other, ignore_mismatch):
        if other.version != self.version:
            return False
        self.entries += other.entries
        return True

    def serialize(self):
        return b"TC" + self.version + b";".join(self.entries)


class FakeProfile:
    def __init__(self):
        self.calls, self.shapes = [], {}

    def set_shape(self, name, lo, opt, hi):
        self.calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))

    def set_shape_input(self, name, lo, opt, hi):
        self.calls.append(("set_shape_input", name, tuple(lo), tuple(opt), tuple(hi)))


class FakeTensor:
    """ITensor: name, shape, dtype (None: FLOAT) and allowed_formats (None: never set, LINEAR) as set."""

    def __init__(self, name, shape, dim_names=None, dtype=None, is_shape_tensor=False):
        self.name, self.shape, self.is_shape_tensor = name, tuple(shape), is_shape_tensor
        self.dtype, self.allowed_formats = dtype, None
        if dim_names is not None:  # only the 10.x-like fake names dimensions
            self.get_dimension_name = lambda axis: dim_names[axis]


class FakeLayer:
    """ILayer: its precision (a property, as TensorRT's binding has) and output types record what was set.
    Described in the model's fake JSON as {"name", "outputs": N, "precision": "INT32", "output_dtype": "INT32",
    "shape_input": true, "engine_name": "conv0 + relu0"} (all but name optional)."""

    def __init__(self, trt, described: dict):
        self.name, self.engine_name = described["name"], described.get("engine_name", described["name"])
        self._precision = getattr(trt.DataType, described.get("precision", "FLOAT"))
        self.precision_set, self.output_types = False, {}
        out_type = getattr(trt.DataType, described.get("output_dtype", "FLOAT"))
        self.outputs = [FakeTensor(f"{self.name}:{i}", (), dtype=out_type) for i in range(described.get("outputs", 1))]
        self.inputs = [FakeTensor(f"{self.name}.in", (), is_shape_tensor=described.get("shape_input", False))]

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, value):
        self._precision, self.precision_set = value, True

    @property
    def num_outputs(self):
        return len(self.outputs)

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_output(self, i):
        return self.outputs[i]

    def get_input(self, i):
        return self.inputs[i]

    def set_output_type(self, index, dtype):
        if not 0 <= index < len(self.outputs):
            raise IndexError(f"layer {self.name} has no output {index}")
        self.output_types[index] = dtype


class FakeNetwork:
    def __init__(self, flags, name_dims, trt=None):
        self.flags, self.name_dims, self.inputs, self.model, self.trt = flags, name_dims, [], {}, trt
        self.outputs, self.layers = [], []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]

    @property
    def num_outputs(self):
        return len(self.outputs)

    def get_output(self, i):
        return self.outputs[i]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


class FakeParserError:
    def __init__(self, desc, node, code):
        self._desc, self._node, self._code = desc, node, code

    def desc(self):
        return self._desc

    def node(self):
        return self._node

    def code(self):
        return self._code


class FakePluginRegistry:
    """tensorrt.IPluginRegistry: `plugin_creator_list` of IPluginCreator (name, plugin_version,
    plugin_namespace); register_creator answers False for a (name, version, namespace) already registered."""

    def __init__(self):
        self.plugin_creator_list = []

    def register(self, name, version, namespace=""):
        return self.register_creator(types.SimpleNamespace(name=name, plugin_version=version,
                                                           plugin_namespace=namespace), namespace)

    def register_creator(self, creator, plugin_namespace=""):
        key = (creator.name, creator.plugin_version, plugin_namespace)
        if any((c.name, c.plugin_version, c.plugin_namespace) == key for c in self.plugin_creator_list):
            return False
        self.plugin_creator_list.append(creator)
        return True

    def get_plugin_creator(self, type, version, plugin_namespace=""):  # noqa: A002 - TensorRT's parameter name
        return next((c for c in self.plugin_creator_list if (c.name, c.plugin_version, c.plugin_namespace)
                     == (type, version, plugin_namespace)), None)


class FakeParser:
    """Reads the model description from MODEL + '.fake.json' (the .onnx itself may be a real ONNX file)."""

    def __init__(self, network, logger):
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        getattr(self.network.trt, "events", []).append("parse_from_file")
        model = json.loads(Path(path + ".fake.json").read_text())
        self.network.model = model
        self.errors = [FakeParserError(*e) for e in model.get("parse_errors", [])]
        for i in model["inputs"]:
            names = i.get("dim_names", [None] * len(i["shape"])) if self.network.name_dims else None
            self.network.inputs.append(FakeTensor(i["name"], i["shape"], names))
        self.network.outputs = [FakeTensor(o["name"], o["shape"]) for o in model["outputs"]]
        self.network.layers = [FakeLayer(self.network.trt, layer) for layer in model.get("layers", [])]
        return not self.errors

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


def make_builder_class(trt, dla_cores: int):
    ten = trt.__version__.startswith("10")

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            trt.builders_created += 1
            self.logger = logger

        def create_network(self, flags):
            return FakeNetwork(flags, name_dims=ten, trt=trt)

        def create_builder_config(self):
            return trt.IBuilderConfig()

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            for message in network.model.get("warnings", []):
                self.logger.log(trt.ILogger.Severity.WARNING, message)
            if network.model.get("build_errors"):
                for message in network.model["build_errors"]:
                    self.logger.log(trt.ILogger.Severity.ERROR, message)
                return None
            trt.last_build = (network, config)
            header = bytes(int(p) for p in (trt.__version__.split(".") + ["12"])[:4])
            if trt.__version__.startswith("8.5"):  # measured on an H100: 8.5.3.1 writes another layout
                header = bytes([2, 128, 1, 0])
            return b"ftrt" + bytes(20) + header + b"fake plan"

    return Builder


def make_runtime_class(trt, ten: bool):
    class Runtime:
        engine_host_code_allowed = False

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, plan):
            trt.events.append("deserialize_cuda_engine")
            return FakeEngine(trt, *trt.last_build, v2=ten)

    return Runtime


class FakeEngine:
    """The engine of the last build: its I/O tensors with the types and formats the network's tensors were given
    (the first allowed format is the one chosen), an inspector that answers like TensorRT's for the config's
    profiling verbosity."""

    def __init__(self, trt, network, config, v2: bool):
        self.trt, self.network, self.config = trt, network, config
        self.tensors = [(t.name, trt.TensorIOMode.INPUT, t.shape) for t in network.inputs]
        self.tensors += [(t.name, trt.TensorIOMode.OUTPUT, t.shape) for t in network.outputs]
        self.network_tensors = {t.name: t for t in (*network.inputs, *network.outputs)}
        self.refittable = "REFIT" in config.flags or "REFIT_IDENTICAL" in config.flags
        self.num_layers = 3
        setattr(self, "device_memory_size_v2" if v2 else "device_memory_size", 4096)

    @property
    def num_io_tensors(self):
        return len(self.tensors)

    @property
    def num_optimization_profiles(self):
        return max(1, len(self.config.profiles))

    def _tensor(self, name):
        return next(t for t in self.tensors if t[0] == name)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return self._tensor(name)[1]

    def get_tensor_dtype(self, name):
        return self.network_tensors[name].dtype or self.trt.DataType.FLOAT

    def get_tensor_format(self, name):
        mask = self.network_tensors[name].allowed_formats
        members = [m for m in vars(self.trt.TensorFormat).values() if isinstance(m, Member)]
        chosen = [m for m in sorted(members, key=int) if mask is not None and mask & (1 << int(m))]
        return chosen[0] if chosen else self.trt.TensorFormat.LINEAR

    def get_tensor_format_desc(self, name):
        return f"fake {self.get_tensor_format(name).name} {self.get_tensor_dtype(name).name}"

    def get_tensor_shape(self, name):
        return self._tensor(name)[2]

    def get_tensor_profile_shape(self, name, k):
        if not self.config.profiles:
            shape = self._tensor(name)[2]
            return [shape, shape, shape]
        return list(self.config.profiles[k].shapes[name])

    def create_engine_inspector(self):
        if not self.network.layers:
            return types.SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": ["conv", fmt.name]}))
        detailed = self.config.profiling_verbosity.name == "DETAILED"
        layers = [self.layer_information(layer) if detailed else layer.engine_name for layer in self.network.layers]
        return types.SimpleNamespace(get_engine_information=lambda fmt: json.dumps({"Layers": layers}))

    def layer_information(self, layer):
        """One layer as the DETAILED JSON has it: Name, LayerType, Outputs with their Format/Datatype text."""
        words = {"FLOAT": "FP32", "HALF": "FP16", "INT32": "Int32", "INT8": "Int8", "BF16": "BF16"}

        def output_type(i):
            dtype = layer.output_types.get(i) or (layer.precision if layer.precision_set else None)
            return words.get(dtype.name, dtype.name) if dtype is not None else "FP16"  # what an fp16 build picks

        return {"Name": layer.engine_name, "LayerType": "CaskConvolution",
                "Outputs": [{"Name": t.name, "Format/Datatype": f"Row major linear {output_type(i)} format"}
                            for i, t in enumerate(layer.outputs)]}


# ---------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------
def canonical(**given) -> dict:
    """What the worker sends: registry's canonical spec, through JSON. Profiles may be given as CLI text."""
    if "profiles" in given:
        given["profiles"] = [{name: ShapeRange.parse(text) if isinstance(text, str) else text
                              for name, text in profile.items()} for profile in given["profiles"]]
    return json.loads(json.dumps(spec_canonical(parse_spec(given))))


def spec_requesting(option: str) -> dict:
    """A valid spec that asks for exactly `option` (plus what the spec rules require alongside it)."""
    name, _, value = option.partition("=")
    if name in ("precision", "tactic_sources"):
        return {name: [value]}
    if value and "." not in name:
        return {name: value}
    return {
        "tf32": {"tf32": False},
        "workspace_mib": {"workspace_mib": 64},
        "optimization_level": {"optimization_level": 1},
        "dla_core": {"dla_core": 0},
        "gpu_fallback": {"gpu_fallback": True, "dla_core": 0},
        "exclude_lean_runtime": {"exclude_lean_runtime": True, "version_compatible": True},
        "strip_weights": {"strip_weights": True, "refit": "refit"},
        "profiles": {"profiles": [{"x": "1x3x8x8,2x3x8x8,4x3x8x8"}]},
        "layer_precisions": {"layer_precisions": [{"pattern": "conv*", "precision": "fp32"}],
                             "precision_constraints": "obey"},
        "layer_precisions.dtype": {"layer_precisions": [{"pattern": "conv*", "output_types": [value]}],
                                   "precision_constraints": "prefer"},
        "io_formats.dtype": {"io_formats": {"x": {"dtype": value}}},
        "io_formats.format": {"io_formats": {"x": {"dtype": "fp16", "formats": [value]}}},
    }.get(name, {name: True})


def configured(trt, **given):
    spec = canonical(**given)
    builder = trt.Builder(None)
    config = trt.IBuilderConfig()
    options.configure(trt, builder, config, spec)
    return config.calls


def error_of(fn, *args):
    with pytest.raises(common.RunnerError) as caught:
        fn(*args)
    return caught.value


def write_model(tmp_path: Path, inputs, outputs=({"name": "y", "shape": [1, 10]},), **extra) -> Path:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx")
    description = {"inputs": list(inputs), "outputs": list(outputs), **extra}
    Path(str(model) + ".fake.json").write_text(json.dumps(description))
    return model


def run_build(tmp_path: Path, model: Path, spec: dict, *extra: str) -> tuple[int, dict]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    result = tmp_path / "result.json"
    code = cli.main(["build", "--model", str(model), "--spec", str(spec_path), "--out", str(tmp_path / "plan"),
                     "--result", str(result), *extra])
    return code, json.loads(result.read_text())


STATIC_X = {"name": "x", "shape": [1, 3, 8, 8]}


# ---------------------------------------------------------------------------------------------------------
# Option mapping
# ---------------------------------------------------------------------------------------------------------
MAPPING = [
    ({"precision": ["fp16"]}, [("set_flag", "FP16")]),
    ({"precision": ["bf16"]}, [("set_flag", "BF16")]),
    ({"precision": ["fp8"]}, [("set_flag", "FP8")]),
    ({"precision": ["int8"]}, [("set_flag", "INT8")]),
    ({"precision": ["int4"]}, [("set_flag", "INT4")]),
    ({"precision": ["fp16", "int8"]}, [("set_flag", "FP16"), ("set_flag", "INT8")]),
    ({"tf32": False}, [("clear_flag", "TF32")]),
    ({"workspace_mib": 512}, [("set_memory_pool_limit", "WORKSPACE", 512 << 20)]),
    ({"optimization_level": 5}, [("set", "builder_optimization_level", 5)]),
    ({"optimization_level": 0}, [("set", "builder_optimization_level", 0)]),
    ({"hardware_compatibility": "ampere_plus"}, [("set", "hardware_compatibility_level", "AMPERE_PLUS")]),
    ({"hardware_compatibility": "same_compute_capability"},
     [("set", "hardware_compatibility_level", "SAME_COMPUTE_CAPABILITY")]),
    ({"version_compatible": True}, [("set_flag", "VERSION_COMPATIBLE")]),
    ({"version_compatible": True, "exclude_lean_runtime": True},
     [("set_flag", "VERSION_COMPATIBLE"), ("set_flag", "EXCLUDE_LEAN_RUNTIME")]),
    ({"refit": "refit"}, [("set_flag", "REFIT")]),
    ({"refit": "refit_identical"}, [("set_flag", "REFIT_IDENTICAL")]),
    ({"refit": "refit", "strip_weights": True}, [("set_flag", "REFIT"), ("set_flag", "STRIP_PLAN")]),
    ({"weight_streaming": True}, [("set_flag", "WEIGHT_STREAMING")]),
    ({"dla_core": 0}, [("set", "default_device_type", "DLA"), ("set", "DLA_core", 0)]),
    ({"dla_core": 1, "gpu_fallback": True},
     [("set_flag", "GPU_FALLBACK"), ("set", "default_device_type", "DLA"), ("set", "DLA_core", 1)]),
    ({"profiling_verbosity": "detailed"}, [("set", "profiling_verbosity", "DETAILED")]),
    ({"profiling_verbosity": "none"}, [("set", "profiling_verbosity", "NONE")]),
    ({"strongly_typed": True}, []),  # a network creation flag, not a config setting
    ({}, []),
]


@pytest.mark.parametrize("given,expected", MAPPING, ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_each_option_maps_to_its_setting(given, expected):
    trt = make_fake_trt("10", dla_cores=2)
    assert sorted(configured(trt, **given), key=repr) == sorted(expected, key=repr)


@pytest.mark.parametrize("flavor", ["8.6", "10"])
def test_default_spec_touches_nothing(flavor):
    trt = make_fake_trt(flavor)
    assert configured(trt) == []
    assert network.network_flags(trt, canonical()) == (1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
                                                       if flavor == "8.6" else 0)


def test_network_flags_strongly_typed_on_10():
    trt = make_fake_trt("10")
    flags = network.network_flags(trt, canonical(strongly_typed=True))
    assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # no EXPLICIT_BATCH on 10.x


@pytest.mark.parametrize("flavor", ["8.6", "10"])
def test_tactic_source_bitmask_uses_the_installed_enum_values(flavor):
    trt = make_fake_trt(flavor)
    calls = configured(trt, tactic_sources=["edge_mask_convolutions", "jit_convolutions"])
    expected = (1 << int(trt.TacticSource.EDGE_MASK_CONVOLUTIONS)) | (1 << int(trt.TacticSource.JIT_CONVOLUTIONS))
    assert calls == [("set_tactic_sources", expected)]
    assert expected == (0b11000 if flavor == "8.6" else 0b00011)  # the two fakes number them differently
    assert configured(trt, tactic_sources=[]) == [("set_tactic_sources", 0)]
    everything = configured(trt, tactic_sources=["cublas", "cublas_lt", "cudnn"])
    assert everything == [("set_tactic_sources", sum(1 << int(getattr(trt.TacticSource, n))
                                                     for n in ("CUBLAS", "CUBLAS_LT", "CUDNN")))]


# ---------------------------------------------------------------------------------------------------------
# Unsupported options
# ---------------------------------------------------------------------------------------------------------
MISSING_ON_86 = [
    ("precision=bf16", {"precision": ["bf16"]}, "9.0"),
    ("precision=fp8", {"precision": ["fp8"]}, "9.0"),  # the enum member exists in 8.6; builds need 9.0
    ("precision=int4", {"precision": ["int4"]}, "10.0"),
    ("strongly_typed", {"strongly_typed": True}, "9.0"),
    ("weight_streaming", {"weight_streaming": True}, "10.0"),
    ("strip_weights", {"strip_weights": True, "refit": "refit"}, "10.0"),
    ("refit=refit_identical", {"refit": "refit_identical"}, "10.0"),
    ("hardware_compatibility=same_compute_capability", {"hardware_compatibility": "same_compute_capability"}, "10.9"),
]


@pytest.mark.parametrize("option,given,floor", MISSING_ON_86, ids=[m[0] for m in MISSING_ON_86])
def test_option_missing_on_86_is_unsupported_with_exact_message(option, given, floor):
    trt = make_fake_trt("8.6")
    error = error_of(options.check_options, trt, canonical(**given))
    assert error.code == "unsupported_option"
    assert error.message == f"{option} needs TensorRT >= {floor}; this toolchain has 8.6.0"


@pytest.mark.parametrize("option,given,floor", MISSING_ON_86, ids=[m[0] for m in MISSING_ON_86])
def test_build_command_reports_unsupported_before_touching_the_gpu(tmp_path, install, option, given, floor):
    trt = install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(**given))
    assert code == 2
    message = f"{option} needs TensorRT >= {floor}; this toolchain has 8.6.0"
    assert result == {"ok": False, "error": {"code": "unsupported_option", "hint": None, "message": message}}
    assert trt.builders_created == 0
    assert not (tmp_path / "plan").exists()


def test_several_unsupported_options_are_all_named():
    spec = canonical(precision=["bf16", "fp16"], weight_streaming=True)
    error = error_of(options.check_options, make_fake_trt("8.6"), spec)
    assert error.message.split(" | ") == ["precision=bf16 needs TensorRT >= 9.0; this toolchain has 8.6.0",
                                         "weight_streaming needs TensorRT >= 10.0; this toolchain has 8.6.0"]


def test_default_optimization_level_does_not_need_the_setting():
    trt = make_fake_trt("8.6", version="8.5.3", without_config_attrs=("builder_optimization_level",))
    assert configured(trt, optimization_level=3) == []
    with pytest.raises(common.RunnerError) as caught:
        configured(trt, optimization_level=5)
    assert caught.value.code == "unsupported_option"
    assert caught.value.message == "optimization_level needs TensorRT >= 8.6; this toolchain has 8.5.3"


def test_an_option_removed_by_a_newer_release_is_reported_as_missing():
    trt = make_fake_trt("10", version="10.9.0")
    delattr(trt.TacticSource, "CUBLAS_LT")
    error = error_of(options.check_options, trt, canonical(tactic_sources=["cublas_lt"]))
    assert error.code == "unsupported_option"
    assert error.message == ("tactic_sources=cublas_lt is not available in this toolchain's TensorRT 10.9.0 "
                             "(TacticSource.CUBLAS_LT is missing)")


def test_dla_core_needs_a_dla():
    with pytest.raises(common.RunnerError) as caught:
        configured(make_fake_trt("10", dla_cores=0), dla_core=0)
    assert caught.value.code == "unsupported_option"
    assert "this GPU has 0 DLA cores" in caught.value.message


# ---------------------------------------------------------------------------------------------------------
# Features: one detection function for --probe and build
# ---------------------------------------------------------------------------------------------------------
FEATURES_86 = [
    "precision=fp16", "precision=int8", "tf32", "workspace_mib", "optimization_level",
    "tactic_sources=cublas", "tactic_sources=cublas_lt", "tactic_sources=cudnn",
    "tactic_sources=edge_mask_convolutions", "tactic_sources=jit_convolutions",
    "hardware_compatibility=ampere_plus", "version_compatible", "exclude_lean_runtime", "refit=refit",
    "dla_core", "gpu_fallback", "profiling_verbosity=none", "profiling_verbosity=layer_names_only",
    "profiling_verbosity=detailed", "profiles", "precision_constraints=obey", "precision_constraints=prefer",
    "layer_precisions",
    *(f"calibration_algorithm={a}" for a in ("entropy2", "entropy", "minmax", "legacy")),
    *(f"layer_precisions.dtype={t}" for t in ("fp32", "fp16", "int8", "int32", "uint8", "bool")),
    *(f"io_formats.dtype={t}" for t in ("fp32", "fp16", "int8", "int32", "uint8", "bool")),
    *(f"io_formats.format={f}" for f in ("linear", "chw2", "hwc8", "chw4", "chw16", "chw32", "dhwc8", "cdhw32", "hwc",
                                         "hwc16", "dhwc")),
]


def test_features_of_the_86_like_fake():
    assert options.supported_features(make_fake_trt("8.6")) == FEATURES_86


def test_features_of_the_10_like_fake_are_every_option():
    assert options.supported_features(make_fake_trt("10")) == list(options.OPTIONS)


@pytest.mark.parametrize("flavor", ["8.6", "10"])
def test_features_equal_what_build_accepts(flavor):
    trt = make_fake_trt(flavor, dla_cores=1)
    accepted, refusals = [], set()
    for option in options.OPTIONS:
        spec = canonical(**spec_requesting(option))
        assert option in options.requested_options(spec) or spec == canonical()  # a default value asks for nothing
        try:
            options.check_options(trt, spec)
        except common.RunnerError as exc:
            refusals.add(exc.code)
            continue
        accepted.append(option)
    assert accepted == options.supported_features(trt)
    assert refusals <= {"unsupported_option"}


def test_every_spec_option_is_covered_by_the_table():
    """A new BuildSpec option must get a row in OPTIONS (or be ONNX Runtime's)."""
    spec = canonical()
    covered = {option.split("=")[0].split(".")[0] for option in options.OPTIONS} | set(options.IGNORED_FIELDS)
    assert set(spec) == covered
    assert set(options.SPEC_FIELDS) | set(options.IGNORED_FIELDS) == set(spec)


def test_the_default_spec_asks_tensorrt_for_nothing():
    """BuildSpec's defaults are TensorRT's untouched builder config: the runner keeps no spec defaults."""
    spec = canonical()
    assert {k: spec[k] for k in options.TENSORRT_UNTOUCHED} == options.TENSORRT_UNTOUCHED
    assert options.requested_options(spec) == []


@pytest.mark.parametrize("field", ["tf32", "profiles", "optimization_level"])
def test_a_spec_missing_a_field_is_invalid_input(tmp_path, install, field):
    trt = install(make_fake_trt("8.6"))
    spec = {k: v for k, v in canonical().items() if k != field}
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), spec)
    assert code == 2
    assert result["error"] == {"code": "invalid_input", "hint": None,
                               "message": f"spec.json is not a canonical spec: missing field {field}"}
    assert trt.builders_created == 0


def test_a_spec_with_an_unknown_field_is_invalid_input(tmp_path, install):
    install(make_fake_trt("8.6"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), {**canonical(), "turbo": True})
    assert code == 2 and result["error"]["code"] == "invalid_input"
    assert result["error"]["message"].startswith("unknown spec option(s) turbo; known: bench, calibration_algorithm, "
                                                 "dla_core, ")


def test_tensorrt_is_imported_through_runtime_import_trt(install):
    """Every command gets tensorrt from runtime.import_trt(), which imports it lazily: the fake installed
    in sys.modules is what the package sees."""
    trt = install(make_fake_trt("10"))
    assert runtime.import_trt() is trt


def test_probe_prints_features_and_devices(install, monkeypatch, capsys):
    install(make_fake_trt("8.6"))
    monkeypatch.setattr(probe, "probe_gpus", lambda: [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}])
    assert cli.main(["--probe"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["kind"] == "tensorrt" and found["version"] == "8.6.0"
    assert found["features"] == FEATURES_86
    assert found["devices"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]


def test_probe_without_tensorrt_fails_cleanly(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    assert cli.main(["--probe"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "invalid_input"
    assert sys.executable in error["message"] and "tensorrt is not importable" in error["message"]


# ---------------------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------------------
def network_with(trt, *tensors):
    fake = FakeNetwork(0, name_dims=False)
    fake.inputs = [FakeTensor(name, shape) for name, shape in tensors]
    return network.network_inputs(fake)


def test_profiles_become_set_shape_calls():
    trt = make_fake_trt("8.6")
    inputs = network_with(trt, ("x", (-1, 3, -1, -1)), ("mask", (-1, 10)))
    spec = canonical(profiles=[{"x": "1x3x32x32,4x3x64x64,8x3x128x128", "mask": "1x10,4x10,8x10"},
                               {"x": "16x3x224x224", "mask": "16x10"}])
    network.validate_profiles(spec, inputs)
    builder, config = trt.Builder(None), trt.IBuilderConfig()
    profiles = network.add_profiles(builder, config, spec, inputs)
    assert config.profiles == profiles and len(profiles) == 2
    assert sorted(profiles[0].calls) == [("set_shape", "mask", (1, 10), (4, 10), (8, 10)),
                                         ("set_shape", "x", (1, 3, 32, 32), (4, 3, 64, 64), (8, 3, 128, 128))]
    assert sorted(profiles[1].calls) == [("set_shape", "mask", (16, 10), (16, 10), (16, 10)),
                                         ("set_shape", "x", (16, 3, 224, 224), (16, 3, 224, 224), (16, 3, 224, 224))]


def test_dynamic_inputs_without_a_profile_say_how_to_give_one():
    inputs = network_with(None, ("x", (-1, 3, -1, -1)), ("scale", (1,)))
    error = error_of(network.validate_profiles, canonical(), inputs)
    assert error.code == "invalid_input"
    assert "x ?x3x?x?" in error.message and "scale" not in error.message
    assert "--shape NAME:MIN,OPT,MAX" in error.hint and "--shape x:1x3x1x1,4x3x4x4,8x3x8x8" in error.hint


def test_a_shape_tensor_without_a_profile_asks_for_its_values():
    inputs = network_with(None, ("data", (3, 1)), ("shape", (2,)))
    inputs["shape"]["shape_tensor"] = True
    error = error_of(network.validate_profiles, canonical(), inputs)
    assert error.code == "invalid_input"
    assert "shape: a shape tensor of 2 values" in error.message and "data" not in error.message
    assert "range of its values" in error.hint and "--shape shape:1x1,4x4,8x8" in error.hint


def test_a_profile_naming_an_unknown_input_lists_the_real_ones():
    inputs = network_with(None, ("images", (-1, 3, 224, 224)))
    error = error_of(network.validate_profiles, canonical(profiles=[{"image": "1x3x224x224"}]), inputs)
    assert error.code == "invalid_input"
    assert "image" in error.message and "images ?x3x224x224" in error.message


@pytest.mark.parametrize("shape,needle", [("1x3x224", "rank 3"), ("1x4x224x224", "dimension 1 is fixed at 3")])
def test_profile_shapes_must_fit_the_model(shape, needle):
    inputs = network_with(None, ("x", (-1, 3, 224, 224)))
    error = error_of(network.validate_profiles, canonical(profiles=[{"x": shape}]), inputs)
    assert error.code == "invalid_input" and needle in error.message


SYMBOL_HINT = ("TensorRT treats every dynamic dimension with the same symbolic name as one symbol: "
               "dims named '?' in x[2], x[3] must be equal in every profile")


def test_shared_symbolic_dims_from_the_network_must_match(tmp_path, install):
    install(make_fake_trt("10"))  # the 10.x-like fake names dimensions (ITensor.get_dimension_name)
    model = write_model(tmp_path, [{"name": "x", "shape": [-1, 3, -1, -1], "dim_names": ["N", None, "?", "?"]}])
    code, result = run_build(tmp_path, model, canonical(profiles=[{"x": "1x3x224x256"}]))
    assert code == 2
    assert result["error"]["code"] == "invalid_input"
    assert result["error"]["hint"] == SYMBOL_HINT
    code, result = run_build(tmp_path, model, canonical(profiles=[{"x": "1x3x224x224,2x3x256x256,4x3x320x320"}]))
    assert code == 0, result


def test_shared_symbolic_dims_from_the_onnx_file(tmp_path, install):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    install(make_fake_trt("8.6"))  # no get_dimension_name: names come from the onnx package
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "?", "?"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "?", "?"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = write_model(tmp_path, [{"name": "x", "shape": [-1, 3, -1, -1]}])
    onnx.save(helper.make_model(graph), str(model))
    code, result = run_build(tmp_path, model, canonical(profiles=[{"x": "1x3x224x256"}]))
    assert (code, result["error"]["code"], result["error"]["hint"]) == (2, "invalid_input", SYMBOL_HINT)


# ---------------------------------------------------------------------------------------------------------
# The build command end to end (fake TensorRT)
# ---------------------------------------------------------------------------------------------------------
def test_a_plan_header_of_another_layout_is_recorded_as_unknown_with_the_reason(tmp_path, install):
    install(make_fake_trt("8.6", version="8.5.3.1"))
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical())
    assert code == 0, result
    meta = result["metadata"]
    assert meta["version"] == "8.5.3.1" and meta["plan_version"] is None and meta["plan_build"] is None
    assert meta["plan_header"].startswith("unknown layout (magic b'ftrt', bytes 24..27 = 2.128.1.0): TensorRT 8.5.3.1 "
                                          "does not write its version where 8.6 does")


def test_build_writes_plan_cache_and_metadata(tmp_path, install):
    trt = install(make_fake_trt("8.6"))
    cache_in = tmp_path / "cache.in"
    cache_in.write_bytes(b"TCa;b")
    spec = canonical(precision=["fp16"], tactic_sources=["edge_mask_convolutions", "jit_convolutions"],
                     refit="refit", profiling_verbosity="detailed")
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), spec, "--timing-cache-in", str(cache_in),
                             "--timing-cache-out", str(tmp_path / "cache.out"))
    assert code == 0, result
    meta = result["metadata"]
    assert (tmp_path / "plan").read_bytes().startswith(b"ftrt")
    header = (meta["toolchain"], meta["version"], meta["plan_version"], meta["plan_build"])
    assert header == ("tensorrt", "8.6.0", "8.6.0", 12)
    assert meta["refittable"] is True and meta["version_compatible"] is False
    assert meta["io"] == [
        {"name": "x", "mode": "input", "dtype": "float32", "shape": [1, 3, 8, 8], "format": "linear",
         "format_desc": "fake LINEAR FLOAT",
         "profiles": [{"min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}]},
        {"name": "y", "mode": "output", "dtype": "float32", "shape": [1, 10], "format": "linear",
         "format_desc": "fake LINEAR FLOAT"},
    ]
    assert meta["layer_precisions"] is None  # no layer rules
    assert (meta["num_profiles"], meta["layers"], meta["device_memory_bytes"]) == (1, 3, 4096)
    assert meta["inspector"] == {"Layers": ["conv", "JSON"]}
    assert meta["timing_cache"] == {"in_bytes": 5, "out_bytes": len(b"TCa;b"), "rejected": False, "partial_miss": False}
    assert (tmp_path / "cache.out").read_bytes() == b"TCa;b"
    assert meta["device"] == {"name": "NVIDIA H100 80GB HBM3", "sku": "h100-80gb-hbm3", "cc": "sm_90"}
    _, config = trt.last_build
    assert {"FP16", "REFIT"} <= config.flags
    assert trt.plugins_initialised == 1


@pytest.mark.parametrize("cache", [b"garbage", b"BAD bytes"])
def test_a_rejected_timing_cache_is_a_miss(tmp_path, install, cache):
    install(make_fake_trt("8.6"))
    cache_in = tmp_path / "cache.in"
    cache_in.write_bytes(cache)
    model = write_model(tmp_path, [STATIC_X], warnings=["Myelin error ... The timing cache will not be used!"])
    code, result = run_build(tmp_path, model, canonical(), "--timing-cache-in", str(cache_in))
    assert code == 0, result
    assert result["metadata"]["timing_cache"] == {"in_bytes": len(cache), "out_bytes": 2, "rejected": True,
                                                  "partial_miss": True}


def test_parse_errors_are_reported_verbatim(tmp_path, install):
    install(make_fake_trt("8.6"))
    errors = [["Unsupported ONNX data type: UINT16 (4)", 3, "ErrorCode.UNSUPPORTED_NODE"],
              ["second problem", -1, "ErrorCode.INVALID_GRAPH"]]
    model = write_model(tmp_path, [], parse_errors=errors)
    code, result = run_build(tmp_path, model, canonical())
    assert code == 1 and result["error"]["code"] == "parse_error"
    message = result["error"]["message"]
    assert "Unsupported ONNX data type: UINT16 (4) (node 3, code ErrorCode.UNSUPPORTED_NODE)" in message
    assert "second problem (node -1, code ErrorCode.INVALID_GRAPH)" in message


def test_build_errors_collect_the_logged_errors(tmp_path, install):
    install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [STATIC_X], build_errors=["first error", "second error"])
    code, result = run_build(tmp_path, model, canonical())
    assert code == 1
    assert result["error"] == {"code": "build_error", "message": "first error; second error", "hint": None}


def test_version_compatible_without_a_lean_runtime_is_unsupported(tmp_path, install):
    install(make_fake_trt("8.6"))
    model = write_model(tmp_path, [STATIC_X], build_errors=["Unable to load library: libnvinfer_lean.so.8.6.0"])
    code, result = run_build(tmp_path, model, canonical(version_compatible=True))
    assert code == 2
    assert result["error"]["code"] == "unsupported_option"
    assert result["error"]["message"] == ("version_compatible needs TensorRT's lean runtime (libnvinfer_lean); "
                                          "this toolchain (TensorRT 8.6.0) does not ship it")


def test_calibration_cache_is_served_to_an_int8_build(tmp_path, install):
    trt = install(make_fake_trt("8.6"))
    calibration = tmp_path / "calib.cache"
    calibration.write_bytes(b"TRT-8600-EntropyCalibration2\n")
    code, result = run_build(tmp_path, write_model(tmp_path, [STATIC_X]), canonical(precision=["int8"]),
                             "--calibration-cache", str(calibration))
    assert code == 0, result
    _, config = trt.last_build
    calibrator = config.int8_calibrator
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2)
    assert calibrator.read_calibration_cache() == b"TRT-8600-EntropyCalibration2\n"
    assert calibrator.get_batch(["x"]) is None


# ---------------------------------------------------------------------------------------------------------
# merge, probe parsing and small utilities
# ---------------------------------------------------------------------------------------------------------
def test_merge_combines_and_lists_what_tensorrt_ignored(tmp_path, install):
    install(make_fake_trt("8.6"))
    paths = []
    for name, data in [("a", b"TCa"), ("b", b"TCb;c"), ("junk", b"junk"), ("other", b"TCv2x")]:
        (tmp_path / name).write_bytes(data)
        paths += ["--cache", str(tmp_path / name)]
    result_path = tmp_path / "result.json"
    code = cli.main(["merge", *paths, "--out", str(tmp_path / "merged"), "--result", str(result_path)])
    result = json.loads(result_path.read_text())
    assert code == 0, result
    assert (tmp_path / "merged").read_bytes() == b"TCa;b;c"
    assert result == {"ok": True, "size": 7, "inputs": [3, 5, 4, 5],
                      "ignored": [str(tmp_path / "junk"), str(tmp_path / "other")]}


@pytest.mark.parametrize("name", ["NVIDIA H100 80GB HBM3", "NVIDIA H200", "Tesla T4", "NVIDIA A100-SXM4-80GB",
                                  "NVIDIA GeForce RTX 4090", "  NVIDIA L40S  "])
def test_sku_slug_matches_the_registry(name):
    assert common.sku_slug(name) == sku_slug(name)


def test_nvidia_smi_line():
    line = "0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15, 81559, GPU-0b1c-77"
    assert probe.smi_gpu(line) == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "sku": "h100-80gb-hbm3",
                                   "cc": "sm_90", "memory_mib": 81559, "driver": "550.54.15", "uuid": "GPU-0b1c-77"}


def test_latency_summary_of_one_sample():
    assert common.latency_summary([2.0])["p99"] == 2.0


def test_bf16_round_trip():
    np = pytest.importorskip("numpy")
    values = np.array([1.0, -2.5, 3.140625, 1e-3, np.inf, np.nan], dtype=np.float32)
    bits = session.float32_to_bf16_bits(np, values)
    assert bits.dtype == np.uint16
    back = session.bf16_bits_to_float32(np, bits)
    assert back[:3].tolist() == [1.0, -2.5, 3.140625]
    assert abs(back[3] - 1e-3) < 1e-5 and np.isinf(back[4]) and np.isnan(back[5])


def test_version_tuple():
    assert runtime.version_tuple("8.6.0") == (8, 6, 0)
    assert runtime.version_tuple("10.3.0.post12.dev1") == (10, 3, 0)
    assert runtime.version_tuple("10.0.1.6") >= runtime.version_tuple("10.0")
