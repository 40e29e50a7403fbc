"""A model upload received in one pass: the multipart body is parsed as it streams in, each file written
into the upload folder and hashed in the same pass, 1 MiB at a time, in a worker thread while the event
loop parses the next MiB (one write in flight: at most 2 MiB held). Nothing is spooled twice and no file
is held in memory; the digests go to the model service with the files
(registry.services.models.register_model).

A file part may state its digest in a `Content-Digest: sha-256=:<base64>:` header (RFC 9530), as the SDK
does (it hashed the model for its HEAD anyway): then the blob store may send the file on while it arrives
(BlobStore.begin_stream: S3 starts the multipart upload at once), and the digest computed here must match
the claim (else 422, nothing kept)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from registry.atomic import writer_tag
from registry.blobs.base import StreamedPut
from registry.errors import FarmError, InvalidModel, InvalidRequest, StoreFull, TooLarge

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
    claimed: str | None = None  # its Content-Digest
    stream: StreamedPut | None = None

    def take(self) -> bytearray:
        data, self.pending = self.pending, bytearray()
        return data


@dataclass
class Received:
    main: str | None = None
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # relative path -> (sha256:…, size)
    streams: dict[str, StreamedPut] = field(default_factory=dict)  # relative path -> sent while it arrived


class _Parts:
    """The parser's callbacks: each part's headers, then its bytes into the part (when it is a model file)."""

    def __init__(self, max_files: int, folder: Path, stream: Streamer | None) -> None:
        self.max_files, self.folder, self.stream, self.open, self.finished = max_files, folder, stream, [], []
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
            if len(self.finished) + len(self.open) >= self.max_files:
                raise TooLarge(f"more than {self.max_files} files in one upload")
            default = "model.onnx" if part.form_field == MAIN else ""
            part.filename = safe_name(filename.decode("utf-8", "replace") or default)
            if any(p.filename == part.filename for p in (*self.open, *self.finished)):
                raise InvalidModel(f"the upload has two files named {part.filename!r}; send each file once")
            part.claimed = content_digest(self.headers.get(b"content-digest"), part.filename)
            if part.claimed is not None and self.stream is not None:
                part.stream = self.stream(self.folder / part.filename, part.claimed)
            self.open.append(part)

    def data(self, chunk: bytes, start: int, end: int) -> None:
        if self.current.filename is not None:
            self.current.pending.extend(chunk[start:end])

    def end(self) -> None:
        self.current.done = True


Streamer = Callable[[Path, str], "StreamedPut | None"]


async def receive(request: Request, folder: Path, max_files: int = 10_000, stream: Streamer | None = None
                  ) -> Received:
    """Stream the request's multipart body into `folder`; the main file's name and every file's digest.
    `stream(path, claimed digest)`: a StreamedPut for a file whose part states its digest (fed as it is
    written); those started are handed over in `Received.streams`, the others aborted when this fails."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise InvalidModel("upload the model as multipart/form-data: field 'file' (the .onnx), external data in "
                           "fields named 'files'")
    parts, writer = _Parts(max_files, folder, stream), _Writer(folder)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                await _flush(parts, writer, final=False)
            parser.finalize()
            unfinished = [p.filename for p in parts.open if not p.done]
            if unfinished:
                raise InvalidModel(f"the multipart body ends inside file {unfinished[0]!r} (no closing boundary): "
                                   "the upload is incomplete; send it again")
            await _flush(parts, writer, final=True)
            await writer.drain()
        except MultipartParseError as exc:
            raise InvalidModel(f"the multipart body is malformed ({exc}); send field 'file' with the .onnx") from None
        finally:
            with suppress(BaseException):  # the write in flight ends before its file closes (its error: raised)
                await writer.drain()
            for part in (*parts.open, *parts.finished):
                if part.out is not None:
                    part.out.close()
        return _received(parts.finished)
    except BaseException:
        for part in (*parts.open, *parts.finished):
            if part.stream is not None:
                with suppress(BaseException):
                    await run_in_threadpool(part.stream.abort)
        raise


def _received(finished: list[_Part]) -> Received:
    received = Received()
    for part in finished:
        digest = "sha256:" + part.digest.hexdigest()
        if part.claimed is not None and digest != part.claimed:
            raise InvalidModel(f"file {part.filename!r} hashes to {digest}, not to the digest its Content-Digest "
                               f"header states ({part.claimed}): it changed on the way; send it again")
        received.files[part.filename] = (digest, part.size)
        if part.stream is not None:
            received.streams[part.filename] = part.stream
        if part.form_field == MAIN and received.main is None:
            received.main = part.filename
    return received


