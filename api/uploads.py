"""A model upload received in one pass: the multipart body is parsed as it streams in, each file written
into the upload folder and hashed in the same pass, 1 MiB at a time (in a worker thread, so the event loop
keeps serving). Nothing is spooled twice and no file is held in memory; the digests go to the model
service with the files (registry.services.models.register_model)."""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from registry.errors import InvalidModel, StoreFull, TooLarge

FLUSH = 1 << 20
MAIN, EXTERNAL = "file", "files"  # the form's field names: the .onnx, and its external data files
MAX_NAME = 255  # bytes per path component, as file systems allow
MAX_PATH = 1024  # the model_files.path column


@dataclass
class _Part:
    form_field: str = ""
    filename: str | None = None
    out: IO[bytes] | None = None
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    pending: bytearray = field(default_factory=bytearray)
    done: bool = False

    def flush(self) -> None:
        if self.out is not None and self.pending:
            self.out.write(self.pending)
            self.digest.update(self.pending)
            self.size += len(self.pending)
        self.pending.clear()
        if self.done and self.out is not None:
            self.out.close()


@dataclass
class Received:
    main: str | None = None
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # relative path -> (sha256:…, size)


class _Parts:
    """The parser's callbacks: each part's headers, then its bytes into the part (when it is a model file)."""

    def __init__(self, max_files: int) -> None:
        self.max_files, self.received, self.open = max_files, Received(), []
        self.current, self.headers, self.name = _Part(), {}, bytearray()

    def callbacks(self) -> dict:
        return {"on_part_begin": self.begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.name.clear,
                "on_headers_finished": self.headers_done, "on_part_data": self.data, "on_part_end": self.end}

    def begin(self) -> None:
        self.current = _Part()
        self.headers.clear()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.name.extend(data[start:end])

    def header_value(self, data: bytes, start: int, end: int) -> None:
        key = bytes(self.name).lower()
        self.headers[key] = self.headers.get(key, b"") + data[start:end]

    def headers_done(self) -> None:
        part = self.current
        _, disposition = parse_options_header(self.headers.get(b"content-disposition", b""))
        part.form_field = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if part.form_field in (MAIN, EXTERNAL) and filename is not None:
            if len(self.received.files) + len(self.open) >= self.max_files:
                raise TooLarge(f"more than {self.max_files} files in one upload")
            default = "model.onnx" if part.form_field == MAIN else ""
            part.filename = safe_name(filename.decode("utf-8", "replace") or default)
            self.open.append(part)

    def data(self, chunk: bytes, start: int, end: int) -> None:
        if self.current.filename is not None:
            self.current.pending.extend(chunk[start:end])

    def end(self) -> None:
        self.current.done = True


async def receive(request: Request, folder: Path, max_files: int = 10_000) -> Received:
    """Stream the request's multipart body into `folder`; the main file's name and every file's digest."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidModel("upload the model as multipart/form-data: field 'file' (the .onnx), external data in "
                           "fields named 'files'")
    parts = _Parts(max_files)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            await _flush(parts.open, folder, parts.received, final=False)
        parser.finalize()
        unfinished = [p.filename for p in parts.open if not p.done]
        if unfinished:
            raise InvalidModel(f"the multipart body ends inside file {unfinished[0]!r} (no closing boundary): the "
                               "upload is incomplete; send it again")
        await _flush(parts.open, folder, parts.received, final=True)
    except MultipartParseError as exc:
        raise InvalidModel(f"the multipart body is malformed ({exc}); send field 'file' with the .onnx") from None
    finally:
        for part in parts.open:
            if part.out is not None:
                part.out.close()
    return parts.received


async def _flush(parts: list[_Part], folder: Path, received: Received, final: bool) -> None:
    for part in list(parts):
        if part.done or final or len(part.pending) >= FLUSH:
            await run_in_threadpool(_write, part, folder)
        if part.done or final:
            parts.remove(part)
            received.files[part.filename] = ("sha256:" + part.digest.hexdigest(), part.size)
            if part.form_field == MAIN and received.main is None:
                received.main = part.filename


def _write(part: _Part, folder: Path) -> None:
    try:
        if part.out is None:
            dest = folder / part.filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            part.out = open(dest, "wb")  # noqa: SIM115 - closed by flush() at the part's end, or receive()
        part.flush()  # (and closes the file once the part ended)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull("the API's upload folder is full; nothing was kept. Free space (or point TMPDIR "
                            "elsewhere) and upload again") from None
        raise


def safe_name(name: str) -> str:
    """A multipart file name as a relative path inside the upload; InvalidModel for anything else."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or path.as_posix() in (".", ""):
        raise InvalidModel(f"file name {name!r} must be a relative path inside the model's folder, without '..'")
    if any(ord(c) < 32 for c in name):  # NUL, newline, tab, …
        raise InvalidModel(f"file name {name!r} contains control characters (NUL, newline, …); rename the file")
    if len(path.as_posix().encode()) > MAX_PATH or any(len(p.encode()) > MAX_NAME for p in path.parts):
        raise InvalidModel(f"file name {name[:80]!r}… is too long: at most {MAX_NAME} bytes per folder or file name "
                           f"and {MAX_PATH} in all")
    return path.as_posix()
