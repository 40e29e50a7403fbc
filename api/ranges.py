"""HTTP range requests on artifacts (RFC 9110 §14): one byte range, or the whole representation.

- `Range` with a unit other than bytes, several ranges, or a malformed or backwards range is ignored:
  the answer is 200 with everything (a server MAY ignore Range; we serve single ranges only).
- `If-Range` that does not name the current strong ETag (a date, a weak tag, another digest) also means
  the whole artifact: the client's partial copy is of something else.
- A single, well-formed range that starts past the end is unsatisfiable: 416 with `Content-Range: */size`.
"""

from __future__ import annotations

import re

from registry.errors import RangeNotSatisfiable

_SINGLE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int, *, if_range: str | None = None, etag: str = "") -> tuple[int, int] | None:
    """(first, last) byte to send, inclusive; None for the whole artifact (no usable Range)."""
    if not header or (if_range is not None and if_range.strip() != etag):
        return None
    m = _SINGLE.match(header.replace(" ", ""))
    if not m or not (m[1] or m[2]):
        return None  # another unit, several ranges, or no range at all: ignored
    if not m[1]:  # a suffix: the last N bytes
        if int(m[2]) == 0:
            raise RangeNotSatisfiable(f"Range {header!r} asks for the last 0 bytes of the {size}-byte artifact")
        return max(0, size - int(m[2])), size - 1
    start, end = int(m[1]), int(m[2]) if m[2] else None
    if end is not None and start > end:
        return None  # invalid (last before first): the whole Range is ignored
    if start >= size:
        raise RangeNotSatisfiable(f"Range {header!r} starts past the end of the {size}-byte artifact; "
                                  f"ask for bytes 0-{size - 1}")
    return start, size - 1 if end is None else min(end, size - 1)
