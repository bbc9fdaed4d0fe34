"""The HTTP edge: a Litestar app for pages, REST and the original `ws://host:PORT/ws`.

Composed here from its parts (`pages`, `api`, `ws`); the chat service and settings come in
as dependencies. Never touches picows: the fast WebSocket port lives in `fastport.py`.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from prometheus_client import CollectorRegistry

from fastchat.app.api import ApiError, api_router, metrics_endpoint
from fastchat.app.pages import PagesController, not_found_page
from fastchat.app.ws import conformance_echo, legacy_ws
from fastchat.config import Settings
from fastchat.service import Chat
from fastchat.store import StoreError

_PACKAGE = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    """`templates` or `static`: inside the package when installed from a wheel, else the
    repository's top-level folder (editable installs and source checkouts)."""
    packaged = _PACKAGE / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent.parent / name


def _api_error(request: Request[object, object, State], exc: ApiError) -> Response[object]:
    return Response({"code": exc.code, "message": exc.message}, status_code=exc.status)


def _store_error(request: Request[object, object, State], exc: StoreError) -> Response[object]:
    """A read the database could not answer (a write's refusal is mapped where it is made)."""
    return Response({"code": "store_unavailable", "message": str(exc)}, status_code=503)


def _validation_error(
    request: Request[object, object, State], exc: ValidationException
) -> Response[object]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    parts = [
        f"{p.get('key', '?')}: {p.get('message', '')}" for p in problems if isinstance(p, dict)
    ]
    message = "; ".join(parts) or str(exc.detail)
    return Response({"code": "invalid_field", "message": message}, status_code=400)


_HTTP_CODES = {
    400: "invalid_field",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    500: "internal_error",
}


def _http_error(
    request: Request[object, object, State], exc: HTTPException
) -> Response[object] | Template:
    if request.url.path.startswith("/api/"):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        if exc.status_code == 400 and "json" in str(exc.detail).lower():
            code = "invalid_json"
        return Response({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)
    if exc.status_code == 404:
        return not_found_page("This page does not exist.")
    return Response(str(exc.detail), status_code=exc.status_code, media_type="text/plain")


def create_app(
    chat: Chat, settings: Settings, registry: CollectorRegistry | None = None
) -> Litestar:
    registry = registry or CollectorRegistry()
    testing_only = [conformance_echo] if settings.conformance_echo else []
    return Litestar(
        route_handlers=[
            *testing_only,
            PagesController,
            api_router,
            legacy_ws,
            metrics_endpoint,
            create_static_files_router(path="/static", directories=[asset_dir("static")]),
        ],
        dependencies={
            "chat": Provide(lambda: chat, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
        },
        template_config=TemplateConfig(
            directory=asset_dir("templates"), engine=JinjaTemplateEngine
        ),
        exception_handlers={
            ApiError: _api_error,
            StoreError: _store_error,
            ValidationException: _validation_error,
            NotFoundException: _http_error,
            HTTPException: _http_error,
        },
        openapi_config=None,
        debug=False,
    )
