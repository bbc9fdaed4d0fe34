"""REST under /api/v1: the original's endpoints and the ones a deployment needs beside them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

import msgspec
from litestar import Controller, MediaType, Response, Router, delete, get, patch, post, put
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from fastchat.answers import Health, NewestPages, history_body
from fastchat.app.guards import identity, same_site_writes, token_holders
from fastchat.auth import Identity, name_for
from fastchat.config import Settings
from fastchat.delivery import comment_of, post_of
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import (
    BanList,
    BanRecord,
    BanRequest,
    ClientId,
    Comment,
    CommentEditRequest,
    CommentPage,
    ErrorBody,
    HealthReport,
    Message,
    MessageEditRequest,
    Post,
    PostList,
    PostWithComments,
    ReadyReport,
    RoomPage,
    SearchPage,
    SendComment,
    SendMessage,
)
from fastchat.lifecycle import Readiness
from fastchat.moderation import EVERYWHERE, Ban
from fastchat.protocol import check, check_limit, check_name, check_text, post_id_of
from fastchat.service import Chat, now_ms
from fastchat.store import OP_DELETE_COMMENT, OP_DELETE_MESSAGE, OP_EDIT_COMMENT, OP_EDIT_MESSAGE
from fastchat.timeparse import format_ms

Limit = Annotated[int | None, Parameter(description="How many items (default 50).")]
Cursor = Annotated[int | None, Parameter(ge=0, le=2**63 - 1, description="An item id.")]
ItemId = Annotated[int, Parameter(ge=1, le=2**63 - 1, description="The item's id.")]
TimeParam = Annotated[
    str | None,
    Parameter(
        description="A time: RFC 3339 / ISO 8601, 'YYYY-MM-DD HH:MM:SS', or Unix s/ms/us/ns."
    ),
]


def refusals(*statuses: int, ok: tuple[int, type] | None = None) -> dict[int, ResponseSpec]:
    """The OpenAPI responses of a route: its refusals' body (`ErrorBody`, the code's status
    from errors.py) and, for a route that answers encoded bytes, the Struct they encode."""
    spec = {s: ResponseSpec(ErrorBody, description=_REFUSED[s]) for s in (400, *statuses)}
    if ok is not None:
        spec[ok[0]] = ResponseSpec(ok[1], description="OK")
    return spec


_REFUSED = {
    400: "Refused: a parameter or the body is invalid (`invalid_field`, `invalid_json`, "
    "`invalid_time`)",
    401: "No token where one is needed (`unauthorized`), or a token refused (`token_*`)",
    403: "Refused: a browser write from another site (`origin_refused`); with tokens, a "
    "private or read-only room (`forbidden_room`, `read_only_room`), another name "
    "(`name_mismatch`), someone else's item (`not_author`) or past the edit window "
    "(`edit_window_closed`)",
    404: "No such post (`post_not_found`), or no such item, or deleted (`not_found`)",
    413: "The text is over MAX_MESSAGE_CHARS, or the body too large (`too_large`)",
    415: "The body is not sent as application/json (`unsupported_media_type`)",
    503: "The database could not be written or read (`store_unavailable`)",
}
_WRITE = (401, 403, 413, 415, 503)
_CHANGE = (401, 403, 404, 413, 415, 503)


async def _page(
    chat: Chat,
    cache: NewestPages,
    settings: Settings,
    limit: int | None,
    key: str,
    **query: Any,
) -> Response[bytes]:
    # No such post (NotFoundError) and the store's failures are answered by errors.py.
    body = await history_body(chat, cache, key, _limit(limit, settings), **query)
    return Response(body, media_type=MediaType.JSON)


def _limit(limit: int | None, settings: Settings) -> int:
    return 50 if limit is None else check_limit(limit, settings.limits)


async def _store_message(
    chat: Chat, event: SendMessage, settings: Settings, identity: Identity | None, default: str = ""
) -> Message:
    """A message sent over REST: the socket's event, checked by the socket's rules (and,
    with tokens, the name and room rules)."""
    check(event, settings.limits)
    user = name_for(identity, event.user, default)
    chat.auth.check_publish(identity, event.room)
    return await chat.post_message(
        event.room, user, event.message, event.client_id, None if identity is None else identity.sub
    )


async def _store_comment(
    chat: Chat, event: SendComment, settings: Settings, identity: Identity | None, default: str = ""
) -> Comment:
    check(event, settings.limits)
    return await chat.post_comment(
        post_id_of(event.post_id),
        name_for(identity, event.user, default),
        event.comment,
        event.client_id,
        None if identity is None else identity.sub,
    )


class NewMessage(msgspec.Struct):
    user: str
    message: str
    client_id: ClientId | None = None


class NewComment(msgspec.Struct):
    user: str
    comment: str
    client_id: ClientId | None = None


class NewPost(msgspec.Struct):
    title: str
    content: str
    author: str = "anonymous"


class NewThread(msgspec.Struct):
    title: str = ""
    url: str = ""


# A thread's slug: what a site writes in `data-fastchat-thread` (one path segment).
_SLUG: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}")


class SystemController(Controller):
    path = "/"

    @get(
        "/health",
        responses={
            200: ResponseSpec(HealthReport, description="The database answers"),
            503: ResponseSpec(HealthReport, description="The database does not answer"),
        },
    )
    async def health(self, health: Health) -> Response[bytes]:
        """Liveness: whether the database answers (as last observed, at most a few checks a
        second)."""
        status, body = await health.answer()
        return Response(body, status_code=status, media_type=MediaType.JSON)

    @get(
        "/ready",
        responses={503: ResponseSpec(ReadyReport, description="Not ready: starting or draining")},
    )
    async def ready(self, readiness: Readiness) -> Response[ReadyReport]:
        """Readiness (route traffic here?), beside /health (liveness: is it working?)."""
        reason = readiness.reason()
        if reason is None:
            return Response(ReadyReport("ready"))
        return Response(ReadyReport(readiness.state, reason), status_code=503)

    @get("/stats")
    async def stats(self, chat: Chat) -> dict[str, Any]:
        return await chat.stats()


# A handler's `identity`: the request's verified token (guards.token_holders), or None.
_TOKENS: Final = {"identity": Provide(identity, sync_to_thread=False)}


class MessagesController(Controller):
    path = "/messages"

    @get("/{room:str}", responses=refusals(401, 403, 503, ok=(200, RoomPage)))
    async def history(
        self,
        chat: Chat,
        newest_pages: NewestPages,
        settings: Settings,
        identity: Identity | None,
        room: str,
        limit: Limit = None,
        before: Cursor = None,
        after: Cursor = None,
        since: TimeParam = None,
        until: TimeParam = None,
    ) -> Response[bytes]:
        check_name("room", room)
        chat.auth.check_join(identity, room)
        return await _page(
            chat,
            newest_pages,
            settings,
            limit,
            "r:" + room,
            room=room,
            before=before,
            after=after,
            since=since,
            until=until,
        )

    @post("/{room:str}", status_code=201, guards=[same_site_writes], responses=refusals(*_WRITE))
    async def create(
        self, chat: Chat, settings: Settings, identity: Identity | None, room: str, data: NewMessage
    ) -> Message:
        event = SendMessage(room, data.user, data.message, data.client_id)
        return await _store_message(chat, event, settings, identity)

    @patch("/{room:str}/{message_id:int}", guards=[same_site_writes], responses=refusals(*_CHANGE))
    async def edit(
        self,
        chat: Chat,
        settings: Settings,
        identity: Identity | None,
        room: str,
        message_id: ItemId,
        data: MessageEditRequest,
    ) -> Message:
        """Edit a message: its author (by token) within EDIT_WINDOW_SECONDS, or a moderator.
        Every member of the room sees MESSAGE_EDITED."""
        check_name("room", room)
        check_text("message", data.message, settings.limits)
        edited = await chat.change(OP_EDIT_MESSAGE, message_id, room, identity, data.message)
        assert isinstance(edited, Message)
        return edited

    @delete(
        "/{room:str}/{message_id:int}",
        status_code=200,
        guards=[same_site_writes],
        responses=refusals(*_CHANGE),
    )
    async def remove(
        self, chat: Chat, identity: Identity | None, room: str, message_id: ItemId
    ) -> Message:
        """Delete a message (same rules as editing): its tombstone, without its text."""
        check_name("room", room)
        deleted = await chat.change(OP_DELETE_MESSAGE, message_id, room, identity)
        assert isinstance(deleted, Message)
        return deleted


class PostsController(Controller):
    path = "/posts"

    @get("/")
    async def list_posts(self, chat: Chat) -> PostList:
        posts = [post_of(r) for r in await chat.store.posts()]
        return PostList(posts, len(posts))

    @post("/", status_code=201, guards=[same_site_writes], responses=refusals(*_WRITE))
    async def create_post(self, chat: Chat, identity: Identity | None, data: NewPost) -> Post:
        title = data.title.strip()
        if not title or len(title) > 200:
            raise FastchatError(ErrorCode.INVALID_FIELD, "title must be 1-200 characters")
        if not data.content.strip() or len(data.content) > 20000:
            raise FastchatError(ErrorCode.INVALID_FIELD, "content must be 1-20000 characters")
        author = name_for(identity, check_name("author", data.author), "anonymous")
        return await chat.create_post(title, data.content, author)

    @get("/{post_id:str}", responses=refusals(404, 503))
    async def get_post(
        self, chat: Chat, settings: Settings, post_id: str, limit: Limit = None
    ) -> PostWithComments:
        pid = post_id_of(post_id)
        row = await chat.store.post(pid)
        if row is None:
            raise FastchatError(ErrorCode.POST_NOT_FOUND, f"post {pid} does not exist")
        rows, more = await chat.store.comments(pid, _limit(limit, settings))
        return PostWithComments(post_of(row), [comment_of(r) for r in rows], more)

    @get("/{post_id:str}/comments", responses=refusals(404, 503, ok=(200, CommentPage)))
    async def list_comments(
        self,
        chat: Chat,
        newest_pages: NewestPages,
        settings: Settings,
        post_id: str,
        limit: Limit = None,
        before: Cursor = None,
        after: Cursor = None,
        since: TimeParam = None,
        until: TimeParam = None,
    ) -> Response[bytes]:
        pid = post_id_of(post_id)
        return await _page(
            chat,
            newest_pages,
            settings,
            limit,
            f"p:{pid}",
            post_id=pid,
            before=before,
            after=after,
            since=since,
            until=until,
        )

    @post(
        "/{post_id:str}/comments",
        status_code=201,
        guards=[same_site_writes],
        responses=refusals(404, *_WRITE),
    )
    async def create_comment(
        self,
        chat: Chat,
        settings: Settings,
        identity: Identity | None,
        post_id: str,
        data: NewComment,
    ) -> Comment:
        event = SendComment(post_id_of(post_id), data.user, data.comment, data.client_id)
        return await _store_comment(chat, event, settings, identity)

    @patch(
        "/{post_id:str}/comments/{comment_id:int}",
        guards=[same_site_writes],
        responses=refusals(*_CHANGE),
    )
    async def edit_comment(
        self,
        chat: Chat,
        settings: Settings,
        identity: Identity | None,
        post_id: str,
        comment_id: ItemId,
        data: CommentEditRequest,
    ) -> Comment:
        """Edit a comment: its author (by token) within EDIT_WINDOW_SECONDS, or a moderator."""
        check_text("comment", data.comment, settings.limits)
        edited = await chat.change(
            OP_EDIT_COMMENT, comment_id, post_id_of(post_id), identity, data.comment
        )
        assert isinstance(edited, Comment)
        return edited

    @delete(
        "/{post_id:str}/comments/{comment_id:int}",
        status_code=200,
        guards=[same_site_writes],
        responses=refusals(*_CHANGE),
    )
    async def remove_comment(
        self, chat: Chat, identity: Identity | None, post_id: str, comment_id: ItemId
    ) -> Comment:
        """Delete a comment (same rules as editing): its tombstone, without its text."""
        deleted = await chat.change(OP_DELETE_COMMENT, comment_id, post_id_of(post_id), identity)
        assert isinstance(deleted, Comment)
        return deleted


class SearchController(Controller):
    path = "/search"

    @get("/", responses=refusals(401, 403, 503))
    async def search(
        self,
        chat: Chat,
        identity: Identity | None,
        q: Annotated[str, Parameter(description="The words to find (all of them).")],
        room: Annotated[str | None, Parameter(description="Only this room's messages.")] = None,
        post_id: Annotated[str | None, Parameter(description="Only this post's comments.")] = None,
        limit: Annotated[int, Parameter(description="Hits per page, 1-100.")] = 20,
        cursor: Annotated[
            str | None, Parameter(description="The `next` of the page before.")
        ] = None,
    ) -> SearchPage:
        """Full-text search over messages and comments, best match first, with snippets;
        private rooms' messages only for those who may read them; deleted items never."""
        if room is not None:
            check_name("room", room)
        return await chat.search.page(
            identity,
            q,
            room=room,
            post_id=None if post_id is None else post_id_of(post_id),
            limit=limit,
            cursor=cursor,
        )


