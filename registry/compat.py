"""Which engine serves which runtime: the compatibility rules of docs/design.md.

Pure: no I/O, no SQL, no pydantic. The API service ranks the engines it stores with it, and the SDK
explains a choice (or a refusal) with the same code.

docs/design.md, "Which engine serves which runtime": candidates are ranked and the first class that has one
wins, and the answer says which:

1. exact                   same toolchain version, same SKU (hardware compatibility `none`); for
                           onnxruntime: same version, same CPU device (`x86_64-avx2`).
   any_isa                 onnxruntime: same version, same CPU architecture, an engine saved at a level
                           ONNX Runtime calls hardware-independent (disable, basic, extended: its
                           hardware_compatibility is `any_isa`); layout and all may hold NCHWc kernels
                           for the ISA they ran on, so those stay pinned to it.
2. same_compute_capability same version, same `sm_XX`, plan built with `same_compute_capability`; or a
                           `none` plan from another SKU of that cc, only when the client allows
                           cross-SKU loading (a warning: TensorRT says it may be slower or fail to load).
3. ampere_plus             same version, plan built with `ampere_plus`, runtime cc >= sm_80.
4. version_compatible      plan built `version_compatible` by TensorRT >= 8.6, runtime version >= builder
                           version, the pair allowed (same major, or a documented next-major pair),
                           device rules as in 1-3.

Lean runtime (docs/design.md: "a lean/dispatch runtime needs `engine_host_code_allowed`"): a lean or dispatch
runtime deserializes only version-compatible plans, and loading one that embeds its lean runtime runs
that host code, so the client must allow it. A plan built with `exclude_lean_runtime` carries no lean
runtime: only a runtime of the builder's own version loads it.

Ties within a class: wider optimization profiles first (`Candidate.width`, the engine's profile width: log2
of how many input shapes its profiles hold, registry.services.shapes), then newer build, then lower measured
latency (unmeasured last), then id.
Every rejection carries a one-line reason; `no_match` turns them into the 404 body.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Iterable, NamedTuple

from registry.errors import InvalidInput, NoCompatibleEngine
from registry.targets import cc_slug, cc_tuple

TENSORRT = "tensorrt"
ONNXRUNTIME = "onnxruntime"
ANY_ISA = "any_isa"  # an ONNX Runtime engine's hardware_compatibility when its level is hardware-independent
MIN_VERSION_COMPATIBLE = (8, 6, 0)
AMPERE_CC = (8, 0)
# Cross-major pairs (builder major, runtime major) that NVIDIA documents for version-compatible plans.
# Same major is always allowed. TensorRT 10 docs: "engines built with TensorRT 8 work with TensorRT 9
# and TensorRT 10 runtimes"; TensorRT 11 docs: "engines built with TensorRT 10 work with TensorRT 11".
ALLOWED_CROSS_MAJOR = frozenset({(8, 9), (8, 10), (10, 11)})

Version = tuple[int, int, int]


class MatchClass(str, Enum):
    """Match classes, best first (the declaration order is the rank)."""

    EXACT = "exact"
    ANY_ISA = "any_isa"  # ONNX Runtime: same version and CPU architecture, a hardware-independent level
    SAME_COMPUTE_CAPABILITY = "same_compute_capability"
    AMPERE_PLUS = "ampere_plus"
    VERSION_COMPATIBLE = "version_compatible"

    @property
    def rank(self) -> int:
        return list(MatchClass).index(self)

    def __str__(self) -> str:
        return self.value


RUNTIME_FLAGS = ("allow_cross_sku", "lean_runtime", "engine_host_code_allowed")


@dataclass(frozen=True)
class Runtime:
    """What a client has: toolchain kind + exact version, and the device it runs on (a GPU's SKU slug
    and/or compute capability, or a CPU device). Parsed or detected by `registry.runtime`."""

    toolchain: str
    version: str
    sku: str | None = None  # GPU SKU slug, "h100-80gb-hbm3"
    cc: str | None = None  # "sm_90" (or "9.0")
    cpu: str | None = None  # CPU device, "x86_64-avx2"
    allow_cross_sku: bool = False
    lean_runtime: bool = False  # the client runs a lean / dispatch runtime
    engine_host_code_allowed: bool = False

    @property
    def device(self) -> str | None:
        """The most specific device selector: SKU, else compute capability, else CPU."""
        return self.sku or self.cc or self.cpu

    def describe(self) -> str:
        if self.toolchain != TENSORRT:
            return f"{self.toolchain} {self.version} / {self.cpu or 'unknown CPU'}"
        device = " ".join(filter(None, [self.sku, f"({self.cc})" if self.sku and self.cc else self.cc]))
        lean = " (lean runtime)" if self.lean_runtime else ""
        return f"{self.toolchain} {self.version}{lean} / {device or 'unknown GPU'}"

    def target(self) -> str:
        """The build target that would produce an exact match for this runtime."""
        device = self.cpu if self.toolchain != TENSORRT else (self.sku or self.cc)
        return f"{self.toolchain}=={self.version}" + (f"@{device}" if device else "")

    def to_query(self) -> dict[str, str]:
        """Query parameters for GET /v1/engines/resolve (without `model` and `spec_family`)."""
        query = {"toolchain": self.toolchain, "version": self.version}
        query.update({k: v for k in ("sku", "cc", "cpu") if (v := getattr(self, k))})
        query.update({k: "true" if getattr(self, k) else "false" for k in RUNTIME_FLAGS})
        return query

    def __str__(self) -> str:
        """The runtime string `registry.runtime.parse_runtime` reads back."""
        devices = "/".join(d for d in (self.sku, self.cc, self.cpu) if d)
        text = f"{self.toolchain}=={self.version}" + (f"@{devices}" if devices else "")
        return text + "".join(f",{k}" for k in RUNTIME_FLAGS if getattr(self, k))


@dataclass(frozen=True)
class Candidate:
    """One stored engine, as far as compatibility is concerned."""

    engine_id: str
    toolchain: str
    version: str  # the builder's version (read from the plan)
    device: str  # the build's device: SKU slug, sm_XX, ampere_plus or CPU device
    sku: str | None = None  # the SKU it was built on
    cc: str | None = None  # the cc it was built on, "sm_90"
    hardware_compatibility: str = "none"  # none | ampere_plus | same_compute_capability
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    created_at: float | datetime | None = None
    latency_ms: float | None = None
    width: float = 0.0  # profile width: log2 of how many input shapes its profiles hold (the widest wins a tie)


class Match(NamedTuple):
    match_class: MatchClass
    reason: str
    warning: str | None = None


class Rejection(NamedTuple):
    engine_id: str  # the engine refused (or one of `count` engines refused for the same reason)
    why: str
    count: int = 1


@dataclass(frozen=True)
class Choice:
    """A candidate that loads on the runtime, with its match class (the API answers it as a Resolution)."""

    candidate: Candidate
    match_class: MatchClass
    reason: str
    warning: str | None = None


def no_match(
    rejections: list[Rejection] | list[tuple[str, str]],
    *,
    runtime: Runtime | None = None,
    model: str | None = None,
    suggest: str | None = None,
) -> NoCompatibleEngine:
    """The error for "no candidate loads on the runtime": what exists, why not, and what to build."""
    found = [Rejection(*r) for r in rejections]
    suggest = suggest or (runtime.target() if runtime else None)
    what = f"model {model}" if model else "this model"
    where = f" loads on {runtime.describe()}" if runtime else " loads on this runtime"
    if found:
        listed = "; ".join(f"{r.engine_id}{f' and {r.count - 1} more like it' if r.count > 1 else ''}: {r.why}"
                           for r in found)
        total = sum(r.count for r in found)
        text = f"no engine of {what}{where}; {total} exist{'s' if total == 1 else ''}: {listed}"
    else:
        text = f"no engine of {what}{where}; none has been built"
    details: dict = {"rejections": [r._asdict() for r in found]}
    if runtime is not None:
        details["runtime"] = runtime.describe()
    if suggest:
        details["suggested_target"] = suggest
    return NoCompatibleEngine(text + (f"; build one with target {suggest}" if suggest else ""), details=details)


# ---------------------------------------------------------------------------------------- public API


def classify(candidate: Candidate, runtime: Runtime) -> Match | None:
    """The match class of `candidate` on `runtime`, or None if it cannot load there."""
    verdict = assess(candidate, runtime)
    return verdict if isinstance(verdict, Match) else None


def assess(candidate: Candidate, runtime: Runtime) -> Match | Rejection:
    """Like `classify`, but a refusal comes back as a Rejection with its one-line reason."""
    verdict = _judge(candidate, runtime)
    return verdict if isinstance(verdict, Match) else Rejection(candidate.engine_id, verdict)


def rank(candidates: Iterable[Candidate], runtime: Runtime) -> list[Choice]:
    """Every candidate that loads on `runtime`, best first."""
    matches = []
    for c in candidates:
        m = classify(c, runtime)
        if m is not None:
            matches.append(Choice(c, m.match_class, m.reason, m.warning))
    return sorted(matches, key=_sort_key)


def resolve(
    candidates: Iterable[Candidate], runtime: Runtime, *, model: str | None = None, suggest: str | None = None
) -> Choice:
    """The best candidate for `runtime`; NoCompatibleEngine (with every rejection's reason) when none loads."""
    candidates = list(candidates)
    ranked = rank(candidates, runtime)
    if ranked:
        return ranked[0]
    rejections = [v for v in (assess(c, runtime) for c in candidates) if isinstance(v, Rejection)]
    raise no_match(rejections, runtime=runtime, model=model, suggest=suggest)


@dataclass(frozen=True)
class Narrowing:
    """What an engine must have to stand any chance on a runtime, as plain values a database can filter on:
    a superset of what `classify` accepts (the rules still decide). `registry.services.resolution` turns it
    into SQL; `admits` is the same test in Python."""

    toolchain: str
    version_prefix: str  # "8.6": every version text that parses to 8.6.x starts with it
    any_version_compatible: bool  # version-compatible plans of other versions may load
    devices: frozenset[str]  # device, SKU or cc values that may match (empty: any device)
    ampere_plus: bool  # ampere_plus plans may load (any device value): the runtime's cc is >= sm_80
    version_compatible_only: bool = False  # a lean runtime loads version-compatible plans only
    any_isa_prefix: str | None = None  # ONNX Runtime: "x86_64-": any_isa engines of this CPU architecture load

    def admits(self, c: Candidate) -> bool:
        if c.toolchain != self.toolchain or (self.version_compatible_only and not c.version_compatible):
            return False
        if not c.version.startswith(self.version_prefix) and not (self.any_version_compatible and c.version_compatible):
            return False
        if not self.devices or (self.ampere_plus and c.hardware_compatibility == "ampere_plus"):
            return True
        if self.any_isa_prefix and c.hardware_compatibility == ANY_ISA and c.device.startswith(self.any_isa_prefix):
            return True
        return bool(self.devices & {c.device, c.sku, _cc(c.cc) if c.cc else None})


def narrowing(runtime: Runtime) -> Narrowing:
    """The filter every engine that loads on `runtime` passes (see `Narrowing`)."""
    major, minor, _ = parse_version(runtime.version)
    if runtime.toolchain != TENSORRT:
        devices = frozenset({runtime.cpu}) if runtime.cpu else frozenset()
        prefix = f"{cpu_arch_of(runtime.cpu)}-" if runtime.cpu else None
        return Narrowing(runtime.toolchain, f"{major}.{minor}", False, devices, False, any_isa_prefix=prefix)
    cc = _cc(runtime.cc)
    dotted = "{}.{}".format(*cc_tuple(cc)) if cc else None  # a cc recorded as "9.0" matches too
    devices = frozenset(d for d in (runtime.sku, cc, dotted) if d)
    ampere = cc is not None and cc_tuple(cc) >= AMPERE_CC
    return Narrowing(TENSORRT, f"{major}.{minor}", True, devices, ampere, runtime.lean_runtime)


@functools.lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """'8.6' -> (8, 6, 0); '8.6.0.12' -> (8, 6, 0): padded and cut to major.minor.patch."""
    parts = []
    for piece in str(text).strip().split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits[0]))
        if digits[0] != piece:  # "1.post1": stop after the numeric prefix
            break
    if not parts:
        raise InvalidInput(f"version {text!r} should look like 8.6.0")
    return tuple((parts + [0, 0])[:3])  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ the rules


