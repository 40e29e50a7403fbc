"""ASGI guards in front of every route: the upload size limit, enforced while the body streams in (not after
it has been stored), and NUL characters in paths and queries."""

from __future__ import annotations

import json

from registry.errors import InvalidRequest, TooLarge


class BodySizeLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 as soon as it crosses it. `paths`:
    path -> (limit, its setting, what to do) for the routes with a limit of their own."""

    def __init__(self, app, limit: int, paths: dict[str, tuple[int, str, str]] | None = None) -> None:  # noqa: ANN001
        self.app, self.limit, self.paths = app, limit, paths or {}

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        limit, setting, hint = self.paths.get(scope["path"].rstrip("/"), (
            self.limit, "TRTFARM_MAX_UPLOAD_MIB", "split external data or raise the limit"))
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and int(declared) > limit:
            return await self._reject(send, limit, setting, hint)
        seen = 0

        async def counted():  # noqa: ANN202
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(send, limit, setting, hint)

    async def _reject(self, send, limit: int, setting: str, hint: str) -> None:  # noqa: ANN001
        error = TooLarge(f"the request body is over the {limit >> 20} MiB limit ({setting}); {hint}")
        body = json.dumps(error.to_dict())
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})


class _TooLarge(Exception):
    pass


class RejectNul:
    """ASGI middleware: a NUL character in the path or the query (raw or %00) is a 422 JSON error before any
    route sees it: no database stores one, and no id or name contains one."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
            query = scope.get("query_string", b"")
            if b"\x00" in raw or b"%00" in raw or b"\x00" in query or b"%00" in query or "\x00" in scope["path"]:
                error = InvalidRequest("the request's path or query contains a NUL character (%00); "
                                       "no id, name or parameter of this API has one")
                body = json.dumps(error.to_dict()).encode()
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
