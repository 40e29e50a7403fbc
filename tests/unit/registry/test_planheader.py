"""The plan header reader, on the header bytes docs/design.md describes: a plan starts with b"ftrt" and bytes
24..27 are major, minor, patch and build of the TensorRT that built it (8.6.0.12 on the measured H100)."""

from __future__ import annotations

import pytest

from registry.errors import InvalidInput, NotAPlan
from registry.planheader import HEADER_BYTES, MAGIC, PlanHeader, read_plan_file_header, read_plan_header


def header(major: int, minor: int, patch: int, build: int, middle: bytes = bytes(20), tail: bytes = b"") -> bytes:
    return b"ftrt" + middle + bytes([major, minor, patch, build]) + tail


def test_constants():
    assert MAGIC == b"ftrt"
    assert HEADER_BYTES == 28


@pytest.mark.parametrize(("data", "version", "full"), [
    (header(8, 6, 0, 12), "8.6.0", "8.6.0.12"),
    (header(8, 6, 1, 6, tail=b"\x00" * 1000), "8.6.1", "8.6.1.6"),
    (header(10, 3, 0, 26, middle=bytes(range(20))), "10.3.0", "10.3.0.26"),
    (header(10, 0, 1, 6, middle=b"\xff" * 20), "10.0.1", "10.0.1.6"),
])
def test_version_from_bytes_24_to_27(data, version, full):
    h = read_plan_header(data)
    assert h.version == version
    assert h.full_version == full
    assert (h.major, h.minor, h.patch, h.build) == tuple(data[24:28])


def test_header_equality():
    assert read_plan_header(header(8, 6, 0, 12)) == PlanHeader(8, 6, 0, 12)


@pytest.mark.parametrize("size", [0, 4, 24, 27])
def test_too_short(size):
    data = header(8, 6, 0, 12)[:size]
    with pytest.raises(NotAPlan, match=f"{size} bytes is too short for a TensorRT plan header \\(28 needed\\)"):
        read_plan_header(data)


@pytest.mark.parametrize("start", [b"ORTM", b"FTRT", b"\x08\x07\x12\x00", b"PK\x03\x04"])
def test_wrong_magic(start):
    data = start + bytes(20) + bytes([8, 6, 0, 12])
    with pytest.raises(NotAPlan, match="not a TensorRT plan of the 8.6 header layout: starts with") as info:
        read_plan_header(data)
    assert repr(start) in str(info.value) and "b'ftrt'" in str(info.value)


def test_the_8_5_layout_is_an_unknown_layout_with_its_reason():
    """TensorRT 8.5.3.1 plans start with ftrt but read 2.128.1.0 at bytes 24..27 (measured on an H100)."""
    with pytest.raises(NotAPlan, match=r"unknown plan header layout: bytes 24..27 read 2.128.1.0, not a TensorRT "
                                       r"version \(TensorRT before 8.6 writes another layout\)"):
        read_plan_header(header(2, 128, 1, 0))


def test_not_a_plan_is_invalid_input():
    assert issubclass(NotAPlan, InvalidInput) and NotAPlan.code == "not_a_plan"


def test_read_from_file_reads_only_the_header(tmp_path):
    path = tmp_path / "engine.plan"
    path.write_bytes(header(8, 6, 0, 12, tail=b"\x01" * 100_000))
    assert read_plan_file_header(path).full_version == "8.6.0.12"
    short = tmp_path / "short.plan"
    short.write_bytes(b"ftrt")
    with pytest.raises(NotAPlan, match="too short"):
        read_plan_file_header(short)
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x08\x12\x0ctrtfarm-tests" + bytes(40))
    with pytest.raises(NotAPlan, match="not a TensorRT plan"):
        read_plan_file_header(onnx_file)



def test_a_plan_is_checked_against_the_runtime_before_it_is_handed_out(tmp_path):
    from registry.errors import PlanMismatch
    from registry.planheader import check_loadable

    plan = tmp_path / "e.plan"
    plan.write_bytes(header(8, 6, 0, 12, tail=b"\x00" * 10))
    check_loadable(plan, "tensorrt", False, "8.6.0")  # same version
    check_loadable(plan, "tensorrt", False, "8.6.0.12")
    check_loadable(plan, "tensorrt", True, "8.6.1")  # version-compatible: the compatibility rules decided
    check_loadable(plan, "onnxruntime", False, "1.23.2")  # not a plan: nothing to check
    with pytest.raises(PlanMismatch, match="header says TensorRT 8.6.0.12 built it; this runtime is 8.5.3.1"):
        check_loadable(plan, "tensorrt", False, "8.5.3.1")
    old = tmp_path / "old.plan"
    old.write_bytes(header(2, 128, 1, 0))  # 8.5's layout: no version to compare
    check_loadable(old, "tensorrt", False, "8.5.3.1")
