"""The SDK's uploads of one raw file by digest (calibration inputs, plugin libraries): HEAD first, then the file
streamed from disk as the request body with its `Content-Digest`, and the farm's digest checked against ours.
Standard library, httpx and the schemas only, like the rest of the SDK."""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.digests import digest_of_file
from registry.errors import DigestMismatch, FarmError, InvalidInput


def exists(request: Callable[..., Any], path: str) -> bool:
    """HEAD `path`: False on 404 (a HEAD answer has no body: its 404 comes back as a bare status)."""
    try:
        request("HEAD", path)
    except FarmError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def upload(request: Callable[..., Any], route: str, path: str | Any, what: str,
           params: dict[str, str] | None = None) -> dict:
    """The farm's record (JSON) of the file at `path`, uploaded to POST `route` unless `route/<digest>` exists."""
    local = Path(path)
    if not local.is_file():
        raise InvalidInput(f"{what} {str(path)!r} does not exist")
    digest, _ = digest_of_file(local)
    if exists(request, f"{route}/{digest}"):
        return request("GET", f"{route}/{digest}").json()
    headers = {"Content-Type": "application/octet-stream",
               "Content-Digest": f"sha-256=:{b64encode(bytes.fromhex(digest[7:])).decode()}:"}
    with open(local, "rb") as f:
        found = request("POST", route, content=f, params={"name": local.name[:255], **(params or {})},
                        headers=headers).json()
    if found.get("digest") != digest:
        raise DigestMismatch(f"the farm recorded the {what} as {found.get('digest')} but this SDK computed {digest}",
                             details={"local": digest, "remote": found.get("digest")})
    return found
