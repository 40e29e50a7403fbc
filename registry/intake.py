"""Model intake with bounded memory and time.

1. `scan` walks the raw protobuf through mmap (nothing is loaded) and refuses a model with more graph
   elements (nodes, initializers, inputs, attributes, in subgraphs and functions too) than
   TRTFARM_MAX_MODEL_ELEMENTS: a "protobuf bomb" of millions of empty nodes is refused in a fraction of
   a second, before anything parses it.
2. `check` (`inspect` = scan + check) parses and checks the model in a child process under an
   address-space limit (TRTFARM_INTAKE_MEMORY_MIB plus three times the file) and a time limit
   (TRTFARM_INTAKE_TIMEOUT_S): whatever onnx does with it, the API's own memory does not grow. The child
   is forked from a fork server that imported onnx once (`registry.intakechild`, one per API process,
   started by `warm_up`): a check costs a fork and the parse, not a new interpreter importing onnx (~1 s).
   A large model's summary is read from its `skeleton` (the initializers' bytes left out), and onnx's checker
   is shown a skeleton whose large weights are external-data references to the file's own bytes (their sizes
   checked by registry.onnxinfo), so that neither reads the weights.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


GRAPH_INITIALIZER = 5  # in GraphProto
TENSOR_DATA = (4, 5, 6, 7, 9, 10, 11)  # TensorProto's float/int32/string/int64/raw/double/uint64 data
TENSOR_RAW, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 9, 13, 14  # in TensorProto
REFER_FROM = 1 << 16  # raw_data this large is shown to the checker by reference


def skeleton(path: Path, refer: bool = False) -> bytes | None:
    """The model's bytes less its graph's initializer data (packed *_data and raw_data fields): names, types,
    dims and external-data references stay, which is all the intake's summary reads, for a parse of a few
    kB instead of the whole model. None when the bytes do not split so.

    `refer`: each large raw_data (REFER_FROM) is not left out but becomes an external-data reference to the same
    bytes of the file itself (location: the file's name, offset, length), the rest kept as it is: what onnx's
    checker is shown of a large model (registry.onnxinfo.check_referring), so that it checks every field and
    reads no weights."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            def tensor(a: int, b: int) -> bytes:
                if refer:
                    return _referring(buf, a, b, path.name)
                return _copy(buf, a, b, dict.fromkeys(TENSOR_DATA))

            def graph(a: int, b: int) -> bytes:
                return _copy(buf, a, b, {GRAPH_INITIALIZER: tensor})

            return _copy(buf, 0, len(buf), {MODEL_GRAPH: graph})
    except (IndexError, ValueError, OSError):
        return None


def _copy(buf: Any, pos: int, end: int, rewrite: dict[int, Any]) -> bytes:
    """A message's fields, each copied as it is, or (length-delimited ones named in `rewrite`) dropped (None)
    or rebuilt (a function of the value's bounds)."""
    out = bytearray()
    while pos < end:
        first = pos
        key, pos = _varint(buf, pos)
        if key & 7 != 2:
            pos = _skip(buf, pos, key & 7)
            out += buf[first:pos]
            continue
        size, pos = _varint(buf, pos)
        if pos + size > end:
            raise ValueError("field runs past its message")
        if (key >> 3) not in rewrite:
            out += buf[first:pos + size]
        elif rewrite[key >> 3] is not None:
            inner = rewrite[key >> 3](pos, pos + size)
            out += _varint_bytes(key) + _varint_bytes(len(inner)) + inner
        pos += size
    return bytes(out)


def _referring(buf: Any, pos: int, end: int, name: str) -> bytes:
    """A tensor whose raw_data, when large, becomes an external-data reference to where it lies in file `name`."""
    raw = [(a, b) for field, a, b in _fields(buf, pos, end) if field == TENSOR_RAW]
    if not raw or raw[-1][1] - raw[-1][0] < REFER_FROM:  # the last one is the value protobuf keeps
        return bytes(buf[pos:end])
    start, stop = raw[-1]
    out = bytearray(_copy(buf, pos, end, {TENSOR_RAW: None}))
    for key, value in (("location", name), ("offset", str(start)), ("length", str(stop - start))):
        out += _delimited(TENSOR_EXTERNAL_DATA, _delimited(1, key.encode()) + _delimited(2, value.encode()))
    out += _varint_bytes(TENSOR_DATA_LOCATION << 3) + _varint_bytes(1)  # TensorProto.EXTERNAL
    return bytes(out)


def _delimited(field: int, value: bytes) -> bytes:
    return _varint_bytes(field << 3 | 2) + _varint_bytes(len(value)) + value


def _varint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def inspect(path: Path, main: str, limits: IntakeLimits, upload_bytes: int) -> dict[str, Any]:
    """Scan, then parse and check in a bounded child process: the model's summary (onnxinfo.summary)."""
    scan(path, limits.max_elements, main)
    return check(path, main, limits, upload_bytes)


def check(path: Path, main: str, limits: IntakeLimits, upload_bytes: int) -> dict[str, Any]:
    """Parse and check in a bounded child process (after `scan`): the model's summary. The child may use
    TRTFARM_INTAKE_MEMORY_MIB plus three times the upload (`upload_bytes`, external data included)."""
    memory = limits.memory_mib + 3 * (upload_bytes >> 20)
    with tempfile.TemporaryDirectory(prefix="trtfarm-intake-") as tmp:
        request = {"path": str(path), "main": main, "memory_mib": memory,
                   "answer": os.path.join(tmp, "answer"), "stderr": os.path.join(tmp, "stderr")}
        for name in ("answer", "stderr"):
            Path(request[name]).touch(0o600)
        code = _run(request, limits.timeout_s)
        if code == "timeout":
            raise InvalidModel(f"{main}: checking it took longer than {limits.timeout_s:g} s "
                               "(TRTFARM_INTAKE_TIMEOUT_S)")
        try:
            answer = json.loads(Path(request["answer"]).read_text())
        except ValueError:  # no answer: killed by the memory limit, or crashed
            answer = None
        if not isinstance(answer, dict):
            stderr = Path(request["stderr"]).read_bytes()[-2000:].decode("utf-8", "replace")
            how = f" ({code})" if code else ""
            raise InvalidModel(f"{main}: parsing it needs more than {memory} MiB (TRTFARM_INTAKE_MEMORY_MIB plus 3x "
                               f"its size) or crashed the parser{how}", details={"stderr": stderr})
    if "error" in answer:
        raise InvalidModel(answer["error"]["message"], details=answer["error"].get("details"))
    return answer


def warm_up() -> None:
    """Start this process's intake fork server (it imports onnx, ~1 s, while the caller goes on), so that the
    first model finds it warm. The API calls this at start; without it, the first check starts it."""
    with _LOCK:
        _server()


def shut_down() -> None:
    """Stop the fork server (the API at exit; it would also go by itself once this process is gone)."""
    global _SERVER
    with _LOCK:
        server, _SERVER = _SERVER, None
    if server is not None:
        server.close()


class _ForkServer:
    """`python -m registry.intakechild serve FD` and our end of its socket (SOCK_SEQPACKET)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", "registry.intakechild", "serve", str(theirs.fileno())],
                                         pass_fds=[theirs.fileno()], env=_child_env(), stdin=subprocess.DEVNULL)
        ours.settimeout(120)  # its first answer waits for onnx's import; a server that hangs is replaced
        self.sock, self.lock = ours, threading.Lock()

    def fork(self, request: dict[str, Any]) -> int | None:
        """A pidfd of the child checking `request`, or None when it has ended already. OSError when the
        server is gone."""
        with self.lock:
            self.sock.sendall(json.dumps(request).encode())
            data, fds, _, _ = socket.recv_fds(self.sock, 64, 1)
        if not data:
            raise ConnectionError("the intake fork server has exited")
        return fds[0] if fds else None

    def close(self) -> None:
        self.sock.close()  # the server's recv ends: it exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_LOCK = threading.Lock()
_SERVER: _ForkServer | None = None


def _server() -> _ForkServer:
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        _SERVER = _ForkServer()
    return _SERVER


def _run(request: dict[str, Any], timeout_s: float) -> str:
    """Check `request` in a child: "timeout", or how it ended ("" for a forked child: its exit code is its
    parent's, the fork server's)."""
    global _SERVER
    if not _pidfds_work():
        return _run_once(request, timeout_s)
    for attempt in (1, 2):
        with _LOCK:
            server = _server()
        try:
            pidfd = server.fork(request)
            break
        except OSError:  # the server died (killed, out of memory): start another, once
            with _LOCK:
                if _SERVER is server:
                    _SERVER = None
            server.close()
            if attempt == 2:
                raise
    if pidfd is None:
        return ""
    try:
        ended = select.poll()  # (not select.select: a busy API's descriptors pass FD_SETSIZE)
        ended.register(pidfd, select.POLLIN)
        if not ended.poll(timeout_s * 1000):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            ended.poll(5000)
            return "timeout"
        return ""
    finally:
        os.close(pidfd)


def _run_once(request: dict[str, Any], timeout_s: float) -> str:
    """Without pidfds: a new interpreter per model (`python -m registry.intakechild once`)."""
    cmd = [sys.executable, "-m", "registry.intakechild", "once"]
    try:
        done = subprocess.run(cmd, input=json.dumps(request), text=True, timeout=timeout_s, env=_child_env())
    except subprocess.TimeoutExpired:
        return "timeout"
    return f"exit {done.returncode}"


def _child_env() -> dict[str, str]:
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


@functools.cache
def _pidfds_work() -> bool:
    """Linux ≥ 5.3: the fork server answers with pidfds. Elsewhere each check starts an interpreter."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return hasattr(socket, "send_fds") and hasattr(signal, "pidfd_send_signal")

