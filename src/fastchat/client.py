"""An asyncio client for fastchat's WebSocket protocol (docs/PROTOCOL.md), on picows.

    async with connect("ws://localhost:8080/ws") as chat:
        await chat.join("general", user="alice")
        msg = await chat.send("general", "hello")
        async for event in chat:
            ...

What it guarantees, so scripts need not:

- **Idempotent sends.** Every `send` / `comment` carries a fresh `client_id`; it resolves with
  the stored event (the server's echo is the acknowledgement) and is sent again, with the same
  `client_id`, after every reconnect until acknowledged. The server stores it once.
- **Reconnect** with full-jitter exponential backoff (`backoff_base`, `backoff_cap`).
- **Gap-free resume.** After a reconnect every room and post is joined again with `last_id` set
  to the last id seen there; the server replays what was missed. Events already seen (id not
  above the last one) are not yielded again: each message reaches the iterator once, in order.

Only `fastchat.events` and `fastchat.errors` are imported: no server module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import (
    AnyServerEvent,
    CommentDeleted,
    CommentEdited,
    CommentEvent,
    ErrorEvent,
    HistoryPage,
    MembersPage,
    MessageDeleted,
    MessageEdited,
    MessageEvent,
    PostJoined,
    PostLeft,
    RoomJoined,
    RoomLeft,
    encode,
    server_decoder,
)

__all__ = ["Client", "ClientClosedError", "FastchatError", "connect"]

log = logging.getLogger("fastchat.client")

DEFAULT_URL: Final = "ws://localhost:8080/ws"


class ClientClosedError(ConnectionError):
    """The client was closed (or could not connect) before the operation completed."""


@dataclass
class _Scope:
    """A room or post this client is in: rejoined after a reconnect from `last_id`."""

    user: str
    last_id: int | None = None
    # The newest edit or deletion seen (the join's `last_change`, or a change event's):
    # a resume replays the ones after it.
    last_change: int | None = None
    joined_on: int = 0  # the connection (self._conn) its join was answered on


@dataclass
class _Pending:
    """A send not yet acknowledged: its frame is sent again until its echo comes back."""

    frame: bytes
    scope: str  # "r:<room>" or "p:<post_id>"
    future: asyncio.Future[Any] = field(repr=False)
    sent_on: int = 0  # the connection it was last written on


def _post_key(post_id: int | str) -> str:
    return f"p:{int(post_id)}"


def _token_name(token: str) -> str | None:
    """The name a token gives its holder (`name`, else `sub`), read without verifying it:
    the server verifies; this only picks the name it will expect."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    name = claims.get("name") or claims.get("sub")
    return name if isinstance(name, str) and name else None


