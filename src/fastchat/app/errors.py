"""Every error the HTTP edge answers, in one shape: `{"code": ..., "message": ...}`.

Handlers raise what they mean (`ApiError`, the protocol's `ProtocolError` from the checks the
socket shares, the store's `StoreError`, Litestar's own exceptions); this module maps each to
a status and a stable code (docs/PROTOCOL.md lists them). Pages get HTML for a 404.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Template

from fastchat.app.pages import not_found_page
from fastchat.protocol import ErrorCode, ProtocolError
from fastchat.store import StoreError

log = logging.getLogger("fastchat.http")


class ApiError(Exception):
    """Answered as `{"code": ..., "message": ...}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _body(code: str, message: str, status: int) -> Response[Any]:
    return Response({"code": code, "message": message}, status_code=status)


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return _body(exc.code, exc.message, exc.status)


# The statuses of the protocol's codes that a REST check can raise; the rest are 400.
_PROTOCOL_STATUS = {ErrorCode.TOO_LARGE: 413, ErrorCode.POST_NOT_FOUND: 404}


def _protocol_error(request: Request[Any, Any, Any], exc: ProtocolError) -> Response[Any]:
    return _body(exc.code, exc.message, _PROTOCOL_STATUS.get(exc.code, 400))


def _store_error(request: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
    """A read the database could not answer (a write's refusal is mapped where it is made)."""
    return _body(ErrorCode.STORE_UNAVAILABLE, str(exc), 503)


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = [
        f"{p.get('key', '?')}: {p.get('message', '')}" for p in problems if isinstance(p, dict)
    ]
    message = "; ".join(parts) or str(exc.detail)
    if "json" in message.lower() and "malformed" in message.lower():
        return _body(ErrorCode.INVALID_JSON, message, 400)
    return _body(ErrorCode.INVALID_FIELD, message, 400)


_HTTP_CODES = {
    400: ErrorCode.INVALID_FIELD,
    404: ErrorCode.NOT_FOUND,
    405: "method_not_allowed",
    413: ErrorCode.TOO_LARGE,
    500: ErrorCode.INTERNAL,
}


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any] | Template:
    if request.url.path.startswith("/api/"):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 400 and "json" in str(exc.detail).lower():
            code = ErrorCode.INVALID_JSON
        return _body(code, str(exc.detail), exc.status_code)
    if exc.status_code == 404:
        return not_found_page("This page does not exist.")
    return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """msgspec refuses JSON nested deeper than the interpreter's recursion limit this way."""
    return _body(ErrorCode.INVALID_JSON, "invalid JSON: nested too deeply", 400)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug: logged with its traceback, answered with the documented shape, never a 500 page
    of the framework's."""
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _body(ErrorCode.INTERNAL, "internal error; the server log has the details", 500)


EXCEPTION_HANDLERS: Any = {
    ApiError: _api_error,
    ProtocolError: _protocol_error,
    StoreError: _store_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
