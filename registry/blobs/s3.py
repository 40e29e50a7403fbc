"""Blobs in an S3 bucket (AWS, MinIO, or anything that speaks the protocol).

Objects live at ``<prefix>blobs/sha256/<ab>/<hex>`` with user metadata ``sha256=<hex>``.

Writes (bodies stream from the file, never held in memory: registry.blobs.s3parts):
- The sha256 is computed by us, from the bytes we send; an ETag is never taken as a digest.
- Below ``multipart_threshold`` the file is hashed, then sent in one ``PutObject`` carrying
  ``ChecksumSHA256`` (S3 recomputes it and rejects a body that doesn't match) and ``If-None-Match: *``
  (write-once).
- At or above it: with a digest claimed by the caller, a multipart upload sends the file part by part
  (several at once), hashing as it cuts the parts, each part with its own ``ChecksumSHA256``; a claim the
  bytes contradict aborts the upload (DigestMismatch) before anything becomes visible. Without a claim, one
  pass hashes the file to find its key first; a second hash that differs (the file changed underneath
  us) aborts the upload. ``CompleteMultipartUpload`` also carries ``If-None-Match: *``.
- ``begin_puts`` (model uploads) sends the parts of files of ``stage_threshold`` bytes or more while the
  API checks the model, and completes those uploads only on commit: a refused model is aborted, invisible.
- Write-once: a HEAD first (an existing object with the right size and sha256 metadata is kept and
  returned); the conditional write closes the race between two writers. A 412 means another writer got
  there first: the existing object is checked (size + sha256 metadata) and returned. An endpoint that
  answers 501 NotImplemented to conditional writes gets plain writes from then on (HEAD check only).
- An existing object whose size or sha256 metadata contradicts its key is corrupt: it is replaced by the
  verified bytes we hold (logged).

Reads stream ``GetObject`` bodies while hashing; the API's presigned URLs let clients fetch directly.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from registry.blobs import s3parts
from registry.blobs.base import (
    BlobInfo,
    BlobStore,
    ChunkReader,
    PendingPuts,
    StreamedPut,
    check_digest,
    check_range,
    mismatch,
    sha256_digest,
)
from registry.blobs.s3parts import Part, ReadAt, Window, changed, cut, upload_parts
from registry.digests import CHUNK
from registry.errors import BlobError, BlobNotFound, FarmError, InvalidInput

log = logging.getLogger(__name__)

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 5 * MiB  # S3's smallest part (except the last)
MAX_SINGLE_PUT = 5 * GiB
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 limit


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _error_code(err: Exception) -> tuple[str, int]:
    resp = getattr(err, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _is_missing(err: Exception) -> bool:
    code, status = _error_code(err)
    return code in ("NoSuchKey", "404", "NotFound") or (status == 404 and code != "NoSuchBucket")


def _is_precondition_failed(err: Exception) -> bool:
    code, status = _error_code(err)
    return code == "PreconditionFailed" or status == 412


def _is_conditional_conflict(err: Exception) -> bool:
    code, status = _error_code(err)
    return code == "ConditionalRequestConflict" or (status == 409 and code != "BucketAlreadyOwnedByYou")


def _is_not_implemented(err: Exception) -> bool:
    code, status = _error_code(err)
    return code == "NotImplemented" or status == 501


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII ``filename`` and an RFC 5987 ``filename*`` (for any name)."""
    name = filename.replace("/", "_").replace("\\", "_") or "blob"
    ascii_name = "".join(c if (32 <= ord(c) < 127 and c not in '"%;') else "_" for c in name)
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