def _judge(c: Candidate, rt: Runtime) -> Match | str:
    if c.toolchain != rt.toolchain:
        return f"built by {c.toolchain}, the runtime is {rt.toolchain}"
    if rt.toolchain == TENSORRT:
        return _judge_tensorrt(c, rt)
    return _judge_cpu(c, rt)


def _judge_cpu(c: Candidate, rt: Runtime) -> Match | str:
    if parse_version(c.version) != parse_version(rt.version):
        return f"built by {c.toolchain} {c.version}, the runtime is {rt.version}"
    if c.device == rt.cpu:
        return Match(MatchClass.EXACT, f"{c.toolchain} {c.version} model optimized for {c.device}")
    if c.hardware_compatibility == ANY_ISA and rt.cpu and cpu_arch_of(c.device) == cpu_arch_of(rt.cpu):
        return Match(MatchClass.ANY_ISA, f"{c.toolchain} {c.version} model optimized on {c.device} at a "
                                         f"hardware-independent level: it loads on any {cpu_arch_of(rt.cpu)} CPU")
    why = " at a hardware-specific level (layout or all)" if c.hardware_compatibility != ANY_ISA else ""
    return f"optimized for {c.device}{why}, the runtime's CPU is {rt.cpu or 'unknown'}"


def cpu_arch_of(device: str) -> str:
    """'x86_64-avx512' -> 'x86_64' (the CPU device is ARCH-ISA)."""
    return device.rsplit("-", 1)[0]


