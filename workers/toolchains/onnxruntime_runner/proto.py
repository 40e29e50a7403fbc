"""Reading an ONNX file's protobuf wire format without the onnx package (absent from toolchains)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def count_onnx_nodes(data: bytes) -> int:
    """Nodes of an ONNX ModelProto's main graph, read off the protobuf wire format (no onnx package here)."""
    count = 0
    for field, value in _proto_fields(data):
        if field == 7 and isinstance(value, memoryview):  # ModelProto.graph
            count = sum(1 for f, v in _proto_fields(value) if f == 1 and isinstance(v, memoryview))  # GraphProto.node
    return count


def _proto_fields(data: bytes | memoryview) -> Iterator[tuple[int, Any]]:
    view, pos = memoryview(data), 0
    while pos < len(view):
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            size, pos = _varint(view, pos)
            value, pos = view[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, value


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
