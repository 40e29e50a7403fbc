"""trtexec's build flags as a build spec: `trtfarm submit MODEL --trtexec "--fp16 --minShapes=..."`.

Pure: `spec_from_trtexec(text, model_io=..., version=...)` parses the flags (shlex, then trtexec's own value
syntax, read from samples/common/sampleOptions.cpp of TensorRT 8.6 and 10.x) and returns the spec fields they
set, notes for the user, and the calibration cache `--calib` names. Every flag is either mapped onto the spec,
ignored with a note (`--timingCacheFile`: the farm has its own cache), or refused by name with what to do
instead; an unknown flag is refused by name. trtexec itself takes only `--flag=value`; `--flag value` is
accepted too. The mapping table is in README.md ("trtexec flags").

Two things need more than the text: `--inputIOFormats`/`--outputIOFormats` (one format per input in the
network's order, or one for all) and wildcard shape names need the model's input and output names
(`model_io`, called at most once and only then); `--tacticSources` adds to or removes from TensorRT's default
tactic sources, which differ by version (`version`, from the target), unless it names all five.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any

from registry.errors import InvalidSpec

ModelIO = Callable[[], tuple[Sequence[str], Sequence[str]]]  # () -> (input names, output names) in model order

PRECISION_FLAGS = {"--fp16": "fp16", "--bf16": "bf16", "--int8": "int8", "--fp8": "fp8", "--int4": "int4"}
# flags without a value that set spec fields: flag -> ((field, value), ...)
SWITCHES: dict[str, tuple[tuple[str, Any], ...]] = {
    "--noTF32": (("tf32", False),),
    "--stronglyTyped": (("strongly_typed", True),),
    "--refit": (("refit", "refit"),),
    "--stripWeights": (("strip_weights", True),),
    "--weightless": (("strip_weights", True),),  # trtexec 10: a deprecated --stripWeights
    "--stripAllWeights": (("refit", "refit"), ("strip_weights", True)),
    "--versionCompatible": (("version_compatible", True),),
    "--vc": (("version_compatible", True),),
    "--excludeLeanRuntime": (("exclude_lean_runtime", True),),
    "--allowGPUFallback": (("gpu_fallback", True),),
    "--allowWeightStreaming": (("weight_streaming", True),),
    "--skipInference": (("bench.enabled", False),),
    "--buildOnly": (("bench.enabled", False),),  # trtexec 8.x's name of --skipInference
}
IGNORED = {
    "--timingCacheFile": "ignored: the farm keeps its own timing cache (shared per TensorRT version and device, "
                         "merged after every build)",
    "--explicitBatch": "ignored: every network the farm builds is explicit-batch",
    "--verbose": "ignored: the build's log is `trtfarm log BUILD_ID`",
}
SHAPE_FLAGS = {"--minShapes": "min", "--optShapes": "opt", "--maxShapes": "max"}
VALUE_FLAGS = (*SHAPE_FLAGS, "--profile", "--memPoolSize", "--workspace", "--builderOptimizationLevel",
               "--hardwareCompatibilityLevel", "--tacticSources", "--inputIOFormats", "--outputIOFormats",
               "--layerPrecisions", "--layerOutputTypes", "--precisionConstraints", "--calib", "--profilingVerbosity",
               "--useDLACore", "--iterations", "--timingCacheFile")
FLAG_FLAGS = (*PRECISION_FLAGS, "--best", *SWITCHES, "--explicitBatch", "--verbose")

RUN_TIME = ("a run-time option of trtexec's inference run; the farm's benchmark has no such setting (it takes "
            "--bench-iterations, --bench-seconds, --no-bench)")
NO_SETTING = "a build option the farm's spec has no setting for"
_CALIB_SHAPES = "the farm calibrates at profile 0's opt shapes"
_PLUGINS = "plugin libraries go with `trtfarm submit --plugin FILE`"
REFUSED: dict[str, str] = {
    "--onnx": "the model is submit's MODEL argument",
    "--saveEngine": "the farm stores the engine: `trtfarm fetch MODEL -o FILE` copies it out",
    "--loadEngine": "the farm builds engines; `trtfarm inspect ENGINE_ID` shows one",
    "--warmUp": "trtexec warms up for N milliseconds, the farm for a number of runs: --spec "
                "'{\"bench\": {\"warmup\": N}}'",
    "--duration": "trtexec measures for at least N seconds; the farm's limit is an upper bound: --bench-seconds",
    "--device": "the farm picks the GPU: --target",
    "--dumpLayerInfo": "`trtfarm inspect ENGINE_ID` prints the layer table (build with "
                       "--profilingVerbosity=detailed)",
    "--exportLayerInfo": "`trtfarm inspect ENGINE_ID --json` has the layer table (build with "
                         "--profilingVerbosity=detailed)",
    "--noBuilderCache": "the farm always uses its own timing cache",
    "--errorOnTimingCacheMiss": "the farm always uses its own timing cache",
    "--help": "not a build flag", "-h": "not a build flag",
    **dict.fromkeys(("--plugins", "--staticPlugins", "--dynamicPlugins", "--setPluginsToSerialize"), _PLUGINS),
    **dict.fromkeys(("--calibProfile", "--minShapesCalib", "--optShapesCalib", "--maxShapesCalib"), _CALIB_SHAPES),
    **dict.fromkeys((
        "--useCudaGraph", "--noCudaGraph", "--noDataTransfers", "--includeDataTransfers", "--useSpinWait",
        "--noSpinWait", "--threads", "--streams", "--infStreams", "--exposeDMA", "--separateProfileRun", "--shapes",
        "--loadInputs", "--dumpProfile", "--exportProfile", "--exportTimes", "--exportOutput", "--dumpOutput",
        "--dumpRawBindingsToFile", "--dumpRefit", "--dumpOptimizationProfile", "--avgRuns", "--percentile",
        "--useManagedMemory", "--sleepTime", "--idleTime", "--timeDeserialize", "--timeRefit", "--useProfile",
        "--persistentCacheRatio", "--allocationStrategy", "--saveDebugTensors", "--saveAllDebugTensors",
        "--weightStreamingBudget", "--refPair", "--loadRefOutputs", "--useRuntime", "--leanDLLPath",
        "--asyncFileReader", "--getPlanVersionOnly", "--refitFromOnnx", "--batch"), RUN_TIME),
    **dict.fromkeys((
        "--sparsity", "--maxAuxStreams", "--maxTactics", "--avgTiming", "--preview", "--tempdir",
        "--tempfileControls", "--layerDeviceTypes", "--decomposableAttentions", "--heuristic", "--safe",
        "--consistency", "--restricted", "--directIO", "--runtimePlatform", "--markDebug",
        "--markUnfusedTensorsAsDebugTensors", "--cpuOnly", "--saveAllEngines", "--noCompilationCache",
        "--tilingOptimizationLevel", "--l2LimitForTiling", "--pluginInstanceNorm", "--pi",
        "--distributiveIndependence", "--dumpKernelText", "--buildDLAStandalone", "--monitorMemory",
        "--uint8AsymmetricQuantizationDLA", "--reportCapabilityDLA", "--adjustForDLA", "--enablePluginOverride",
        "--ignoreParsedPluginLibs", "--remoteAutoTuningConfig", "--setBuildRoute", "--maxBatch", "--minTiming"),
        NO_SETTING),
}

# trtexec's names -> the spec's: data types (nvinfer1::DataType), I/O formats ("chw" is linear), pools, levels
DATA_TYPES = ("fp32", "fp16", "bf16", "fp8", "int8", "int32", "int64", "uint8", "bool")
FORMATS = {"chw": "linear", **{f: f for f in ("chw2", "chw4", "hwc8", "chw16", "chw32", "dhwc8", "cdhw32", "hwc",
                                              "dhwc", "hwc16")}}
DLA_FORMATS = ("dla_linear", "dla_hwc4")
HARDWARE = {"none": "none", "ampere+": "ampere_plus", "samecomputecapability": "same_compute_capability"}
VERBOSITY = {"layer_names_only": "layer_names_only", "detailed": "detailed", "none": "none",
             "default": "layer_names_only", "verbose": "detailed"}  # the last two: trtexec's deprecated names
UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MIB = 1 << 20
TACTICS = {"CUBLAS": "cublas", "CUBLAS_LT": "cublas_lt", "CUBLASLT": "cublas_lt", "CUDNN": "cudnn",
           "EDGE_MASK_CONVOLUTIONS": "edge_mask_convolutions", "JIT_CONVOLUTIONS": "jit_convolutions"}
ALL_TACTICS = frozenset(TACTICS.values())


@dataclass
class TrtexecSpec:
    """What a trtexec command line asks of the build."""

    spec: dict[str, Any] = field(default_factory=dict)  # spec fields (nested: bench)
    notes: list[str] = field(default_factory=list)  # what was ignored, assumed or converted
    calibration: str | None = None  # --calib: a TensorRT calibration cache file to upload
    sources: dict[str, str] = field(default_factory=dict)  # field ("bench.iterations" for nested) -> its flag(s)
    defaults: dict[str, Any] = field(default_factory=dict)  # fields to set only when nothing else sets them
    layer_types: dict[str, dict[str, list[str]]] = field(default_factory=dict, repr=False)  # flag -> {name: types}

    def set(self, name: str, value: Any, flag: str) -> None:
        """Set a spec field ("bench.x" for a nested one) and remember which flag did."""
        head, _, sub = name.partition(".")
        if sub:
            self.spec.setdefault(head, {})[sub] = value
        else:
            self.spec[name] = value
        known = self.sources.get(name)
        self.sources[name] = flag if known in (None, flag) else f"{known} {flag}"


def spec_from_trtexec(text: str, *, model_io: ModelIO | None = None, version: str | None = None) -> TrtexecSpec:
    """The spec fields, notes and calibration cache of trtexec's build flags in `text`. InvalidSpec names every
    flag it cannot take (unknown, refused, malformed) at once. `model_io` gives the model's input and output
    names (for --inputIOFormats/--outputIOFormats and wildcard shape names); `version` the target's TensorRT
    version (for --tacticSources, relative to that version's defaults)."""
    words = _tokens(text)
    names = _ModelNames(model_io)
    found, problems = TrtexecSpec(), []
    _refuse_unknown(words, problems)
    _refuse_repeats(words, problems)
    if problems:
        raise InvalidSpec("--trtexec: " + "; ".join(problems))
    profiles = _profiles(words, names)
    if profiles:
        found.set("profiles", profiles, _flags_used(words, (*SHAPE_FLAGS, "--profile")))
    for flag, value in words:
        try:
            _apply(found, flag, value, names, version)
        except InvalidSpec as exc:
            problems.append(str(exc))
    if problems:
        raise InvalidSpec("--trtexec: " + "; ".join(problems))
    _finish(found)
    return found


# ---------------------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, str | None]]:
    """(flag, value or None) per flag, in order: `--flag=value`, `--flag value` (a flag that takes a value,
    the next word not being a flag), `--flag`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise InvalidSpec(f"--trtexec {text!r}: {exc} (quote it as a shell would)") from None
    found: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word in ("-", "--"):
            raise InvalidSpec(f"--trtexec: {word!r} is not a flag; give trtexec's build flags, e.g. "
                              "--trtexec '--fp16 --minShapes=input:1x3x224x224'")
        flag, eq, value = word.partition("=")
        if not eq and flag not in FLAG_FLAGS and i + 1 < len(words) and not words[i + 1].startswith("--"):
            value, eq, i = words[i + 1], "=", i + 1
        found.append((flag, value if eq else None))
        i += 1
    return found


def _refuse_unknown(words: list[tuple[str, str | None]], problems: list[str]) -> None:
    known = (*VALUE_FLAGS, *FLAG_FLAGS)
    for flag, value in words:
        if flag in REFUSED:
            problems.append(f"{flag} is not supported: {REFUSED[flag]}")
        elif flag not in known:
            close = get_close_matches(flag, [*known, *REFUSED], n=1, cutoff=0.75)
            problems.append(f"unknown trtexec flag {flag}" + (f" (did you mean {close[0]}?)" if close else ""))
        elif flag in FLAG_FLAGS and value is not None:
            problems.append(f"{flag} takes no value (trtexec would ignore {value!r}); give {flag} alone")
        elif flag in VALUE_FLAGS and not value and flag not in SHAPE_FLAGS:
            problems.append(f"{flag} needs a value: {flag}=VALUE")


def _refuse_repeats(words: list[tuple[str, str | None]], problems: list[str]) -> None:
    """A flag twice is an error (trtexec takes one and leaves the other unused), but for flags without a value
    and the shape flags of `--profile` groups (`_profiles` checks those)."""
    seen: set[str] = set()
    grouped = any(flag == "--profile" for flag, _ in words)
    for flag, _ in words:
        if flag in seen and flag in VALUE_FLAGS and not (grouped and flag in (*SHAPE_FLAGS, "--profile")):
            problems.append(f"{flag} is given twice; give it once" + (
                " (several optimization profiles: --profile=0 --minShapes=... --profile=1 ...)"
                if flag in SHAPE_FLAGS else ""))
        seen.add(flag)


def _flags_used(words: list[tuple[str, str | None]], flags: Sequence[str]) -> str:
    return " ".join(dict.fromkeys(f for f, _ in words if f in flags))


# ---------------------------------------------------------------------------------------------------------
# one flag
# ---------------------------------------------------------------------------------------------------------
def _apply(found: TrtexecSpec, flag: str, value: str | None, names: _ModelNames, version: str | None) -> None:
    if flag in PRECISION_FLAGS or flag == "--best":
        added = ["fp16", "int8"] if flag == "--best" else [PRECISION_FLAGS[flag]]
        found.set("precision", sorted({*found.spec.get("precision", []), *added}), flag)
        if flag == "--best":
            found.notes.append("--best: precision fp16 and int8 (trtexec 10 adds bf16 on Ampere and newer GPUs: "
                               "add --bf16 for that)")
    elif flag in SWITCHES:
        for name, setting in SWITCHES[flag]:
            found.set(name, setting, flag)
        if flag in ("--skipInference", "--buildOnly"):
            found.notes.append(f"{flag}: the engine is not benchmarked (its accuracy is still validated)")
    elif flag in IGNORED:
        found.notes.append(f"{flag} {IGNORED[flag]}")
    elif flag == "--calib":
        found.calibration = value
    elif flag not in SHAPE_FLAGS and flag != "--profile":  # those: _profiles
        assert value is not None  # _refuse_unknown: every other flag has one
        _VALUED[flag](found, flag, value, names, version)


def _memory(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    """--memPoolSize=workspace:1024M (units B K M G, default M: MiB, as trtexec 10; 8.x takes MiB only),
    --workspace=N (8.x, MiB). Only the workspace pool has a spec setting."""
    pools = [p for p in value.split(",") if p] if flag == "--memPoolSize" else [f"workspace:{value}"]
    for pool in pools:
        name, sep, size = pool.rpartition(":")
        if not sep:
            raise InvalidSpec(f"{flag}={value}: give POOL:SIZE, e.g. --memPoolSize=workspace:4G")
        if name != "workspace":
            known = "dlaSRAM", "dlaLocalDRAM", "dlaGlobalDRAM", "tacticSharedMem"
            raise InvalidSpec(f"{flag}: pool {name!r} " + (
                "has no spec setting (only workspace does)" if name in known else
                "is unknown (trtexec's pools: workspace, " + ", ".join(known) + ")"))
        unit = size[-1:].upper() if size[-1:].isalpha() else "M"
        try:
            number = float(size[:-1] if size[-1:].isalpha() else size)
        except ValueError:
            number = math.nan
        if unit not in UNITS or not math.isfinite(number) or number <= 0:
            raise InvalidSpec(f"{flag}: workspace size {size!r} should be a positive number with an optional "
                              "unit B, K, M or G (default M: MiB), e.g. workspace:1024 or workspace:4G")
        exact = number * UNITS[unit] / MIB
        mib = max(1, math.ceil(exact))
        if mib != exact:
            found.notes.append(f"{flag}: the workspace is {size} = {exact:g} MiB; the spec counts whole MiB: "
                               f"workspace_mib={mib}")
        found.set("workspace_mib", mib, flag)


def _integer(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    field_name = {"--builderOptimizationLevel": "optimization_level", "--useDLACore": "dla_core",
                  "--iterations": "bench.iterations"}[flag]
    try:
        number = int(value)
    except ValueError:
        raise InvalidSpec(f"{flag}={value}: give a whole number") from None
    if flag == "--iterations":
        found.notes.append(f"{flag}: the farm times {number} runs, stopping early after --bench-seconds (default "
                           "5 s; trtexec instead runs at least that many, for at least --duration)")
    found.set(field_name, number, flag)


def _choice(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    field_name, table, shown = {
        "--hardwareCompatibilityLevel": ("hardware_compatibility", HARDWARE, "none, ampere+, sameComputeCapability"),
        "--precisionConstraints": ("precision_constraints", {v: v for v in ("none", "prefer", "obey")},
                                   "none, prefer, obey"),
        "--profilingVerbosity": ("profiling_verbosity", VERBOSITY, "layer_names_only, detailed, none"),
    }[flag]
    key = value.lower() if flag == "--hardwareCompatibilityLevel" else value
    if key not in table:
        raise InvalidSpec(f"{flag}={value}: give one of {shown}")
    if flag == "--profilingVerbosity" and value in ("default", "verbose"):
        found.notes.append(f"{flag}={value} is trtexec's deprecated name of {table[key]}")
    found.set(field_name, table[key], flag)


# ---------------------------------------------------------------------------------------------------------
# --tacticSources
# ---------------------------------------------------------------------------------------------------------
def default_tactic_sources(version: str | None) -> frozenset[str] | None:
    """TensorRT's default tactic sources (NvInfer.h, TacticSource): before 10.0 every source the version has
    (cuBLAS, cuBLASLt, cuDNN; edge-mask convolutions from 8.4, JIT convolutions from 8.5); 10.0 drops cuBLAS and
    cuDNN; 10.1 and later keep only edge-mask and JIT convolutions. None when the version does not say which
    (none given, "8" or "10" alone, before 8.0)."""
    numbers = [int(p) for p in re.findall(r"\d+", version or "")[:2]]
    major, minor = (numbers + [-1, -1])[:2]
    convolutions = frozenset({"edge_mask_convolutions", "jit_convolutions"})
    if major >= 11 or (major == 10 and minor >= 1):
        return convolutions
    if major == 10 and minor == 0:
        return convolutions | {"cublas_lt"}
    if major == 9 or (major == 8 and minor >= 5):
        return ALL_TACTICS
    if major == 8 and minor >= 0:
        return frozenset({"cublas", "cublas_lt", "cudnn", *(["edge_mask_convolutions"] if minor >= 4 else [])})
    return None


def _tactics(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    """--tacticSources=-CUDNN,+CUBLAS: sources added to (+) or removed from the version's default set."""
    on: set[str] = set()
    off: set[str] = set()
    for item in (t.strip() for t in value.split(",") if t.strip()):
        if item[0] not in "+-":
            raise InvalidSpec(f"{flag}: {item!r} must start with + (enable) or - (disable), e.g. "
                              "--tacticSources=-CUDNN,+CUBLAS")
        source = TACTICS.get(item[1:].upper())
        if source is None:
            raise InvalidSpec(f"{flag}: unknown tactic source {item[1:]!r}; known: CUBLAS, CUBLAS_LT, CUDNN, "
                              "EDGE_MASK_CONVOLUTIONS, JIT_CONVOLUTIONS")
        (on if item[0] == "+" else off).add(source)
    if on & off:
        raise InvalidSpec(f"{flag}: cannot enable and disable {', '.join(sorted(on & off))}")
    base = frozenset() if on | off == ALL_TACTICS else default_tactic_sources(version)
    if base is None:
        raise InvalidSpec(
            f"{flag} adds to or removes from TensorRT's default tactic sources, which differ by version (8.5 to "
            "9.x: all five; 10.0: cublas_lt, edge_mask_convolutions, jit_convolutions; 10.1 and later: "
            "edge_mask_convolutions, jit_convolutions), and the target names no TensorRT version "
            f"({version or 'none'}): name it (--target tensorrt==10.3@...), or give all five sources with + or -")
    chosen = sorted((base | on) - off)
    if on | off != ALL_TACTICS:
        found.notes.append(f"{flag}: relative to TensorRT {version}'s defaults ({', '.join(sorted(base))}): "
                           f"tactic_sources = [{', '.join(chosen)}]")
    found.set("tactic_sources", chosen, flag)


# ---------------------------------------------------------------------------------------------------------
# --inputIOFormats / --outputIOFormats
# ---------------------------------------------------------------------------------------------------------
def _io_formats(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    """type:fmt[+fmt] per input (output) in the network's order, or one for all of them."""
    formats = [_io_format(flag, item) for item in value.split(",") if item]
    tensors = names.inputs(flag) if flag == "--inputIOFormats" else names.outputs(flag)
    what = "inputs" if flag == "--inputIOFormats" else "outputs"
    if len(formats) == 1:
        formats = formats * len(tensors)
    elif len(formats) != len(tensors):
        raise InvalidSpec(f"{flag}: {len(formats)} formats for the model's {len(tensors)} {what} "
                          f"({', '.join(tensors)}); give one per {what[:-1]}, in that order, or one for all")
    io = dict(found.spec.get("io_formats", {}))
    io.update(zip(tensors, formats))
    found.set("io_formats", io, flag)
    found.notes.append(f"{flag}: " + ", ".join(f"{t}={f['dtype']}:{'+'.join(f['formats'])}"
                                               for t, f in zip(tensors, formats)))


def _io_format(flag: str, item: str) -> dict[str, Any]:
    dtype, sep, layouts = item.partition(":")
    if not sep:
        raise InvalidSpec(f"{flag}: {item!r} should be TYPE:FORMAT[+FORMAT], e.g. fp16:chw")
    if dtype not in DATA_TYPES:
        raise InvalidSpec(f"{flag}: type {dtype!r} has no spec name; known: {', '.join(DATA_TYPES)}")
    chosen = []
    for name in layouts.split("+"):
        if name in DLA_FORMATS:
            raise InvalidSpec(f"{flag}: format {name} is for DLA; the farm builds GPU I/O formats only")
        if name not in FORMATS:
            raise InvalidSpec(f"{flag}: unknown format {name!r}; known: {', '.join(FORMATS)}")
        chosen.append(FORMATS[name])
    return {"dtype": dtype, "formats": chosen}


# ---------------------------------------------------------------------------------------------------------
# --layerPrecisions / --layerOutputTypes
# ---------------------------------------------------------------------------------------------------------
def _layer_types(found: TrtexecSpec, flag: str, value: str, names: _ModelNames, version: str | None) -> None:
    """Collect NAME:TYPE items (later ones override earlier ones, as in trtexec); _finish makes the rules."""
    table = found.layer_types.setdefault(flag, {})
    for item in (i for i in value.split(",") if i):
        name, types = split_name(item, flag)
        parsed = types.split("+") if flag == "--layerOutputTypes" else [types]
        wrong = [t for t in parsed if t not in DATA_TYPES]
        if not name or not types or wrong:
            raise InvalidSpec(f"{flag}: {item!r} should be LAYER:TYPE" + ("[+TYPE...]" if len(parsed) > 1 else "")
                              + f" with TYPE one of {', '.join(DATA_TYPES)}")
        if name.count("*") > 1:
            raise InvalidSpec(f"{flag}: layer name {name!r} has more than one '*' (trtexec takes one wildcard)")
        table[name] = parsed


def layer_rules(precisions: dict[str, list[str]], outputs: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The spec's rules (first match wins, fnmatch) for trtexec's maps (an exact name wins over a pattern with a
    '*'): exact names first, each with the types the other map gives it (by name, else by the first pattern
    that matches it), then the patterns. `?` and `[` are literal in trtexec, so they are escaped."""
    names = list(dict.fromkeys([*precisions, *outputs]))
    ordered = [n for n in names if "*" not in n] + [n for n in names if "*" in n]
    rules = []
    for name in ordered:
        rule: dict[str, Any] = {"pattern": re.sub(r"([?\[])", r"[\1]", name)}
        precision = _lookup(precisions, name)
        types = _lookup(outputs, name)
        if precision:
            rule["precision"] = precision[0]
        if types:
            rule["output_types"] = types
        rules.append(rule)
    return rules


def _lookup(table: dict[str, list[str]], name: str) -> list[str] | None:
    if name in table:
        return table[name]
    if "*" in name:
        return None
    return next((v for k, v in table.items() if "*" in k and _one_wildcard(k, name)), None)


def _one_wildcard(pattern: str, name: str) -> bool:
    """trtexec's matchStringWithOneWildcard: prefix*suffix."""
    head, _, tail = pattern.partition("*")
    return len(name) >= len(head) + len(tail) and name.startswith(head) and name.endswith(tail)


def _finish(found: TrtexecSpec) -> None:
    precisions = found.layer_types.get("--layerPrecisions", {})
    outputs = found.layer_types.get("--layerOutputTypes", {})
    if precisions or outputs:
        flags = " ".join(f for f, t in (("--layerPrecisions", precisions), ("--layerOutputTypes", outputs)) if t)
        found.set("layer_precisions", layer_rules(precisions, outputs), flags)
        found.defaults["profiling_verbosity"] = "detailed"
        found.notes.append(f"{flags}: profiling_verbosity=detailed unless set, so that `trtfarm inspect "
                           "ENGINE_ID` shows what each layer got")
    if found.calibration is not None and "int8" not in found.spec.get("precision", []):
        raise InvalidSpec("--trtexec: --calib needs --int8 or --best (trtexec reads the calibration cache only "
                          "for INT8 builds)")


# ---------------------------------------------------------------------------------------------------------
# shapes and profiles
# ---------------------------------------------------------------------------------------------------------
def split_name(item: str, flag: str) -> tuple[str, str]:
    """trtexec's splitNameAndValue: NAME:VALUE split at the last ':', or 'NAME':VALUE with the name quoted
    (a name holding ':')."""
    if "'" in item:
        parts = item.split("'")
        if len(parts) != 3 or not parts[2].startswith(":"):
            raise InvalidSpec(f"{flag}: {item!r}: quote a name as 'NAME':VALUE")
        return parts[0] + parts[1], parts[2][1:]
    name, sep, value = item.rpartition(":")
    if not sep:
        raise InvalidSpec(f"{flag}: {item!r} should be NAME:VALUE")
    return name, value


def _dims(text: str, flag: str, name: str) -> list[int]:
    if text in ("", "scalar"):
        return []
    try:
        dims = [int(d) for d in text.split("x")]
    except ValueError:
        raise InvalidSpec(f"{flag}: {name}:{text}: dimensions are integers joined by 'x', e.g. 1x3x224x224") from None
    if any(d < 0 for d in dims):
        raise InvalidSpec(f"{flag}: {name}:{text}: a build shape has no -1 (give the range with "
                          "--minShapes/--optShapes/--maxShapes)")
    return dims


def _profiles(words: list[tuple[str, str | None]], names: _ModelNames) -> list[dict[str, Any]]:
    """Optimization profiles: --minShapes/--optShapes/--maxShapes (one profile), or `--profile=N` each followed
    by its shape flags (trtexec 10); a missing one of min/opt/max is filled as trtexec does."""
    groups: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    grouped = any(flag == "--profile" for flag, _ in words)
    for flag, value in words:
        if flag == "--profile":
            try:
                index = int(value or "")
            except ValueError:
                raise InvalidSpec(f"--trtexec: --profile={value}: give the profile's index, 0, 1, ...") from None
            if index in groups:
                raise InvalidSpec(f"--trtexec: --profile={index} is given twice")
            current = groups[index] = {}
        elif flag in SHAPE_FLAGS:
            if grouped and current is None:
                raise InvalidSpec(f"--trtexec: {flag} is outside a --profile group; with --profile, each "
                                  "profile's shape flags follow it: --profile=0 --minShapes=... --optShapes=... "
                                  "--maxShapes=... --profile=1 ...")
            target = current if grouped else groups.setdefault(0, {})
            if SHAPE_FLAGS[flag] in target:
                raise InvalidSpec(f"--trtexec: {flag} twice in one profile")
            target[SHAPE_FLAGS[flag]] = value or ""
        else:
            current = None
    if sorted(groups) != list(range(len(groups))):
        raise InvalidSpec(f"--trtexec: profile indices {sorted(groups)}: number them 0, 1, ... without gaps")
    if any(not g for g in groups.values()):
        raise InvalidSpec("--trtexec: a --profile without shape flags after it")
    return [_profile(groups[k], names, k) for k in sorted(groups)]


def _profile(given: dict[str, str], names: _ModelNames, index: int) -> dict[str, Any]:
    parsed = {which: _shape_list(text, f"--{which}Shapes") for which, text in given.items()}
    # trtexec's processShapes: min <- opt or max, opt <- max or min, max <- opt or min
    lo = parsed.get("min") or parsed.get("opt") or parsed.get("max")
    opt = parsed.get("opt") or parsed.get("max") or parsed.get("min")
    hi = parsed.get("max") or parsed.get("opt") or parsed.get("min")
    assert lo is not None and opt is not None and hi is not None
    inputs = list(dict.fromkeys([*lo, *opt, *hi]))
    where = f"profile {index}" if index else "the profile"
    missing = [f"{name} (no --{w}Shapes)" for name in inputs for w, table in parsed.items() if name not in table]
    if missing:
        raise InvalidSpec(f"--trtexec: {where}: give every input in each shape flag; missing: {', '.join(missing)}")
    profile = {name: {"min": lo[name], "opt": opt[name], "max": hi[name]} for name in inputs}
    return _expand_wildcards(profile, names)


def _shape_list(text: str, flag: str) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for item in (i for i in text.split(",") if i):
        name, dims = split_name(item, flag)
        if not name:
            raise InvalidSpec(f"--trtexec: {flag}: {item!r} names no input")
        if name.count("*") > 1:
            raise InvalidSpec(f"--trtexec: {flag}: input name {name!r} has more than one '*'")
        shapes[name] = _dims(dims, flag, name)
    if not shapes:
        raise InvalidSpec(f"--trtexec: {flag} needs NAME:DIMS[,NAME:DIMS...], e.g. {flag}=input:1x3x224x224")
    return shapes


def _expand_wildcards(profile: dict[str, Any], names: _ModelNames) -> dict[str, Any]:
    """Names with a '*' stand for the model's inputs they match that no exact name gives (trtexec's
    findPlausible: the exact name first, else the first pattern that matches)."""
    patterns = [n for n in profile if "*" in n]
    if not patterns:
        return profile
    exact = {n: r for n, r in profile.items() if "*" not in n}
    expanded = dict(exact)
    for name in names.inputs("a shape name with '*'"):
        if name not in exact:
            match = next((p for p in patterns if _one_wildcard(p, name)), None)
            if match is not None:
                expanded[name] = profile[match]
    unused = [p for p in patterns if not any(_one_wildcard(p, n) for n in expanded if n not in exact)]
    if unused:
        raise InvalidSpec(f"--trtexec: shape name(s) {', '.join(unused)} match no other input of the model "
                          f"({', '.join(names.inputs('a shape name'))})")
    return expanded


class _ModelNames:
    """The model's input and output names, asked for once and only when a flag needs them."""

    def __init__(self, model_io: ModelIO | None) -> None:
        self._model_io = model_io
        self._names: tuple[list[str], list[str]] | None = None

    def _get(self, why: str) -> tuple[list[str], list[str]]:
        if self._names is None:
            if self._model_io is None:
                raise InvalidSpec(f"--trtexec: {why} needs the model's input and output names; none were given")
            inputs, outputs = self._model_io()
            self._names = list(inputs), list(outputs)
        return self._names

    def inputs(self, why: str) -> list[str]:
        return self._get(why)[0]

    def outputs(self, why: str) -> list[str]:
        return self._get(why)[1]


_VALUED: dict[str, Callable[[TrtexecSpec, str, str, _ModelNames, str | None], None]] = {
    "--memPoolSize": _memory, "--workspace": _memory,
    "--builderOptimizationLevel": _integer, "--useDLACore": _integer, "--iterations": _integer,
    "--hardwareCompatibilityLevel": _choice, "--precisionConstraints": _choice, "--profilingVerbosity": _choice,
    "--tacticSources": _tactics, "--inputIOFormats": _io_formats, "--outputIOFormats": _io_formats,
    "--layerPrecisions": _layer_types, "--layerOutputTypes": _layer_types,
}
