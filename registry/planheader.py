"""Read the TensorRT version out of a serialized plan without deserializing it.

Measured on TensorRT 8.6.0 (docs/design.md): a plan starts with b"ftrt"; bytes 24..27 are the major, minor,
patch and build numbers of the TensorRT that built it. TensorRT 8.5.3.1 writes another layout (bytes 24..27
read 2.128.1.0): that is NotAPlan with the reason, and the caller falls back on the builder's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.errors import NotAPlan, PlanMismatch

MAGIC = b"ftrt"
HEADER_BYTES = 28
MIN_MAJOR, MAX_MAJOR = 8, 30  # plausible TensorRT major versions at byte 24


@dataclass(frozen=True)
class PlanHeader:
    major: int
    minor: int
    patch: int
    build: int

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def full_version(self) -> str:
        return f"{self.version}.{self.build}"


def read_plan_header(data: bytes) -> PlanHeader:
    if len(data) < HEADER_BYTES:
        raise NotAPlan(f"{len(data)} bytes is too short for a TensorRT plan header ({HEADER_BYTES} needed)")
    if data[:4] != MAGIC:
        raise NotAPlan(f"not a TensorRT plan of the 8.6 header layout: starts with {data[:4]!r}, expected {MAGIC!r}")
    header = PlanHeader(*data[24:28])
    if not MIN_MAJOR <= header.major <= MAX_MAJOR:  # 8.5.3.1 plans read 2.128.1.0 here: another layout
        raise NotAPlan(f"unknown plan header layout: bytes 24..27 read {header.full_version}, not a TensorRT "
                       "version (TensorRT before 8.6 writes another layout)")
    return header


def read_plan_file_header(path: Path) -> PlanHeader:
    with open(path, "rb") as f:
        return read_plan_header(f.read(HEADER_BYTES))


def check_loadable(path: Path, toolchain: str, version_compatible: bool, runtime_version: str) -> None:
    """PlanMismatch when the plan at `path` says, in its own header, that another TensorRT version built it and
    it is not version-compatible. Plans of another header layout (8.5) carry no version: nothing to check."""
    if toolchain != "tensorrt" or version_compatible:
        return
    try:
        header = read_plan_file_header(path)
    except NotAPlan:
        return
    wanted = ".".join(runtime_version.split(".")[:3])
    if header.version != wanted:
        raise PlanMismatch(f"{path.name}: the plan's header says TensorRT {header.full_version} built it; this "
                           f"runtime is {runtime_version} and the plan is not version-compatible. The registry's "
                           "record disagrees with the bytes: nothing is handed out; report it")
