"""`HEAD` wherever `GET` answers (RFC 9110 9.3.2), for monitors and `curl -I`.

Litestar routes a HEAD to a GET handler as 405; this ASGI wrapper, outside the router, runs
the GET and sends its status and headers (Content-Length included) without the body. Not
for the original's GET test endpoints, which store: a HEAD must be safe.
"""

from __future__ import annotations

from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any


class HeadAsGet:
    def __init__(self, app: Any, unsafe_prefix: str = "/api/v1/test/") -> None:
        self.app = app
        self._unsafe = unsafe_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "HEAD"
            or scope["path"].startswith(self._unsafe)
        ):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body"):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