def _judge_tensorrt(c: Candidate, rt: Runtime) -> Match | str:
    device = _device_match(c, rt)
    if isinstance(device, str):
        return device
    lean_problem = _lean_problem(c, rt)
    if lean_problem:
        return lean_problem
    if parse_version(c.version) == parse_version(rt.version):
        return device
    version_problem = _version_problem(c, rt)
    if version_problem:
        return version_problem
    reason = f"version-compatible plan built by tensorrt {c.version} loads on {rt.version}; {device.reason}"
    return Match(MatchClass.VERSION_COMPATIBLE, reason, device.warning)


def _device_match(c: Candidate, rt: Runtime) -> Match | str:
    """Classes 1-3 on the device alone (the version is judged apart)."""
    level = c.hardware_compatibility
    if level == "ampere_plus":
        return _ampere_plus(c, rt)
    if level == "same_compute_capability":
        return _same_cc(c, rt)
    if level != "none":
        return f"unknown hardware compatibility {level!r}"
    built_on = _built_sku(c)
    if built_on and built_on == rt.sku:
        return Match(MatchClass.EXACT, f"built on {built_on}, the runtime's SKU")
    return _cross_sku(c, rt, built_on)


def _same_cc(c: Candidate, rt: Runtime) -> Match | str:
    built_cc = _built_cc(c)
    same_sku = bool(rt.sku) and rt.sku == _built_sku(c)
    if built_cc is None or (_cc(rt.cc) != built_cc and not (rt.cc is None and same_sku)):
        return f"same_compute_capability plan for {built_cc or 'an unknown cc'}, the runtime is {rt.cc or 'unknown'}"
    return Match(MatchClass.SAME_COMPUTE_CAPABILITY, f"same_compute_capability plan for {built_cc}")


