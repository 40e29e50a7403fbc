"""Upload size limit enforced while the body streams in (not after it has been stored)."""

from __future__ import annotations

import json

from registry.errors import TooLarge


class BodySizeLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 as soon as it crosses it."""

    def __init__(self, app, limit: int) -> None:  # noqa: ANN001
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and int(declared) > self.limit:
            return await self._reject(send)
        seen = 0

        async def counted():  # noqa: ANN202
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(send)

    async def _reject(self, send) -> None:  # noqa: ANN001
        error = TooLarge(f"the request body is over the {self.limit >> 20} MiB limit (TRTFARM_MAX_UPLOAD_MIB); "
                         "split external data or raise the limit")
        body = json.dumps(error.to_dict())
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})


class _TooLarge(Exception):
    pass
