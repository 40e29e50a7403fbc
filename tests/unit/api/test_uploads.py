"""api.uploads: the Content-Digest header (RFC 9530) a file part may state its digest in."""

from __future__ import annotations

import base64
import hashlib

import pytest

from api.uploads import content_digest
from registry.errors import InvalidModel

RAW = hashlib.sha256(b"model").digest()
B64 = base64.b64encode(RAW).decode()


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    (b"", None),
    (f"sha-256=:{B64}:".encode(), "sha256:" + RAW.hex()),
    (f"SHA-256=:{B64}:".encode(), "sha256:" + RAW.hex()),
    (f"sha-512=:{base64.b64encode(bytes(64)).decode()}:, sha-256=:{B64}:".encode(), "sha256:" + RAW.hex()),
    (b"sha-512=:AAAA:", None),  # only algorithms the farm does not use: as if there were none
])
def test_a_content_digest_header_names_the_sha256_it_states(header: bytes | None, expected: str | None) -> None:
    assert content_digest(header, "m.onnx") == expected


@pytest.mark.parametrize("header", [b"sha-256=:not base64!:", b"sha-256=:" + base64.b64encode(bytes(16)) + b":",
                                    b"sha-256=" + RAW.hex().encode()])
def test_a_sha256_content_digest_that_is_not_32_bytes_of_base64_is_refused(header: bytes) -> None:
    with pytest.raises(InvalidModel, match="Content-Digest header of file 'm.onnx'"):
        content_digest(header, "m.onnx")
