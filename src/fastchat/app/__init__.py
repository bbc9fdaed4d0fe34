"""The HTTP edge: a Litestar app for pages and REST.

Composed here from its parts (`pages`, `api`, `guards`, `errors`); the chat service and
settings come in as dependencies. Never touches picows: both WebSocket URLs are picows'
(`fastport.py`; PORT's `/ws` reaches it through `front.py`, never through this app).
"""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from prometheus_client import CollectorRegistry

from fastchat import __version__
from fastchat.answers import Health, NewestPages
from fastchat.app.api import api_router, metrics_endpoint, test_router
from fastchat.app.errors import EXCEPTION_HANDLERS
from fastchat.app.guards import cors_for
from fastchat.app.pages import PagesController
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


@get("/embed.js", sync_to_thread=False, include_in_schema=False)
def embed_script() -> File:
    """The comments widget other sites embed (`<script src=".../embed.js" async>`): at the
    root, a stable address for them; it loads /static/js/fastchat-client.js itself."""
    return File(
        asset_dir("static") / "embed.js",
        media_type="text/javascript; charset=utf-8",
        content_disposition_type="inline",
        headers={"Cache-Control": "no-cache"},
    )


def create_app(
    chat: Chat,
    settings: Settings,
    registry: CollectorRegistry | None = None,
    readiness: Readiness | None = None,
    newest_pages: NewestPages | None = None,
    health: Health | None = None,
) -> Litestar:
    """`newest_pages` and `health`: shared with PORT's front (server.py), which answers the
    same requests from the same bytes."""
    registry = registry or CollectorRegistry()
    newest_pages = newest_pages or NewestPages(
        chat.delivery.versions, 0 if chat.clustered else 4096
    )
    health = health or Health(chat.store_health)
    readiness = readiness or Readiness()
    return Litestar(
        route_handlers=[
            PagesController,
            api_router,
            *([test_router] if settings.test_endpoints else []),
            metrics_endpoint,
            embed_script,
            create_static_files_router(path="/static", directories=[asset_dir("static")]),
        ],
        dependencies={
            "chat": Provide(lambda: chat, use_cache=True, sync_to_thread=False),
            "settings": Provide(lambda: settings, use_cache=True, sync_to_thread=False),
            "registry": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
            "newest_pages": Provide(lambda: newest_pages, use_cache=True, sync_to_thread=False),
            "readiness": Provide(lambda: readiness, use_cache=True, sync_to_thread=False),
            "health": Provide(lambda: health, use_cache=True, sync_to_thread=False),
        },
        template_config=TemplateConfig(
            directory=asset_dir("templates"), engine=JinjaTemplateEngine
        ),
        exception_handlers=EXCEPTION_HANDLERS,
        # For the guards: same_site_writes (origins) and token_holders (auth).
        state=State({"origins": settings.origins, "auth": chat.auth}),
        cors_config=cors_for(settings),
        # /schema: the API's description (Swagger UI), /schema/openapi.json: the document.
        openapi_config=OpenAPIConfig(
            title="fastchat",
            version=__version__,
            description="Pages, REST and the WebSocket protocol: docs/PROTOCOL.md.",
            path="/schema",
            use_handler_docstrings=True,
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin()],
        ),
        debug=False,
    )
