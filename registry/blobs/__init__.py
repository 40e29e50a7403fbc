"""Content-addressed blob stores: a folder (embedded mode) or S3 (production), one contract.

    store = open_blob_store("file:///var/lib/trtfarm/blobs")      # or a plain folder path
    store = open_blob_store("s3://bucket/some/prefix", s3_endpoint_url="http://minio:9000")

boto3 is imported only when an S3 store is actually used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from registry.blobs.base import BlobInfo, BlobStore, check_digest
from registry.blobs.local import LocalBlobStore
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.blobs.s3 import S3BlobStore

ACCEPTED_FORMS = "file:///absolute/folder, a plain folder path, or s3://bucket[/prefix]"

# S3 bucket naming rules (also accepted by MinIO): 3-63 chars, lowercase, digits, '.', '-'.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_blob_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
) -> BlobStore:
    """A BlobStore for ``file:///abs/path``, a bare folder path, or ``s3://bucket/prefix``."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(f"empty blob store URL: use {ACCEPTED_FORMS}")
    url = url.strip()
    m = _SCHEME.match(url)
    if m is None:
        if ":" in url.split("/", 1)[0] and not url.startswith(("/", ".", "~")):
            # "gs:bucket", "c:..." and the like: not a folder we'd want to guess at
            raise InvalidInput(f"unsupported blob store URL {url!r}: use {ACCEPTED_FORMS}")
        return LocalBlobStore(Path(url).expanduser().absolute())

    scheme = m.group(1).lower()
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise InvalidInput(
            f"blob store URL {url!r} has a query or fragment, which is not supported: use {ACCEPTED_FORMS}"
        )
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInput(
                f"blob store URL {url!r} names a host ({parts.netloc!r}); a file URL must be local: "
                "file:///absolute/folder"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidInput(f"blob store URL {url!r} needs an absolute path: file:///absolute/folder")
        return LocalBlobStore(Path(path))
    if scheme == "s3":
        from registry.blobs.s3 import S3BlobStore

        bucket = parts.netloc
        if not bucket:
            raise InvalidInput(f"blob store URL {url!r} has no bucket: use s3://bucket[/prefix]")
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise InvalidInput(
                f"blob store URL {url!r}: {bucket!r} is not a valid S3 bucket name "
                "(3-63 characters: lowercase letters, digits, '.', '-')"
            )
        prefix = unquote(parts.path).strip("/")
        if any(seg in ("", ".", "..") for seg in prefix.split("/")) and prefix:
            raise InvalidInput(f"blob store URL {url!r} has an empty, '.' or '..' prefix segment")
        return S3BlobStore(bucket, prefix, endpoint_url=s3_endpoint_url, region=s3_region)
    raise InvalidInput(f"unsupported blob store URL scheme {scheme!r} in {url!r}: use {ACCEPTED_FORMS}")


def __getattr__(name: str) -> type:  # lazy: importing registry.blobs must not import boto3
    if name == "S3BlobStore":
        from registry.blobs.s3 import S3BlobStore

        return S3BlobStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACCEPTED_FORMS",
    "BlobInfo",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "check_digest",
    "open_blob_store",
]