def _with_token(url: str, token: str | None) -> str:
    if token is None:
        return url
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query), ("token", token)]
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Listener(WSListener):
    """One connection's frames, decoded and handed to the client."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client
        self._fragments: list[bytes] | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.TEXT and frame.fin and self._fragments is None:
            self._client._on_text(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.TEXT:
            self._fragments = [frame.get_payload_as_bytes()]
        elif kind == WSMsgType.CONTINUATION and self._fragments is not None:
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._client._on_text(data)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._client._on_disconnected(self)


class Client:
    """A fastchat connection that survives reconnects. Build it with `connect(...)`.

    Every server event is queued for `async for` until read (the queue is not bounded: a
    program that never iterates, such as `fastchat send`, should stay short-lived). The first
    connect raises if it fails; after that the client reconnects by itself until `close()`.
    An `ERROR` naming no `client_id` (a refused join, leave or read) fails the oldest awaited
    answer, as the server answers those in the order they were sent."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        user: str | None = None,
        backoff_base: float = 0.1,
        backoff_cap: float = 10.0,
        timeout: float = 10.0,
        ping_interval: float = 20.0,
    ) -> None:
        self.url = _with_token(url, token)
        # The default name of sends and joins: with a token, the token's (the server refuses
        # any other with name_mismatch); else "anonymous", as the server's default.
        self.user = user or (_token_name(token) if token else None) or "anonymous"
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.timeout = timeout  # connect, and each answer awaited (join, history, members)
        self.ping_interval = ping_interval
        self.reconnects = 0
        self._rooms: dict[str, _Scope] = {}  # "r:<room>" / "p:<post_id>" -> scope
        self._pending: dict[str, _Pending] = {}  # client_id -> send, in send order
        self._requests: dict[str, tuple[bytes, asyncio.Future[Any]]] = {}  # request_id -> req
        self._conn = 0  # which connection this is (1, 2, ...): what was sent or joined on it
        # Joins and leaves awaiting their answer, by scope key; and every awaited answer in
        # send order, so an ERROR that names no client_id fails the oldest (the server answers
        # in order, reads aside: PROTOCOL.md, "Answers that read the database").
        self._answers: dict[str, list[asyncio.Future[Any]]] = {}
        self._order: deque[asyncio.Future[Any]] = deque()
        self._events: asyncio.Queue[AnyServerEvent | None] = asyncio.Queue()
        self._transport: WSTransport | None = None
        self._listener: _Listener | None = None
        self._ready = asyncio.Event()  # connected, and every room rejoined
        self._lost: asyncio.Event = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> Client:
        """Connect (raising if the first attempt fails); later drops reconnect by themselves."""
        await self._connect()
        self._ready.set()
        self._task = asyncio.create_task(self._supervise(), name="fastchat-client")
        return self

    async def close(self) -> None:
        """Close the connection (1000) and end the event iterator; unacknowledged sends fail
        with ClientClosedError."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        transport = self._transport
        if transport is not None and not transport.is_disconnected:
            transport.send_close(WSCloseCode.OK)
            try:
                await asyncio.wait_for(transport.wait_disconnected(), self.timeout)
            except TimeoutError:
                transport.disconnect(graceful=False)
        self._transport = None
        closed = ClientClosedError("the client was closed")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(closed)
        for fut in self._order:
            if not fut.done():
                fut.set_exception(closed)
        for _, fut in self._requests.values():
            if not fut.done():
                fut.set_exception(closed)
        self._pending.clear()
        self._order.clear()
        self._requests.clear()
        self._events.put_nowait(None)

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # -- the event stream ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[AnyServerEvent]:
        return self

    async def __anext__(self) -> AnyServerEvent:
        event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # every later iteration ends too
            raise StopAsyncIteration
        return event

    # -- rooms and posts ----------------------------------------------------------------------

    async def join(
        self, room: str, *, user: str | None = None, last_id: int | None = None
    ) -> RoomJoined:
        """Join `room` (as `user`, default the client's); with `last_id`, replay what came after
        it. Returns the ROOM_JOINED. The room is rejoined after every reconnect."""
        key = f"r:{room}"
        scope = self._rooms.get(key)
        if scope is None:
            scope = self._rooms[key] = _Scope(user or self.user, last_id)
        else:
            scope.user = user or scope.user
            scope.last_id = last_id if last_id is not None else scope.last_id
        try:
            joined: RoomJoined = await self._ask(key, self._join_frame(key, scope))
        except BaseException:
            self._rooms.pop(key, None)
            raise
        await self._baseline(key, scope, room=room)
        return joined

    async def join_post(
        self, post_id: int | str, *, user: str | None = None, last_id: int | None = None
    ) -> PostJoined:
        """View a post's comments live (JOIN_POST); rejoined after every reconnect."""
        key = _post_key(post_id)
        scope = self._rooms.get(key)
        if scope is None:
            scope = self._rooms[key] = _Scope(user or self.user, last_id)
        try:
            joined: PostJoined = await self._ask(key, self._join_frame(key, scope))
        except BaseException:
            self._rooms.pop(key, None)
            raise
        await self._baseline(key, scope, post_id=int(post_id))
        return joined

    async def leave(self, room: str) -> RoomLeft:
        """Leave `room` (LEAVE_ROOM); it is not rejoined after a reconnect."""
        key = f"r:{room}"
        self._rooms.pop(key, None)
        left: RoomLeft = await self._ask(key, encode({"type": "LEAVE_ROOM", "room": room}))
        return left

    async def leave_post(self, post_id: int | str) -> PostLeft:
        key = _post_key(post_id)
        self._rooms.pop(key, None)
        frame = encode({"type": "LEAVE_POST", "post_id": int(post_id)})
        left: PostLeft = await self._ask(key, frame)
        return left

    async def _baseline(self, key: str, scope: _Scope, **where: Any) -> None:
        """A first join with nothing seen yet: learn the newest stored id, so a reconnect
        resumes from it (without one, what came during the gap would be lost)."""
        if scope.last_id is not None:
            return
        page = await self.history(limit=1, **where)
        items = page.messages if page.messages is not None else page.comments
        newest = items[-1].id if items else 0
        if scope.last_id is None or newest > scope.last_id:
            scope.last_id = newest

    # -- sending ------------------------------------------------------------------------------

    async def send(
        self, room: str, text: str, *, user: str | None = None, client_id: str | None = None
    ) -> MessageEvent:
        """Send a message to a joined room; resolves with the stored CHAT_MESSAGE (its id and
        timestamp). Raises FastchatError if the server refuses it. `client_id` (default: a
        fresh one) is the idempotency key: an application that keeps its outbox across
        restarts passes its own, and a send repeated with it is stored once."""
        scope = self._rooms.get(f"r:{room}")
        name = user or (scope.user if scope else self.user)
        client_id = client_id or uuid.uuid4().hex
        frame = encode(
            {
                "type": "CHAT_MESSAGE",
                "room": room,
                "user": name,
                "message": text,
                "client_id": client_id,
            }
        )
        message: MessageEvent = await self._send_pending(client_id, frame, f"r:{room}")
        return message

    async def comment(
        self,
        post_id: int | str,
        text: str,
        *,
        user: str | None = None,
        client_id: str | None = None,
    ) -> CommentEvent:
        """Comment on a post (POST_COMMENT); resolves with the stored comment."""
        key = _post_key(post_id)
        scope = self._rooms.get(key)
        name = user or (scope.user if scope else self.user)
        client_id = client_id or uuid.uuid4().hex
        frame = encode(
            {
                "type": "POST_COMMENT",
                "post_id": int(post_id),
                "user": name,
                "comment": text,
                "client_id": client_id,
            }
        )
        comment: CommentEvent = await self._send_pending(client_id, frame, key)
        return comment

    async def typing(self, room: str, *, user: str | None = None) -> None:
        """Tell the room's others this user is typing (never stored; dropped while offline)."""
        scope = self._rooms.get(f"r:{room}")
        name = user or (scope.user if scope else self.user)
        self._write(encode({"type": "TYPING", "room": room, "user": name}))

    async def stop_typing(self, room: str, *, user: str | None = None) -> None:
        """Tell the room's others this user stopped typing without sending (a message ends
        it by itself)."""
        scope = self._rooms.get(f"r:{room}")
        name = user or (scope.user if scope else self.user)
        self._write(encode({"type": "TYPING_STOPPED", "room": room, "user": name}))

    async def _send_pending(self, client_id: str, frame: bytes, scope: str) -> Any:
        already = self._pending.get(client_id)
        if already is not None:  # the same send, still in flight: the same answer
            return await asyncio.shield(already.future)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending = self._pending[client_id] = _Pending(frame, scope, future)
        if self._ready.is_set() and self._joined_now(scope):
            self._write_pending(pending)
        # No timeout: it is sent again after each reconnect until acknowledged or refused.
        return await future

    def _joined_now(self, key: str) -> bool:
        """May a send to `key` go out now? Not while its join is on its way (the server would
        answer not_joined): the join's answer sends it. A scope never joined: the server
        says."""
        scope = self._rooms.get(key)
        return scope is None or scope.joined_on == self._conn

    def _write_pending(self, pending: _Pending) -> None:
        pending.sent_on = self._conn
        self._write(pending.frame)

    def _joined(self, key: str) -> None:
        """`key` is joined on this connection: the sends that waited for it go out (a
        reconnect's resume sends them once every rejoin is in)."""
        scope = self._rooms.get(key)
        if scope is None:
            return
        scope.joined_on = self._conn
        if not self._ready.is_set():
            return
        for pending in list(self._pending.values()):
            if pending.scope == key and pending.sent_on != self._conn:
                self._write_pending(pending)

    # -- reads --------------------------------------------------------------------------------

    async def history(
        self,
        room: str | None = None,
        *,
        post_id: int | str | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        since: str | int | float | None = None,
        until: str | int | float | None = None,
    ) -> HistoryPage:
        """A page of a room's messages (or, with `post_id`, a post's comments), oldest first;
        `page.next` is the cursor of the next page in the same direction."""
        request: dict[str, Any] = {"type": "HISTORY", "limit": limit}
        if room is not None:
            request["room"] = room
        if post_id is not None:
            request["post_id"] = int(post_id)
        for name, value in (
            ("before", before),
            ("after", after),
            ("since", since),
            ("until", until),
        ):
            if value is not None:
                request[name] = value
        page: HistoryPage = await self._request(request)
        return page

    async def members(self, room: str, *, page_size: int = 100) -> AsyncIterator[str]:
        """Every name in a joined room, in name order, a MEMBERS page at a time."""
        after: str | None = None
        while True:
            request: dict[str, Any] = {"type": "MEMBERS", "room": room, "limit": page_size}
            if after is not None:
                request["after"] = after
            page: MembersPage = await self._request(request)
            for name in page.users:
                yield name
            if page.next is None:
                return
            after = page.next

    async def _request(self, request: dict[str, Any]) -> Any:
        """A request answered by request_id (HISTORY, MEMBERS); sent again after a reconnect."""
        request_id = uuid.uuid4().hex
        request["request_id"] = request_id
        frame = encode(request)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (frame, future)
        self._order.append(future)
        if self._ready.is_set():
            self._write(frame)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        finally:
            self._requests.pop(request_id, None)
            self._forget(future)

    async def _ask(self, key: str, frame: bytes) -> Any:
        """Send a join or leave and await its answer (or refusal)."""
        await self._wait_ready()
        future = self._expect(key)
        self._write(frame)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        finally:
            self._forget(future)

    def _expect(self, key: str) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers.setdefault(key, []).append(future)
        self._order.append(future)
        return future

    def _forget(self, future: asyncio.Future[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._order.remove(future)
        for waiters in self._answers.values():
            with contextlib.suppress(ValueError):
                waiters.remove(future)

    async def _wait_ready(self) -> None:
        if self._closing:
            raise ClientClosedError("the client was closed")
        if not self._ready.is_set():
            await asyncio.wait_for(self._ready.wait(), self.timeout)

    def _write(self, frame: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_disconnected:
            transport.send(WSMsgType.TEXT, frame)

    # -- the connection -----------------------------------------------------------------------

    async def _connect(self) -> None:
        listener = _Listener(self)
        transport, _ = await ws_connect(
            lambda: listener,
            self.url,
            websocket_handshake_timeout=self.timeout,
            enable_auto_ping=True,  # a server that vanished without a FIN is noticed too
            auto_ping_idle_timeout=self.ping_interval,
            auto_ping_reply_timeout=self.ping_interval,
            use_aiofastnet=False,
            max_frame_size=1 << 26,
        )
        self._transport = transport
        self._listener = listener
        self._conn += 1
        self._lost.clear()

    async def _supervise(self) -> None:
        """Wait for the connection to drop; reconnect with full-jitter backoff, rejoin every
        room and post from its last id, then resend every unacknowledged send."""
        while True:
            await self._lost.wait()
            self._ready.clear()
            self._drop()
            attempt = 0
            while True:
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
                await asyncio.sleep(delay)
                attempt += 1
                try:
                    await self._connect()
                    await self._resume()
                except Exception as exc:
                    log.info("reconnect attempt %d failed: %s", attempt, exc)
                    self._drop()
                    continue
                break
            self.reconnects += 1
            log.info("reconnected to %s (%d rooms and posts resumed)", self.url, len(self._rooms))

    async def _resume(self) -> None:
        answers = []
        for key, scope in list(self._rooms.items()):
            answers.append(self._expect(key))
            self._write(self._join_frame(key, scope))
        try:
            # A join with last_id is done only once its replay was read: sends wait for it.
            await asyncio.wait_for(asyncio.gather(*answers), self.timeout)
        finally:
            for fut in answers:
                self._forget(fut)
        self._ready.set()
        for pending in list(self._pending.values()):
            if pending.sent_on != self._conn and self._joined_now(pending.scope):
                self._write_pending(pending)
        for frame, _ in list(self._requests.values()):
            self._write(frame)

    def _join_frame(self, key: str, scope: _Scope) -> bytes:
        kind, name = key.split(":", 1)
        event: dict[str, Any] = (
            {"type": "JOIN_ROOM", "room": name}
            if kind == "r"
            else {"type": "JOIN_POST", "post_id": int(name)}
        )
        event["user"] = scope.user
        if scope.last_id is not None:
            event["last_id"] = scope.last_id
            if scope.last_change is not None:
                event["last_change"] = scope.last_change
        return encode(event)

    def _drop(self) -> None:
        """Forget the current connection (its late callbacks are ignored) and close it."""
        transport, self._transport, self._listener = self._transport, None, None
        if transport is not None and not transport.is_disconnected:
            transport.disconnect(graceful=False)

    def _on_disconnected(self, listener: _Listener) -> None:
        if listener is not self._listener:
            return
        self._transport = None
        self._ready.clear()
        self._lost.set()
        # Leaves awaited on the lost connection will not be answered: they fail. Joins are
        # answered by the resume's rejoin; reads are sent again.
        lost = ConnectionError("connection lost")
        for key, waiters in self._answers.items():
            if key not in self._rooms:
                for fut in waiters:
                    if not fut.done():
                        fut.set_exception(lost)
        if not self._closing:
            log.info("connection to %s lost; reconnecting", self.url)

    # -- incoming events ------------------------------------------------------------------------

    def _on_text(self, data: bytes) -> None:
        try:
            event = server_decoder.decode(data)
        except Exception:
            log.warning("undecodable event ignored: %r", data[:200])
            return
        if isinstance(event, MessageEvent):
            if self._on_stored(f"r:{event.room}", event):
                return
        elif isinstance(event, CommentEvent):
            if self._on_stored(_post_key(event.post_id), event):
                return
        elif isinstance(event, MessageEdited | MessageDeleted):
            self._on_change(f"r:{event.room}", event.change)
        elif isinstance(event, CommentEdited | CommentDeleted):
            self._on_change(_post_key(event.post_id), event.change)
        elif isinstance(event, RoomJoined | RoomLeft):
            if isinstance(event, RoomJoined):
                self._on_change(f"r:{event.room}", event.last_change)
                self._joined(f"r:{event.room}")
            self._answer(f"r:{event.room}", event)
        elif isinstance(event, PostJoined | PostLeft):
            if isinstance(event, PostJoined):
                self._on_change(_post_key(event.post_id), event.last_change)
                self._joined(_post_key(event.post_id))
            self._answer(_post_key(event.post_id), event)
        elif isinstance(event, HistoryPage | MembersPage):
            request = self._requests.get(event.request_id or "")
            if request is not None and not request[1].done():
                request[1].set_result(event)
        elif isinstance(event, ErrorEvent):
            self._on_error(event)
        self._events.put_nowait(event)

    def _on_stored(self, key: str, event: MessageEvent | CommentEvent) -> bool:
        """Acknowledge a pending send; True if the event was already seen (not yielded)."""
        if event.client_id is not None:
            pending = self._pending.get(event.client_id)
            if pending is not None and pending.scope == key:
                del self._pending[event.client_id]
                if not pending.future.done():
                    pending.future.set_result(event)
        scope = self._rooms.get(key)
        if scope is None:
            return False
        if scope.last_id is not None and event.id <= scope.last_id:
            return True  # a replay or an idempotent answer of something already seen
        scope.last_id = event.id
        return False

    def _on_change(self, key: str, change: int) -> None:
        """Note an edit or deletion (or a join's mark): the next resume's `last_change`.
        Every change event is yielded: each carries its item's whole state, and with several
        nodes two of them may arrive out of change order."""
        scope = self._rooms.get(key)
        if scope is not None and (scope.last_change is None or change > scope.last_change):
            scope.last_change = change

    def _answer(self, key: str, event: Any) -> None:
        # Every waiter of that scope: a join awaited by the caller and by a resume alike.
        for fut in self._answers.pop(key, ()):
            if not fut.done():
                fut.set_result(event)

    def _on_error(self, event: ErrorEvent) -> None:
        error = FastchatError(event.code, event.message)
        if event.client_id is not None:
            pending = self._pending.get(event.client_id)
            if pending is None:
                return
            if event.code in (ErrorCode.RATE_LIMITED, ErrorCode.STORE_UNAVAILABLE):
                # Dropped, or the database could not take it now: the same send again in a
                # moment (safe: the server stores a client_id once).
                asyncio.get_running_loop().call_later(1.0, self._retry, event.client_id)
                return
            del self._pending[event.client_id]
            if not pending.future.done():
                pending.future.set_exception(error)
            return
        # The ERROR names the request it refuses (a server since 0.2.0): that one fails, or
        # nothing (a TYPING nobody awaits); not the oldest request, as below.
        if event.request_id is not None:
            request = self._requests.get(event.request_id)
            if request is not None and not request[1].done():
                request[1].set_exception(error)
            return
        if event.room is not None or event.post_id is not None:
            key = f"r:{event.room}" if event.room is not None else _post_key(event.post_id or 0)
            for fut in self._answers.pop(key, ()):
                if not fut.done():
                    fut.set_exception(error)
            return
        if event.code == ErrorCode.POST_NOT_FOUND and self._fail_oldest_comment(error):
            return
        if (
            event.code == ErrorCode.STORE_UNAVAILABLE
            and "not joined" not in event.message
            and self._pending
        ):
            # A write the database refused names no client_id: send every pending one again
            # after a pause (safe: the server dedupes by client_id).
            asyncio.get_running_loop().call_later(1.0, self._retry, None)
            return
        while self._order:
            fut = self._order.popleft()
            if not fut.done():
                fut.set_exception(error)
                return

    def _fail_oldest_comment(self, error: FastchatError) -> bool:
        for client_id, pending in self._pending.items():
            if pending.scope.startswith("p:"):
                del self._pending[client_id]
                if not pending.future.done():
                    pending.future.set_exception(error)
                return True
        return False

    def _retry(self, client_id: str | None) -> None:
        if not self._ready.is_set():
            return  # the resume sends them all
        targets = [client_id] if client_id is not None else list(self._pending)
        for cid in targets:
            pending = self._pending.get(cid)
            if pending is not None and self._joined_now(pending.scope):
                self._write_pending(pending)


# `async with connect(url, token=..., user=...) as chat:` reads better than the class name.
connect: Final = Client
