"""Model intake with bounded memory and time.

1. `scan` walks the raw protobuf through mmap (nothing is loaded) and refuses a model with more graph
   elements (nodes, initializers, inputs, attributes, in subgraphs and functions too) than
   TRTFARM_MAX_MODEL_ELEMENTS: a "protobuf bomb" of millions of empty nodes is refused in a fraction of
   a second, before anything parses it.
2. `inspect` parses and checks the model in a child process (`python -m registry.intake`) under an
   address-space limit (TRTFARM_INTAKE_MEMORY_MIB plus three times the file) and a time limit
   (TRTFARM_INTAKE_TIMEOUT_S): whatever onnx does with it, the API's own memory does not grow.
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import InvalidModel

GRAPH_NODE, FUNCTION_NODE, NODE_ATTRIBUTE = 1, 7, 5  # field numbers in GraphProto, FunctionProto, NodeProto
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25  # in ModelProto
ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS = 6, 11  # in AttributeProto


@dataclass(frozen=True)
class IntakeLimits:
    max_elements: int = 500_000
    memory_mib: int = 1024
    timeout_s: float = 120.0


class _Budget:
    def __init__(self, limit: int) -> None:
        self.left = limit


class _TooMany(Exception):
    pass


def scan(path: Path, max_elements: int, name: str) -> int:
    """The number of graph elements of the model; InvalidModel past `max_elements` or for bytes that are
    not a protobuf."""
    budget = _Budget(max_elements)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            for field, start, end in _fields(buf, 0, len(buf)):
                _take(budget)
                if field == MODEL_GRAPH:
                    _graph(buf, start, end, budget, GRAPH_NODE)
                elif field == MODEL_FUNCTIONS:
                    _graph(buf, start, end, budget, FUNCTION_NODE)
    except _TooMany:
        raise InvalidModel(f"{name} has more than {max_elements:,} graph elements (nodes, initializers, inputs, "
                           "attributes); the farm does not take it (TRTFARM_MAX_MODEL_ELEMENTS)") from None
    except (IndexError, ValueError):
        raise InvalidModel(f"{name} is not an ONNX model (its bytes are no protobuf message); "
                           "upload a .onnx file") from None
    except OSError as exc:  # an empty file cannot be mapped
        raise InvalidModel(f"{name} cannot be read as an ONNX model ({exc.strerror or exc})") from None
    return max_elements - budget.left


def _take(budget: _Budget) -> None:
    budget.left -= 1
    if budget.left < 0:
        raise _TooMany


def _varint(buf: Any, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: Any, pos: int, end: int) -> Any:
    """(field number, start, end) of each length-delimited field; other wire types are skipped."""
    while pos < end:
        key, pos = _varint(buf, pos)
        kind = key & 7
        if kind == 2:
            size, pos = _varint(buf, pos)
            if pos + size > end:
                raise ValueError("field runs past its message")
            yield key >> 3, pos, pos + size
            pos += size
        elif kind == 0:
            _, pos = _varint(buf, pos)
        elif kind in (1, 5):
            pos += 8 if kind == 1 else 4
        else:
            raise ValueError(f"wire type {kind}")


def _graph(buf: Any, pos: int, end: int, budget: _Budget, node_field: int) -> None:
    """Count a graph's (or function's) fields, and its nodes' attributes and subgraphs. The hot loop of a
    bomb (empty nodes) reads one-byte keys and lengths without a call."""
    while pos < end:
        key = buf[pos]
        pos += 1
        if key >= 0x80:
            key, pos = _varint(buf, pos - 1)
        if key & 7 != 2:
            pos = _skip(buf, pos, key & 7)
            continue
        size = buf[pos]
        pos += 1
        if size >= 0x80:
            size, pos = _varint(buf, pos - 1)
        _take(budget)
        if key >> 3 == node_field and size:
            _node(buf, pos, pos + size, budget)
        pos += size
    if pos != end:
        raise ValueError("graph runs past its message")


def _node(buf: Any, pos: int, end: int, budget: _Budget) -> None:
    for field, start, stop in _fields(buf, pos, end):
        if field != NODE_ATTRIBUTE:
            continue
        _take(budget)
        for inner, a, b in _fields(buf, start, stop):
            if inner in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                _graph(buf, a, b, budget, GRAPH_NODE)


def _skip(buf: Any, pos: int, kind: int) -> int:
    if kind == 0:
        return _varint(buf, pos)[1]
    if kind in (1, 5):
        return pos + (8 if kind == 1 else 4)
    raise ValueError(f"wire type {kind}")


def inspect(path: Path, main: str, limits: IntakeLimits, upload_bytes: int) -> dict[str, Any]:
    """Scan, then parse and check in a bounded child process: the model's summary (onnxinfo.summary).
    The child may use TRTFARM_INTAKE_MEMORY_MIB plus three times the upload (`upload_bytes`, external data
    included)."""
    scan(path, limits.max_elements, main)
    memory = limits.memory_mib + 3 * (upload_bytes >> 20)
    cmd = [sys.executable, "-m", "registry.intake", str(path), main, str(memory)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limits.timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise InvalidModel(f"{main}: checking it took longer than {limits.timeout_s:g} s "
                           "(TRTFARM_INTAKE_TIMEOUT_S)") from None
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        answer = None
    if not isinstance(answer, dict):
        raise InvalidModel(f"{main}: parsing it needs more than {memory} MiB (TRTFARM_INTAKE_MEMORY_MIB plus 3x its "
                           f"size) or crashed the parser (exit {done.returncode})",
                           details={"stderr": done.stderr[-2000:]})
    if "error" in answer:
        raise InvalidModel(answer["error"]["message"], details=answer["error"].get("details"))
    return answer


def _child(argv: list[str]) -> int:
    """`python -m registry.intake PATH MAIN MEMORY_MIB`: one JSON line, the summary or {"error": ...}."""
    import resource

    path, main, memory = argv[0], argv[1], int(argv[2]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    from registry import onnxinfo

    try:
        answer: dict[str, Any] = onnxinfo.summary(Path(path), main)
    except InvalidModel as exc:
        message = exc.message
        if "alloc failed" in message:  # protobuf's arena hit the address-space limit
            message = (f"{main}: parsing it needs more than {memory >> 20} MiB "
                       "(TRTFARM_INTAKE_MEMORY_MIB plus 3x its size)")
        answer = {"error": {"message": message, "details": exc.details}}
    except MemoryError:
        return 3
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