def _cross_sku(c: Candidate, rt: Runtime, built_on: str | None) -> Match | str:
    built_cc = _built_cc(c)
    on = f"built on {built_on or 'an unknown SKU'} ({built_cc or 'unknown cc'})"
    if built_cc is None or _cc(rt.cc) != built_cc:
        return f"{on} with hardware compatibility none, the runtime is {rt.sku or 'unknown'} ({rt.cc or 'unknown cc'})"
    if not rt.allow_cross_sku:
        return f"{on} with hardware compatibility none, not {rt.sku or 'this SKU'}; allow cross-SKU loading to use it"
    warning = (
        f"plan built on {built_on or 'another SKU'} loads on {rt.sku or 'this SKU'} only because cross-SKU loading "
        "is allowed; TensorRT warns it may be slower or fail to load"
    )
    return Match(MatchClass.SAME_COMPUTE_CAPABILITY, f"{on}, cross-SKU loading allowed", warning)


def _ampere_plus(c: Candidate, rt: Runtime) -> Match | str:
    runtime_cc = _cc(rt.cc)
    if runtime_cc is None:
        return "ampere_plus plan needs cc >= sm_80, the runtime's cc is unknown"
    if cc_tuple(runtime_cc) < AMPERE_CC:
        return f"ampere_plus plan needs cc >= sm_80, the runtime is {runtime_cc}"
    return Match(MatchClass.AMPERE_PLUS, f"ampere_plus plan, the runtime is {runtime_cc}")