def content_digest(value: bytes | None, filename: str) -> str | None:
    """'sha256:<hex>' from a `Content-Digest: sha-256=:<base64>:` header (RFC 9530); None without one, or
    with only other algorithms. InvalidModel for a sha-256 value that is not 32 bytes of base64."""
    if not value:
        return None
    for item in value.decode("latin-1").split(","):
        algorithm, _, rest = item.strip().partition("=")
        if algorithm.strip().lower() != "sha-256":
            continue
        try:
            raw = base64.b64decode(rest.strip().strip(":"), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise InvalidModel(f"the Content-Digest header of file {filename!r} is not sha-256=:<base64 of the 32-byte "
                               "sha256>: (RFC 9530)")
        return "sha256:" + raw.hex()
    return None


class _Writer:
    """Writes and hashes the parts' bytes in a worker thread, one write in flight, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.task = folder, None

    async def submit(self, part: _Part, data: bytearray, last: bool) -> None:
        await self.drain()
        self.task = asyncio.ensure_future(run_in_threadpool(_write, part, self.folder, data, last))

    async def drain(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            await task


async def _flush(parts: _Parts, writer: _Writer, final: bool) -> None:
    for part in list(parts.open):
        last = part.done or final
        if last or len(part.pending) >= FLUSH:
            await writer.submit(part, part.take(), last)
        if last:
            parts.open.remove(part)
            parts.finished.append(part)


def _write(part: _Part, folder: Path, data: bytearray, last: bool) -> None:
    try:
        if part.out is None:
            dest = folder / part.filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            part.out = open(dest, "wb")  # noqa: SIM115 - closed here at the part's end, or by receive()
        if data:
            part.out.write(data)
            part.digest.update(data)
            part.size += len(data)
        if last:
            part.out.close()
        elif part.stream is not None:
            part.out.flush()  # what the stream reads from the file is there
        if part.stream is not None:
            (part.stream.finish if last else part.stream.grow)(part.size)
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


UPLOAD_DIR_PREFIX = "trtfarm-upload-"  # swept at API start when an API died mid-upload (api/serve.py)


@asynccontextmanager
async def upload_folder() -> AsyncIterator[Path]:
    """A private folder for one upload (its name tells this API process's: swept if the process dies), removed
    after, whatever happened."""
    folder = Path(tempfile.mkdtemp(prefix=UPLOAD_DIR_PREFIX + writer_tag()))
    try:
        yield folder
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)


@asynccontextmanager
async def raw_file(request: Request, what: str, itself: str, example: str,
                   refuse: Callable[[str], FarmError]) -> AsyncIterator[tuple[Path, str, int]]:
    """One file sent as the raw request body (not a multipart form), received into an upload folder: (its path,
    "sha256:<hex>", size) while the block runs. A multipart form is refused with `refuse(message)`, which names
    `itself` ("the library") and a curl example for `example` (a file name)."""
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise refuse(f"send {itself} itself as the request body (Content-Type: application/octet-stream, "
                     f"e.g. curl --data-binary @{example}), not as a multipart form")
    async with upload_folder() as folder:
        path = folder / "upload"
        digest, size = await receive_body(request, path, what)
        yield path, digest, size


async def receive_body(request: Request, dest: Path, what: str) -> tuple[str, int]:
    """Stream a raw request body (one file, not multipart) into `dest`, hashed as it is written, 1 MiB at a time
    in a worker thread: ("sha256:<hex>", size). A `Content-Digest: sha-256=:<base64>:` header must match
    (else InvalidRequest, nothing kept)."""
    try:
        claimed = content_digest(request.headers.get("content-digest", "").encode("latin-1") or None, what)
    except InvalidModel as exc:
        raise InvalidRequest(exc.message) from None
    digest, size, pending = hashlib.sha256(), 0, bytearray()
    with open(dest, "wb") as out:
        async for chunk in request.stream():
            pending.extend(chunk)
            if len(pending) >= FLUSH:
                size += await run_in_threadpool(_append, out, digest, pending)
                pending = bytearray()
        size += await run_in_threadpool(_append, out, digest, pending)
    found = "sha256:" + digest.hexdigest()
    if claimed is not None and found != claimed:
        raise InvalidRequest(f"{what} hashes to {found}, not to the digest its Content-Digest header states "
                             f"({claimed}): it changed on the way; send it again")
    return found, size


def _append(out: IO[bytes], digest: Any, data: bytearray) -> int:
    try:
        out.write(data)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StoreFull("the API's upload folder is full; nothing was kept. Free space (or point TMPDIR "
                            "elsewhere) and upload again") from None
        raise
    digest.update(data)
    return len(data)
