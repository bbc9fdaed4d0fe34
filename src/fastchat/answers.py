"""The REST answers both HTTP paths give from memory: health, and each room's newest page.

`GET /api/v1/health` and the newest page of a room's history (what every page load and every
`wrk` run asks for) are answered by Litestar's handlers (app/api.py) and, on PORT, by the
front itself (front.py) without a trip through Granian and Litestar, which cost about 200 µs
a request on this machine kind (issue 14). Both take their bodies from here, so the two paths
cannot disagree: the same bytes, built by the same code, kept by the same cache.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec

from fastchat.events import CommentPage, HealthReport, RoomPage
from fastchat.health import StoreHealth
from fastchat.protocol import ProtocolError, check_name, post_id_of
from fastchat.service import Chat
from fastchat.timeparse import format_ms

_encode = msgspec.json.encode


class NewestPages:
    """Each room's (and post's) newest page, as the JSON bytes REST answers with, kept until
    the room's stored rows change. The page wrk and every page load ask for is the newest
    one, and reading, building and encoding it per request cost more than the rest of the
    request. A copy is made at the room's version read before the query and served only
    while the version is unchanged (`Delivery.versions`, bumped before a commit is
    acknowledged), so it never lacks a committed message. Clustered, another node's commit
    is known here only when its hint arrives, later than the database has it: there no
    copies are kept (`max_entries=0`)."""

    def __init__(self, versions: dict[str, int], max_entries: int = 4096) -> None:
        self._versions = versions
        self._pages: dict[tuple[str, int], tuple[int, bytes]] = {}
        self._max = max_entries

    def get(self, key: str, limit: int) -> bytes | None:
        hit = self._pages.get((key, limit))
        if hit is not None and hit[0] == self._versions.get(key, 0):
            return hit[1]
        return None

    def version(self, key: str) -> int:
        return self._versions.get(key, 0)

    def put(self, key: str, limit: int, version: int, body: bytes) -> None:
        if not self._max:
            return
        if len(self._pages) >= self._max:
            del self._pages[next(iter(self._pages))]  # the oldest entry
        self._pages[(key, limit)] = (version, body)


async def history_body(chat: Chat, pages: NewestPages, key: str, limit: int, **query: Any) -> bytes:
    """A history page's JSON: `key` is "r:<room>" or "p:<post id>", `query` the arguments of
    `History.page` (room or post_id, and the cursors). The newest page (no cursor) comes from
    `pages` while it is current, else is built and kept there. Raises what `History.page`
    raises."""
    cursorless = all(query.get(k) is None for k in ("before", "after", "since", "until"))
    version = 0
    if cursorless:
        body = pages.get(key, limit)
        if body is not None:
            return body
        version = pages.version(key)
    page = await chat.history.page(limit=limit, **query)
    if page.messages is not None:
        assert page.room is not None
        body = _encode(
            RoomPage(page.room, page.messages, len(page.messages), page.has_more, page.next)
        )
    else:
        assert page.comments is not None and page.post_id is not None
        body = _encode(
            CommentPage(page.post_id, page.comments, len(page.comments), page.has_more, page.next)
        )
    if cursorless:
        pages.put(key, limit, version, body)
    return body


class Health:
    """`GET /api/v1/health`'s status and body. The database's state is `StoreHealth`'s (as
    last observed, at most a few checks a second); the body carries the time to the
    millisecond, so it is built at most once per millisecond and state."""

    __slots__ = ("_last", "_store")

    def __init__(self, store: StoreHealth) -> None:
        self._store = store
        self._last: tuple[int, str | None, int, bytes] = (-1, None, 0, b"")

    def now_or_later(self) -> tuple[int, bytes] | Awaitable[tuple[int, bytes]]:
        """The answer, or while the database is being checked, the answer to come."""
        fresh, problem = self._store.if_fresh()
        return self._answer(problem) if fresh else self.answer()

    async def answer(self) -> tuple[int, bytes]:
        return self._answer(await self._store.problem())

    def _answer(self, problem: str | None) -> tuple[int, bytes]:
        now = time.time_ns() // 1_000_000
        last = self._last
        if last[0] == now and last[1] == problem:
            return last[2], last[3]
        stamp = format_ms(now)
        if problem is None:
            status, body = 200, HealthReport("ok", "ok", stamp)
        else:
            status, body = 503, HealthReport("unhealthy", problem, stamp)
        encoded = _encode(body)
        self._last = (now, problem, status, encoded)
        return status, encoded


# (status, JSON body), at once or later; None: not ours, Litestar answers (front.py relays it).
Answer = tuple[int, bytes]
Pending = Awaitable[Answer | None]
Route = Callable[[], Answer | Pending | None]

_HEALTH = b"/api/v1/health"
_MESSAGES = b"/api/v1/messages/"
_POSTS = b"/api/v1/posts/"


class Answers:
    """What PORT's front answers itself: `GET`/`HEAD` of `/api/v1/health`, of
    `/api/v1/messages/{room}` and of `/api/v1/posts/{id}/comments`, with no query but
    `limit`. Anything else, anything unusual (percent-encoded names, other parameters, an
    `Origin` header, which CORS must see; with tokens, a request that carries one, and any
    when tokens are required or rooms private) and anything that fails is Litestar's: the route
    or its answer is None and the front relays the request, so every error keeps Litestar's
    wording."""

    __slots__ = ("_chat", "_health", "_limit_max", "_pages")

    def __init__(self, chat: Chat, pages: NewestPages, health: Health, limit_max: int) -> None:
        self._chat = chat
        self._pages = pages
        self._health = health
        self._limit_max = limit_max

    def route(self, target: bytes, headers: bytes) -> Route | None:
        """What answers a request for `target` with these header lines (lower-cased), or
        None. Routes hold no state of their own: the front keeps them per request head."""
        if b"\r\norigin:" in headers:
            return None
        if target == _HEALTH:
            return self._health.now_or_later
        auth = self._chat.auth
        if auth.enabled and (
            auth.required
            or b"\r\nauthorization:" in headers
            or b"fastchat_token=" in headers
            or auth.private
        ):
            return None  # tokens and room rules are Litestar's (app/guards.py) to apply
        path, _, query = target.partition(b"?")
        limit = self._limit(query)
        if limit is None:
            return None
        try:
            if path.startswith(_MESSAGES):
                room = path[len(_MESSAGES) :].decode()
                if "%" in room:
                    return None
                check_name("room", room)
                return partial(self._page, "r:" + room, limit, {"room": room})
            if path.startswith(_POSTS) and path.endswith(b"/comments"):
                post_id = post_id_of(path[len(_POSTS) : -len(b"/comments")].decode())
                return partial(self._page, f"p:{post_id}", limit, {"post_id": post_id})
        except (ProtocolError, UnicodeDecodeError):
            pass
        return None

    def _limit(self, query: bytes) -> int | None:
        if not query:
            return 50
        name, _, value = query.partition(b"=")
        if name != b"limit" or not value.isdigit() or len(value) > 9:
            return None
        limit = int(value)
        return limit if 1 <= limit <= self._limit_max else None

    def _page(self, key: str, limit: int, query: dict[str, Any]) -> Answer | Pending:
        body = self._pages.get(key, limit)
        if body is not None:
            return 200, body
        return self._build(key, limit, query)

    async def _build(self, key: str, limit: int, query: dict[str, Any]) -> Answer | None:
        try:
            return 200, await history_body(self._chat, self._pages, key, limit, **query)
        except Exception:  # no such post, a store error: Litestar answers, in its words
            return None
