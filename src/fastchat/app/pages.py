"""Server-rendered pages: `/`, `/chat`, `/post/{id}` (Jinja2, autoescaped)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.response import Template

from fastchat.auth import COOKIE
from fastchat.config import Settings
from fastchat.delivery import comment_of, post_of
from fastchat.errors import FastchatError
from fastchat.protocol import ProtocolError, post_id_of
from fastchat.service import Chat

# Pages with live data: the Back button must not show a stale copy from the cache.
NO_CACHE = {"Cache-Control": "no-cache"}


def _ws_context(settings: Settings) -> dict[str, Any]:
    # The browser reaches the fast picows port by default (same host, WS_PORT); behind a
    # reverse proxy PUBLIC_WS_URL names the URL the browser should use instead. The text
    # fields count toward the server's own limit.
    return {
        "ws_port": settings.ws_port,
        "public_ws_url": settings.public_ws_url,
        "max_message_chars": settings.max_message_chars,
    }


def _identity_context(chat: Chat, request: Request[Any, Any, State]) -> dict[str, Any]:
    """The visitor's token, when the embedding site gave one (`?token=`, or the
    `fastchat_token` cookie), verified: the page then shows the token's name instead of a
    name field, and its scripts present the token to the socket and the API."""
    if not chat.auth.enabled:
        return {}
    token = request.query_params.get("token") or request.cookies.get(COOKIE)
    if not token:
        return {}
    try:
        identity = chat.auth.verify(token)
    except FastchatError as exc:
        return {"auth_error": f"{exc.message} ({exc.code})"}
    return {
        "user": identity.name,
        "token": token,
        "moderator": identity.moderator,
        "edit_window": chat.auth.edit_window_ms / 1000,
    }


def not_found_page(message: str) -> Template:
    return Template(template_name="404.html", context={"message": message}, status_code=404)


class PagesController(Controller):
    path = "/"
    include_in_schema = False

    @get("/")
    async def index(
        self, chat: Chat, settings: Settings, request: Request[Any, Any, State]
    ) -> Template:
        posts = [post_of(r) for r in await chat.store.posts()]
        return Template(
            template_name="index.html",
            context={"posts": posts, **_ws_context(settings), **_identity_context(chat, request)},
            headers=NO_CACHE,
        )

    @get("/chat", sync_to_thread=False)
    def chat_page(
        self, chat: Chat, settings: Settings, request: Request[Any, Any, State]
    ) -> Template:
        return Template(
            template_name="chat.html",
            context={
                **_ws_context(settings),
                **_identity_context(chat, request),
                "search": settings.search,  # SEARCH=false: no search card
            },
            headers=NO_CACHE,
        )

    @get("/post/{post_id:str}")
    async def post_page(
        self, chat: Chat, settings: Settings, post_id: str, request: Request[Any, Any, State]
    ) -> Template:
        try:
            row = await chat.store.post(post_id_of(post_id))
        except ProtocolError:
            row = None
        if row is None:
            return not_found_page(f"There is no post with id {post_id[:40]!s}.")
        rows, more = await chat.store.comments(row[0], 200)
        return Template(
            template_name="post.html",
            context={
                "post": post_of(row),
                "comments": [comment_of(r) for r in rows],
                "has_more": more,
                **_ws_context(settings),
                **_identity_context(chat, request),
            },
            headers=NO_CACHE,
        )
