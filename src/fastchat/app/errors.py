"""Every error the HTTP edge answers, in one shape: `{"code": ..., "message": ...}`.

Handlers raise what they mean: a `FastchatError` (fastchat/errors.py: the protocol's checks
the socket shares, the stores' failures, a missing post), answered with its code's status
from the one table there, or Litestar's own exceptions, mapped here to the same codes
(docs/PROTOCOL.md lists them). Pages get HTML for a 404.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Template

from fastchat.app.pages import not_found_page
from fastchat.errors import ErrorCode, FastchatError

log = logging.getLogger("fastchat.http")


def _body(code: str, message: str, status: int) -> Response[Any]:
    return Response({"code": code, "message": message}, status_code=status)


def _refusal(request: Request[Any, Any, Any], exc: FastchatError) -> Response[Any]:
    return _body(exc.code, exc.message, exc.status)


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = [
        f"{p.get('key', '?')}: {p.get('message', '')}" for p in problems if isinstance(p, dict)
    ]
    message = "; ".join(parts) or str(exc.detail)
    if "json" in message.lower() and "malformed" in message.lower():
        return _body(ErrorCode.INVALID_JSON, message, 400)
    return _body(ErrorCode.INVALID_FIELD, message, 400)


# Litestar's own refusals, by status, in fastchat's codes.
_HTTP_CODES = {
    400: ErrorCode.INVALID_FIELD,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
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
    FastchatError: _refusal,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