class ThreadsController(Controller):
    """The embeddable widget's threads (static/embed.js): a site names a thread by a slug;
    the post that holds its comments is made on first use, from the page's title and URL."""

    path = "/threads"

    @put("/{slug:str}", guards=[same_site_writes], responses=refusals(*_WRITE))
    async def thread(
        self, chat: Chat, identity: Identity | None, slug: str, data: NewThread
    ) -> Post:
        """The post of thread `slug`, made now if it has none (200 either way: PUT is
        idempotent; the title and URL of a later call change nothing)."""
        if not _SLUG.fullmatch(slug):
            raise FastchatError(
                ErrorCode.INVALID_FIELD,
                "slug must be 1-128 letters, digits and . _ ~ : -, starting with one of the "
                "first two",
            )
        title = " ".join(data.title.split())[:200] or slug
        if len(data.url) > 2000:
            raise FastchatError(ErrorCode.INVALID_FIELD, "url must be at most 2000 characters")
        content = data.url.strip() or title
        author = name_for(identity, "anonymous", "anonymous")
        return await chat.create_post(title, content, author, slug)


def _moderator(identity: Identity | None) -> Identity:
    if identity is None or not identity.moderator:
        raise FastchatError(ErrorCode.FORBIDDEN, "moderators only: a token with role moderator")
    return identity