class S3BlobStore(BlobStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
        client: Any = None,
        *,
        max_concurrency: int = 4,
        conditional_writes: bool = True,
        stage_threshold: int | None = None,
    ) -> None:
        if not bucket:
            raise InvalidInput("S3 blob store: a bucket name is required")
        if multipart_chunksize < MIN_PART:
            raise InvalidInput(
                f"S3 multipart_chunksize {multipart_chunksize} is below S3's minimum part size of "
                f"{MIN_PART} bytes (5 MiB)"
            )
        if not (0 < multipart_threshold <= MAX_SINGLE_PUT):
            raise InvalidInput(
                f"S3 multipart_threshold {multipart_threshold} must be between 1 and {MAX_SINGLE_PUT} "
                "bytes (S3's largest single PUT)"
            )
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint_url = endpoint_url
        self.region = region
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.max_concurrency = max(1, max_concurrency)
        # begin_puts() starts uploading files of this size or more before commit (multipart; any size works)
        self.stage_threshold = multipart_chunksize if stage_threshold is None else stage_threshold
        # Flipped off (for this store's lifetime) if the endpoint answers 501 to If-None-Match.
        self.conditional_writes = conditional_writes
        self._client = client
        self._lock = threading.Lock()

    # ---- client ---------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # lazy: the SDK and CLI install without boto3
                    from botocore.config import Config

                    config = Config(
                        signature_version="s3v4",
                        retries={"mode": "standard", "max_attempts": 5},
                        # every request with a body carries its ChecksumSHA256, which S3 verifies: the body is not
                        # hashed a second time for the signature (botocore's default over https, kept over http)
                        s3={"addressing_style": "path" if self.endpoint_url else "auto",
                            "payload_signing_enabled": False},
                        max_pool_connections=max(10, 2 * self.max_concurrency + 2),
                    )
                    self._client = boto3.session.Session().client(
                        "s3",
                        endpoint_url=self.endpoint_url,
                        region_name=self.region,
                        config=config,
                    )
        return self._client

    def object_key(self, digest: str) -> str:
        """The full object key: ``<prefix>blobs/sha256/<ab>/<hex>``."""
        return self.prefix + self.key_for(digest)

    @contextmanager
    def _errors(self, what: str, digest: str | None = None) -> Iterator[None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except FarmError:
            raise
        except ClientError as e:
            code, status = _error_code(e)
            where = f"s3://{self.bucket}/{self.object_key(digest)}" if digest else self.describe()
            if digest is not None and _is_missing(e):
                raise BlobNotFound(
                    f"blob {digest} is not in {self.describe()}", details={"digest": digest}
                ) from None
            if code == "NoSuchBucket":
                raise BlobError(
                    f"S3 bucket {self.bucket!r} does not exist ({self.describe()}); create it "
                    "(`trtfarm up` does) or fix the blob store URL"
                ) from e
            msg = e.response.get("Error", {}).get("Message", "") if hasattr(e, "response") else ""
            raise BlobError(
                f"S3 {what} failed for {where}: {code or status} {msg}".rstrip(),
                details={"s3_code": code, "http_status": status},
            ) from e
        except BotoCoreError as e:
            raise BlobError(f"S3 {what} failed ({self.describe()}): {e}") from e

    def _head(self, digest: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        with self._errors("HEAD", digest):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=self.object_key(digest))
            except ClientError as e:
                if _is_missing(e):
                    return None
                raise

    @staticmethod
    def _head_matches(head: dict[str, Any], digest: str, size: int | None) -> bool:
        """Does an existing object agree with its key? (size, and sha256 metadata when present)"""
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        recorded = meta.get("sha256")
        if recorded is not None and recorded != digest.split(":", 1)[1]:
            return False
        return size is None or int(head.get("ContentLength", -1)) == size

    # ---- writes ---------------------------------------------------------------------------------
    def put_file(self, path: str | os.PathLike[str], expected_digest: str | None = None) -> BlobInfo:
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        fd = os.open(Path(path), os.O_RDONLY)
        try:  # the bytes there when it was opened (a window that reads short: the file changed, BlobError)
            return self._put(functools.partial(os.pread, fd), os.fstat(fd).st_size, expected_digest)
        finally:
            os.close(fd)

    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> BlobInfo:
        if expected_digest is not None:
            check_digest(expected_digest, "expected digest")
        view = memoryview(bytes(data))
        return self._put(lambda n, offset: bytes(view[offset:offset + n]), len(view), expected_digest)

    def begin_puts(self, files: Sequence[tuple[Path, str]],
                   streams: Mapping[Path, StreamedPut] | None = None) -> PendingPuts:
        """Files of at least ``stage_threshold`` bytes start going up at once, as multipart uploads completed
        only by commit() (s3parts.StagedPuts); smaller ones are stored by commit()."""
        for _, digest in files:
            check_digest(digest, "expected digest")
        return s3parts.StagedPuts(self, files, streams)

    def begin_stream(self, path: Path, digest: str) -> StreamedPut:
        """A multipart upload that starts once ``stage_threshold`` bytes have arrived (s3parts.StreamedUpload)."""
        return s3parts.StreamedUpload(self, path, check_digest(digest, "claimed digest"))

    def _put(self, read_at: ReadAt, size: int, expected_digest: str | None) -> BlobInfo:
        if size < self.multipart_threshold:
            return self._put_small(read_at, size, expected_digest)
        if expected_digest is not None:  # the key is known: one pass, the parts hashed as they go up and the
            return self._put_large(read_at, expected_digest, size, claimed=True)  # upload aborted if they disagree
        h = hashlib.sha256()
        for offset in range(0, size, CHUNK):
            h.update(read_at(min(CHUNK, size - offset), offset))
        return self._put_large(read_at, sha256_digest(h), size)

    def _put_small(self, read_at: ReadAt, size: int, expected_digest: str | None) -> BlobInfo:
        """One PutObject whose body streams from the source (hashed first: its key and ChecksumSHA256)."""
        whole = hashlib.sha256()
        parts = list(cut(read_at, size, max(size, 1), whole, checksums=False))  # one part, none for 0 bytes
        part = parts[0] if parts else Part(1, Window(read_at, 0, 0), "", 0)
        digest, raw = sha256_digest(whole), whole.digest()
        if expected_digest is not None and digest != expected_digest:
            raise mismatch(expected_digest, digest, size, where="upload rejected")
        overwrite = self._existing_state(digest, size)
        if overwrite is None:
            return BlobInfo(digest, size)
        from botocore.exceptions import ClientError

        key = self.object_key(digest)
        for _attempt in range(3):
            conditional = self.conditional_writes and not overwrite
            kwargs: dict[str, Any] = dict(Bucket=self.bucket, Key=key, Body=part.body,
                                          ContentType="application/octet-stream", Metadata={"sha256": raw.hex()},
                                          ChecksumSHA256=_b64(raw))
            if conditional:
                kwargs["IfNoneMatch"] = "*"
            with self._errors("PUT", digest):
                try:
                    part.body.seek(0)
                    self.client.put_object(**kwargs)
                    if part.body.sent_crc != part.crc:
                        raise changed("it was sent with other bytes than were hashed")
                    return BlobInfo(digest, size)
                except ClientError as e:
                    if conditional and _is_not_implemented(e):
                        self._disable_conditional_writes(e)
                        continue
                    if conditional and (_is_precondition_failed(e) or _is_conditional_conflict(e)):
                        overwrite = self._existing_state(digest, size)
                        if overwrite is None:
                            return BlobInfo(digest, size)
                        continue
                    raise
        raise BlobError(f"S3 PUT of {key} did not settle after 3 attempts ({self.describe()})")

    def _existing_state(self, digest: str, size: int | None) -> bool | None:
        """None: a good copy is already stored (nothing to do). False: absent. True: corrupt, replace."""
        head = self._head(digest)
        if head is None:
            return False
        if self._head_matches(head, digest, size):
            return None
        log.warning("object for %s in %s contradicts its key (size %s, sha256 metadata %s); replacing it", digest,
                    self.describe(), head.get("ContentLength"), (head.get("Metadata") or {}).get("sha256"))
        return True

    def _disable_conditional_writes(self, err: Exception) -> None:
        log.warning("%s does not support conditional writes (If-None-Match: %s); falling back to HEAD-before-PUT "
                    "for write-once", self.describe(), _error_code(err)[0] or _error_code(err)[1])
        self.conditional_writes = False

    def _verify_claim(self, read_at: ReadAt, size: int, digest: str) -> None:
        """DigestMismatch unless the source hashes to `digest` (a claim about a blob that is stored already)."""
        h = hashlib.sha256()
        for offset in range(0, size, CHUNK):
            h.update(read_at(min(CHUNK, size - offset), offset))
        if sha256_digest(h) != digest:
            raise mismatch(digest, sha256_digest(h), size, where="upload rejected")

    def _put_large(self, read_at: ReadAt, digest: str, size: int, claimed: bool = False) -> BlobInfo:
        """`claimed`: the digest is the caller's word, not yet checked against the source."""
        overwrite = self._existing_state(digest, size)
        if overwrite is None:
            if claimed:  # stored already: this file must be that blob before we say so
                self._verify_claim(read_at, size, digest)
            return BlobInfo(digest, size)
        for _attempt in range(3):
            if self._multipart_upload(read_at, digest, size, overwrite, claimed):
                return BlobInfo(digest, size)
            # 412/409: someone else wrote it meanwhile (or the endpoint lacks conditional writes)
            overwrite = self._existing_state(digest, size)
            if overwrite is None:
                return BlobInfo(digest, size)
        raise BlobError(f"S3 multipart upload of {self.object_key(digest)} did not settle after 3 attempts "
                        f"({self.describe()})")

    def _multipart_upload(self, read_at: ReadAt, digest: str, size: int, overwrite: bool,
                          claimed: bool = False) -> bool:
        """Upload the source under ``digest``. False when the conditional complete was refused (retry)."""
        key = self.object_key(digest)
        upload_id = self._create_upload(digest)
        completed = False
        try:
            whole = hashlib.sha256()
            cuts = cut(read_at, size, s3parts.chunksize_for(self, size), whole)
            parts = upload_parts(self, key, upload_id, cuts, whole, digest, claimed)
            outcome = self._complete(key, upload_id, parts, digest, size, overwrite)
            completed = outcome == "completed"
            return outcome != "refused"  # "stored": someone else's copy is good (finally aborts ours)
        finally:
            if not completed:
                self._abort_upload(key, upload_id)

    def _create_upload(self, digest: str) -> str:
        with self._errors("CreateMultipartUpload", digest):
            return self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.object_key(digest), ContentType="application/octet-stream",
                Metadata={"sha256": digest.split(":", 1)[1]}, ChecksumAlgorithm="SHA256")["UploadId"]

    def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except Exception as e:  # noqa: BLE001 - best effort; a lifecycle rule cleans up the rest
            log.warning("could not abort multipart upload %s of %s: %s", upload_id, key, e)

    def _complete(self, key: str, upload_id: str, parts: list[dict[str, Any]], digest: str, size: int,
                  overwrite: bool) -> str:
        """CompleteMultipartUpload, conditional (If-None-Match) unless overwriting a corrupt copy: "completed",
        "stored" (a good copy appeared meanwhile), or "refused" (the conditional complete lost; retry)."""
        from botocore.exceptions import ClientError

        while True:
            conditional = self.conditional_writes and not overwrite
            kwargs: dict[str, Any] = dict(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                          MultipartUpload={"Parts": parts})
            if conditional:
                kwargs["IfNoneMatch"] = "*"
            with self._errors("CompleteMultipartUpload", digest):
                try:
                    self.client.complete_multipart_upload(**kwargs)
                    return "completed"
                except ClientError as e:
                    if conditional and _is_not_implemented(e):
                        self._disable_conditional_writes(e)
                        state = self._existing_state(digest, size)  # someone may have written it meanwhile
                        if state is None:
                            return "stored"
                        overwrite = state
                        continue
                    if conditional and (_is_precondition_failed(e) or _is_conditional_conflict(e)):
                        return "refused"
                    raise

    def _upload_part(self, key: str, upload_id: str, part_no: int, part: Part) -> dict[str, Any]:
        part.body.seek(0)
        with self._errors(f"UploadPart {part_no}"):
            resp = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=part_no,
                                           Body=part.body, ChecksumAlgorithm="SHA256", ChecksumSHA256=part.checksum)
        # The ETag here is only the protocol's part handle, never taken as a digest.
        return {"PartNumber": part_no, "ETag": resp["ETag"], "ChecksumSHA256": part.checksum}

    def delete(self, digest: str) -> None:
        with self._errors("DELETE", digest):
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(digest))

    # ---- reads ----------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self._head(digest) is not None

    def size(self, digest: str) -> int:
        head = self._head(digest)
        if head is None:
            raise BlobNotFound(f"blob {digest} is not in {self.describe()}", details={"digest": digest})
        return int(head["ContentLength"])

    def open_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        check_range(start, end)
        key = self.object_key(digest)
        if end is not None and end <= start:
            self.size(digest)  # still 404 for a missing blob
            return iter(())
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        with self._errors("GET", digest):
            try:
                resp = self.client.get_object(**kwargs)
            except ClientError as e:
                code, status = _error_code(e)
                if code == "InvalidRange" or status == 416:  # start at or past the end
                    return iter(())
                raise
        return self._iter_body(resp["Body"], key)

    def _open_stream(self, digest: str) -> tuple[int, Iterator[bytes]]:
        key = self.object_key(digest)
        with self._errors("GET", digest):
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        return int(resp["ContentLength"]), self._iter_body(resp["Body"], key)

    def _iter_body(self, body: Any, key: str) -> ChunkReader:
        def wrap(e: Exception) -> Exception:  # connection reset, read timeout, truncated body
            return BlobError(f"S3 read of s3://{self.bucket}/{key} failed: {e}")

        return ChunkReader(body.read, body.close, wrap_error=wrap)

    # ---- misc -----------------------------------------------------------------------------------
    def presigned_url(
        self, digest: str, expires_s: int = 3600, filename: str | None = None
    ) -> str | None:
        key = self.object_key(digest)
        if not (1 <= int(expires_s) <= MAX_PRESIGN_S):
            raise BlobError(f"presigned URL expiry {expires_s}s must be between 1 and {MAX_PRESIGN_S}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        with self._errors("presign", digest):
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=int(expires_s)
            )

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (tests, `trtfarm up`)."""
        from botocore.exceptions import ClientError

        client = self.client
        with self._errors("HeadBucket"):
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as e:
                code, status = _error_code(e)
                if not (status == 404 or code in ("404", "NoSuchBucket", "NotFound")):
                    raise
        region = self.region or getattr(client.meta, "region_name", None)
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with self._errors("CreateBucket"):
            try:
                client.create_bucket(**kwargs)
                log.info("created S3 bucket %s (%s)", self.bucket, self.describe())
            except ClientError as e:
                if _error_code(e)[0] != "BucketAlreadyOwnedByYou":  # created meanwhile by us
                    raise

    def describe(self) -> str:
        endpoint = self.endpoint_url
        if endpoint is None and self._client is not None:
            endpoint = getattr(getattr(self._client, "meta", None), "endpoint_url", None)
        return f"s3://{self.bucket}/{self.prefix} at {endpoint or 'AWS'}"