def _lean_problem(c: Candidate, rt: Runtime) -> str | None:
    if not rt.lean_runtime:
        return None
    if not c.version_compatible:
        return "a lean/dispatch runtime loads only version-compatible plans"
    if not c.exclude_lean_runtime and not rt.engine_host_code_allowed:
        return "plan embeds its lean runtime (host code); a lean/dispatch runtime needs engine_host_code_allowed"
    return None


def _version_problem(c: Candidate, rt: Runtime) -> str | None:
    built, running = parse_version(c.version), parse_version(rt.version)
    if running < built:
        return f"runtime {rt.version} is older than the builder {c.version}: a plan never loads on an older TensorRT"
    if not c.version_compatible:
        return f"runtime {rt.version} cannot load a plan built by {c.version} without version_compatible"
    if built < MIN_VERSION_COMPATIBLE:
        return f"version compatibility needs a builder >= 8.6, this plan was built by {c.version}"
    if built[0] != running[0] and (built[0], running[0]) not in ALLOWED_CROSS_MAJOR:
        return f"version-compatible plans of TensorRT {built[0]} do not load on TensorRT {running[0]}"
    if c.exclude_lean_runtime:
        return f"plan excludes its lean runtime: only a tensorrt {c.version} runtime loads it"
    return None


# ------------------------------------------------------------------------------------------- helpers


def _built_sku(c: Candidate) -> str | None:
    if c.sku:
        return c.sku
    return c.device if c.hardware_compatibility == "none" else None


def _built_cc(c: Candidate) -> str | None:
    if c.cc:
        return _cc(c.cc)
    return c.device if c.device.startswith("sm_") else None


@functools.lru_cache(maxsize=1024)
def _cc(cc: str | None) -> str | None:
    return cc_slug(cc) if cc else None


def _timestamp(value: float | datetime | None) -> float:
    if value is None:
        return float("-inf")
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _sort_key(r: Choice) -> tuple:
    latency = r.candidate.latency_ms
    return (
        r.match_class.rank,
        -r.candidate.width,
        -_timestamp(r.candidate.created_at),
        latency is None,
        latency if latency is not None else 0.0,
        r.candidate.engine_id,
    )