def _record(ban: Ban) -> BanRecord:
    until = None if ban.until_ms is None else format_ms(ban.until_ms)
    return BanRecord(ban.sub, ban.room, ban.kind, until, ban.by, ban.reason, format_ms(ban.ts))


class AdminController(Controller):
    """Moderation: bans and mutes of token users (a token with role moderator or admin)."""

    path = "/admin"

    @get("/bans", responses=refusals(401, 403))
    async def list_bans(self, chat: Chat, identity: Identity | None) -> BanList:
        """The bans and mutes in force."""
        _moderator(identity)
        bans = [_record(b) for b in chat.moderation.in_force(now_ms())]
        return BanList(bans, len(bans))

    @post("/bans", status_code=201, guards=[same_site_writes], responses=refusals(*_WRITE))
    async def add_ban(self, chat: Chat, identity: Identity | None, data: BanRequest) -> BanRecord:
        """Ban (out of the room at once, joins and sends refused `banned`) or mute (sends
        refused `muted`) a user by `sub`, in a room or everywhere, for `seconds` or for good."""
        moderator = _moderator(identity)
        if data.room != EVERYWHERE:
            check_name("room", data.room)
        ban = await chat.ban(
            data.sub, data.room, data.kind, data.seconds, moderator.sub, data.reason
        )
        return _record(ban)

    @delete(
        "/bans/{sub:str}",
        status_code=200,
        guards=[same_site_writes],
        responses=refusals(401, 403, 404, 503),
    )
    async def lift_ban(
        self,
        chat: Chat,
        identity: Identity | None,
        sub: str,
        room: str = EVERYWHERE,
        kind: Literal["ban", "mute"] = "ban",
    ) -> BanRecord:
        """Lift a ban or mute (`room` and `kind` say which; default: the ban everywhere)."""
        _moderator(identity)
        lifted = await chat.unban(sub, room, kind)
        if lifted is None:
            raise FastchatError(ErrorCode.NOT_FOUND, f"no {kind} of {sub!r} in {room!r}")
        return _record(lifted)


