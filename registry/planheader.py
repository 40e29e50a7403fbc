"""Read the TensorRT version out of a serialized plan without deserializing it.

Measured on TensorRT 8.6.0 (docs/design.md): a plan starts with b"ftrt"; bytes 24..27 are the major, minor,
patch and build numbers of the TensorRT that built it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.errors import NotAPlan

MAGIC = b"ftrt"
HEADER_BYTES = 28


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
        raise NotAPlan(f"not a TensorRT plan: starts with {data[:4]!r}, expected {MAGIC!r}")
    return PlanHeader(*data[24:28])


def read_plan_file_header(path: Path) -> PlanHeader:
    with open(path, "rb") as f:
        return read_plan_header(f.read(HEADER_BYTES))
