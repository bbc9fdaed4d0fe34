"""The HTTP edge: a Litestar app for pages, REST and the original `ws://host:PORT/ws`.

Composed here from its parts (`pages`, `api`, `ws`); the chat service and settings come in
as dependencies. Never touches picows: the fast WebSocket port lives in `fastport.py`.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar
from litestar.di import Provide
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from prometheus_client import CollectorRegistry

from fastchat.app.api import api_router, metrics_endpoint, test_router
from fastchat.app.errors import EXCEPTION_HANDLERS
from fastchat.app.guards import cors_for, same_site_writes
from fastchat.app.pages import PagesController
from fastchat.app.ws import conformance_echo, legacy_ws
from fastchat.config import Settings
from fastchat.lifecycle import Readiness
from fastchat.service import Chat

_PACKAGE = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    """`templates` or `static`: inside the package when installed from a wheel, else the
    repository's top-level folder (editable installs and source checkouts)."""
    packaged = _PACKAGE / name
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent.parent / name


def create_app(
    chat: Chat,
    settings: Settings,
    registry: CollectorRegistry | None = None,
    readiness: Readiness | None = None,
) -> Litestar:
    registry = registry or CollectorRegistry()
    readiness = readiness or Readiness()
    testing_only = [conformance_echo] if settings.conformance_echo else []
    return Litestar(
        route_handlers=[
            *testing_only,
            PagesController,
            api_router,
            *([test_router] if settings.test_endpoints else []),
            legacy_ws,
            metrics_endpoint,
            create_static_files_router(path="/static", directories=[asset_dir("static")]),
        ],
        dependencies={
            "chat": Provide(lambda: chat, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
            "readiness": Provide(lambda: readiness, use_cache=True, sync_to_thread=False),
        },
        template_config=TemplateConfig(
            directory=asset_dir("templates"), engine=JinjaTemplateEngine
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        guards=[same_site_writes(settings)],
        cors_config=cors_for(settings),
        openapi_config=None,
        debug=False,
    )