class TestController(Controller):
    """The original's GET endpoints that store and broadcast (handy with curl)."""

    path = "/test"

    @get("/message", guards=[same_site_writes])  # it stores on GET
    async def message(
        self,
        chat: Chat,
        settings: Settings,
        identity: Identity | None,
        room: str = "general",
        message: str = "Hello from the test endpoint",
        user: str = "testuser",
    ) -> dict[str, Any]:
        stored = await _store_message(
            chat, SendMessage(room, user, message), settings, identity, "testuser"
        )
        return {"status": "sent", "message": stored}

    @get("/comment", guards=[same_site_writes])
    async def comment(
        self,
        chat: Chat,
        settings: Settings,
        identity: Identity | None,
        post_id: str = "1",
        comment: str = "Test comment",
        user: str = "testuser",
    ) -> dict[str, Any]:
        event = SendComment(post_id_of(post_id), user, comment)
        stored = await _store_comment(chat, event, settings, identity, "testuser")
        return {"status": "sent", "comment": stored}


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def metrics_endpoint(registry: CollectorRegistry) -> Response[bytes]:
    """Prometheus text format (the client library's own exposition)."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


api_router = Router(
    path="/api/v1",
    route_handlers=[
        SystemController,
        # The rooms' and posts' API: tokens verified (and required with AUTH_REQUIRED);
        # health, readiness and stats stay open to probes.
        Router(
            path="/",
            route_handlers=[
                MessagesController,
                PostsController,
                ThreadsController,
                AdminController,
                SearchController,
            ],
            guards=[token_holders],
            dependencies=_TOKENS,
        ),
    ],
)
# Off with TEST_ENDPOINTS=false: they store on GET, which no production API should.
test_router = Router(
    path="/api/v1", route_handlers=[TestController], guards=[token_holders], dependencies=_TOKENS
)
