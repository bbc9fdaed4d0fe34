"""Who may write through REST: browser pages of allowed origins, and programs.

A page on another site can make its visitor's browser send requests here with the visitor's
network position (and cookies, should a deployment add any). Browsers let such a page send a
"simple" request without asking first: GET, or POST with `text/plain`, form or multipart
bodies. So a write:

- must carry `Content-Type: application/json` (415 `unsupported_media_type` otherwise; a
  POST, or the widget's PUT of a thread): a JSON content type is not "simple", so a
  cross-site page can only send it after a CORS preflight, which only `ALLOWED_ORIGINS` pass;
- from a browser, must come from an origin the sockets would accept (`protocol.origin_allowed`,
  the same rule, the same setting): 403 `origin_refused` otherwise. A request without `Origin`
  is a program's (curl, scripts) and passes, unless the browser's Fetch Metadata says it came
  from another site (an `<img src>` on the original's GET test endpoints sends no Origin).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.config.cors import CORSConfig
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from fastchat.auth import COOKIE, Auth, Identity
from fastchat.config import Settings
from fastchat.errors import ErrorCode, FastchatError
from fastchat.protocol import origin_allowed


async def same_site_writes(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of every handler that stores something: the POSTs, and the original's GET
    test endpoints. Async on purpose: Litestar runs a sync guard in a worker thread, and
    only on these handlers: it copies the handler for each guard call (both measured on
    wrk: as an app-wide sync guard it cost GET /health half its rate)."""
    origins: frozenset[str] = connection.app.state["origins"]
    headers = connection.headers
    writes_body = connection.scope["method"] in ("POST", "PUT")  # type: ignore[typeddict-item]
    if isinstance(connection, Request) and writes_body:
        # Read before any refusal: a server that answers with the body unread must close
        # the connection, and a client that reuses it meanwhile sees it drop without an
        # answer (seen with httpx when the body came in a segment of its own).
        await connection.body()
    origin = headers.get("origin")
    if origin is not None:
        if not origin_allowed(origin, headers.get("host"), origins):
            raise FastchatError(
                ErrorCode.ORIGIN_REFUSED,
                f"writes from origin {origin[:100]!r} are not allowed",
            )
    elif headers.get("sec-fetch-site") == "cross-site" and "*" not in origins:
        raise FastchatError(ErrorCode.ORIGIN_REFUSED, "writes from another site are not allowed")
    if not writes_body:
        return
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise FastchatError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"send the body as application/json, not {media_type or 'no content type'!r}",
        )


async def token_holders(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of the rooms' and posts' API: a request's token (`Authorization: Bearer`,
    or the `fastchat_token` cookie an embedding site sets) is verified, and its identity
    kept for the handler (`identity` below); with AUTH_REQUIRED, a request without one is
    refused (401 `unauthorized`). Without tokens configured it does nothing."""
    auth: Auth = connection.app.state["auth"]
    if not auth.enabled:
        return
    token = None
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise FastchatError(
                ErrorCode.UNAUTHORIZED, "send the token as `Authorization: Bearer ...`"
            )
        token = value.strip()
    else:
        token = connection.cookies.get(COOKIE) or None
    if token is None:
        if auth.required:
            raise FastchatError(
                ErrorCode.UNAUTHORIZED, "this server needs a token: `Authorization: Bearer ...`"
            )
        return
    connection.scope.setdefault("state", {})["identity"] = auth.verify(token)


def identity(request: Request[Any, Any, Any]) -> Identity | None:
    """The verified identity of the request (after `token_holders`), or None: anonymous."""
    found: Identity | None = request.scope.get("state", {}).get("identity")
    return found


def cors_for(settings: Settings) -> CORSConfig | None:
    """CORS headers for the origins listed in ALLOWED_ORIGINS (sites that embed fastchat);
    none when nothing is listed: only the server's own pages use the API from a browser."""
    if not settings.origins:
        return None
    return CORSConfig(
        allow_origins=sorted(settings.origins),
        allow_methods=["GET", "HEAD", "POST", "PUT", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization"],
        max_age=600,
    )
