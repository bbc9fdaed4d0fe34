"""The chat service: what happens to each event, on both WebSocket ports and over REST.

It joins the sans-I/O protocol to the hub (fan-out), the store (persistence) and presence;
committed rows reach the hub through `delivery.py` (database first, id order per room).

Room keys in the hub: `r:<room>` for chat rooms, `p:<post id>` for a post's live viewers.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, Final

import msgspec

from fastchat import events
from fastchat._hub import Hub, Member
from fastchat.broker import Broker, LocalBroker
from fastchat.delivery import (
    Delivery,
    comment_of,
    message_of,
)
from fastchat.errors import CLOSE_CODE, ErrorCode, FastchatError
from fastchat.events import (
    Comment,
    ErrorEvent,
    GetHistory,
    GetMembers,
    HistoryPage,
    JoinPost,
    JoinRoom,
    LeavePost,
    LeaveRoom,
    MembersPage,
    Message,
    Post,
    PostJoined,
    PostLeft,
    PresenceChange,
    PresenceEvent,
    RoomJoined,
    RoomLeft,
    SendComment,
    SendMessage,
    Typing,
    TypingEvent,
    UserJoined,
    UserLeft,
)
from fastchat.logs import LineBudget
from fastchat.presence import Presence, RoomView, Snapshot
from fastchat.protocol import (
    Limits,
    ProtocolError,
    Session,
    error_payload,
    parse,
    post_id_of,
    time_of,
)
from fastchat.store import OP_COMMENT, OP_MESSAGE, OP_POST, PostNotFound, Store, StoreError

log = logging.getLogger("fastchat.service")

encode: Final = events.encode
# A room over Limits.presence_list_max members hears of presence at most this often.
PRESENCE_INTERVAL: Final = 0.5
# How long a health answer is reused (Chat.health).
HEALTH_SECONDS: Final = 0.25
# Clustered: how often each node sends its whole presence; a node silent for three of
# these is taken for dead and its users leave.
HEARTBEAT_SECONDS: Final = 2.0
# A member's TYPING is relayed at most once per this many seconds (never stored).
TYPING_INTERVAL: Final = 1.0
# "connection opened" / "connection closed": one line each, up to this many a second; past
# it (a storm of reconnects), counted and told in one line a second (logs.LineBudget).
CONNECTION_LINES_PER_SECOND: Final = 100
# After this many connections closed, the heap the allocator keeps is given back to the
# system (malloc_trim), one second after the first of them, at most once a second. Measured
# (issue 14): 10,000 clients leaving at once left ~30 MB free but mapped in glibc's heap, RSS
# after they had left within 1 % of RSS while connected; malloc_trim(0) returned it
# (104 -> 72 MB) in a few ms. Without glibc (musl) there is no trim and nothing is done.
TRIM_AFTER_CLOSED: Final = 1000
TRIM_DELAY: Final = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_SEND_TYPES: Final = frozenset(
    (SendMessage.__struct_config__.tag, SendComment.__struct_config__.tag)
)


def _sent_client_id(event: object, data: bytes | str) -> str | None:
    """The client_id of a refused CHAT_MESSAGE or POST_COMMENT, echoed in its ERROR so the
    sender knows which pending send failed; None for any other refused frame. A frame that
    failed validation (`event` None) is read again for it: only on this rare path."""
    if isinstance(event, SendMessage | SendComment):
        return event.client_id
    if event is not None:
        return None
    try:
        sent = events.sent_id_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    client_id = sent.client_id
    if (
        sent.type in _SEND_TYPES
        and type(client_id) is str
        and 0 < len(client_id) <= events.CLIENT_ID_MAX
        and client_id.isprintable()
    ):
        return client_id
    return None


class NotFoundError(FastchatError):
    """A post that does not exist: `post_not_found`."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.POST_NOT_FOUND, message)


def _unreadable(exc: BaseException) -> str:
    """A failed database operation, for the client: our own errors say it already."""
    if isinstance(exc, StoreError):
        return str(exc)
    return f"the database could not be read ({exc.__class__.__name__}: {exc})"


class Chat:
    """Rooms, posts and their traffic; one per process, wired in `server.py`."""

    def __init__(
        self, hub: Hub, store: Store, limits: Limits, broker: Broker | None = None
    ) -> None:
        self.hub = hub
        self.store = store
        self.limits = limits
        self.broker = broker or LocalBroker()
        self.clustered = self.broker.clustered
        # Committed rows to the hub (and replays): the store calls its on_committed.
        self.delivery = Delivery(hub, store, self.broker, self.reply_error)
        self.on_committed = self.delivery.on_committed
        self.started = time.monotonic()
        self.messages_in = 0
        self.comments_in = 0
        self.errors: Counter[str] = Counter()
        self.replay_backlog = max(64 * 1024, hub.high_water // 4)
        self._next_conn = 0
        # Who is in which chat room, here and (clustered) on the other nodes.
        self.presence = Presence()
        self.connections_opened: Counter[str] = Counter()
        # Open now, by the URL they came in on ("fast": WS_PORT, "http": PORT); the hub counts
        # them by kind of transport, and PORT's `/ws` is a picows transport too.
        self.connections_open: Counter[str] = Counter()
        self.joins = 0
        self.connection_lines = LineBudget(CONNECTION_LINES_PER_SECOND)
        self._closed_since_trim = 0
        self._trim = _malloc_trim()
        self.trims = 0
        hub.on_slow = self.on_slow
        self.draining = False  # a SIGTERM started the drain: no new WebSockets
        self._tasks: set[asyncio.Task[None]] = set()
        # Presence changes waiting for the end of the tick, and when big rooms last heard.
        self._presence_pending: dict[str, _PendingPresence] = {}
        self._presence_sent: dict[str, float] = {}
        self._loop = asyncio.get_running_loop()
        # Health as last observed (see `health`).
        self._health: str | None = None
        self._health_until = 0.0
        self._health_failures = 0
        self._health_check: asyncio.Future[str | None] | None = None
        # A read that fails raises the store's own error or its driver's (APSW, psycopg).
        self._read_errors: tuple[type[BaseException], ...] = (StoreError, *store.OPEN_ERRORS)

    async def on_store_open(self) -> None:
        await self.delivery.on_store_open()

    # ------------------------------------------------------------------ connections

    def connect_transport(self, transport: Any, port: str = "fast", peer: str = "") -> Member:
        """A picows connection, from WS_PORT ("fast") or from PORT's `/ws` ("http")."""
        return self._opened(self.hub.attach_transport(transport), port, peer)

    def connect_sink(self, sink: Any, port: str = "sink", peer: str = "") -> Member:
        """A member whose frames go to a hub sink, not a socket (tests observe the service
        through one; an in-process client could too)."""
        return self._opened(self.hub.attach_sink(sink), port, peer)

    def _opened(self, member: Member, port: str, peer: str) -> Member:
        self._next_conn += 1
        self.connections_opened[port] += 1
        self.connections_open[port] += 1
        now = time.monotonic()
        member.state = Session(self.limits, now, self._next_conn, port, peer)
        if log.isEnabledFor(logging.INFO) and self._connection_line(now, "opened"):
            log.info(
                "connection opened", extra={"conn": self._next_conn, "port": port, "peer": peer}
            )
        return member

    def disconnect(self, member: Member) -> None:
        session: Session = member.state
        names = session.names
        self.connections_open[session.port] -= 1
        rooms = self.hub.detach(member)
        for key in rooms:
            if key[0] == "r":
                self._presence_left(key, names.get(key, ""))
        self._closed_since_trim += 1
        if self._closed_since_trim == TRIM_AFTER_CLOSED:
            self._loop.call_later(TRIM_DELAY, self._trim_heap)
        now = time.monotonic()
        if log.isEnabledFor(logging.INFO) and self._connection_line(now, "closed"):
            log.info(
                "connection closed",
                extra={
                    "conn": session.conn_id,
                    "port": session.port,
                    "peer": session.peer,
                    "seconds": round(now - session.opened, 3),
                    "rooms": len(rooms),
                },
            )

    def _trim_heap(self) -> None:
        """A mass disconnect has freed much memory: give the allocator's free pages back.
        On a worker thread (ctypes lets the GIL go): a trim of a fragmented 100 MB heap took
        27 ms here, a stall the loop need not take."""
        self._closed_since_trim = 0
        if self._trim is not None:
            self.trims += 1
            self._loop.run_in_executor(None, self._trim, 0)

    def _connection_line(self, now: float, kind: str) -> bool:
        """Whether this connection's line is logged; if not, it is counted, and the count
        told one period after the first line held back (see CONNECTION_LINES_PER_SECOND)."""
        budget = self.connection_lines
        if budget.take(now, kind):
            return True
        if sum(budget.untold.values()) == 1:
            self._loop.call_later(budget.period, self._tell_untold_connections)
        return False

    def _tell_untold_connections(self) -> None:
        untold = self.connection_lines.pop_untold()
        if not untold:
            return
        log.info(
            "connections opened and closed over %d a second: counted, not logged one by one",
            self.connection_lines.lines,
            extra={"opened": untold["opened"], "closed": untold["closed"]},
        )

    def on_slow(self, member: Member) -> None:
        session: Session = member.state
        log.warning(
            "slow consumer dropped",
            extra={"conn": session.conn_id, "port": session.port, "peer": session.peer},
        )

    def receive(self, member: Member, data: bytes | str) -> None:
        """One text frame from a client, on either port."""
        session: Session = member.state
        if not session.admit(self.limits, time.monotonic()):
            if session.strikes >= self.limits.max_strikes:
                self.errors[ErrorCode.RATE_LIMITED] += 1
                log.warning(
                    "connection closed for flooding",
                    extra={"conn": session.conn_id, "port": session.port, "peer": session.peer},
                )
                self.hub.close(
                    member, CLOSE_CODE[ErrorCode.RATE_LIMITED], "rate limit exceeded repeatedly"
                )
            elif session.strikes == 1 or session.strikes % 10 == 0:
                # One ERROR per burst of refusals, not one per refused frame.
                self.reply_error(
                    member,
                    ErrorCode.RATE_LIMITED,
                    f"slow down: at most {self.limits.rate:g} events per second "
                    f"(bursts of {self.limits.burst:g}); this one was dropped",
                )
            return
        event = None
        try:
            event = parse(data, self.limits)
            kind = type(event)
            if kind is SendMessage:
                self._send_message(member, event)  # type: ignore[arg-type]
            elif kind is SendComment:
                self._send_comment(member, event)  # type: ignore[arg-type]
            elif kind is JoinRoom:
                self._join_room(member, event)  # type: ignore[arg-type]
            elif kind is LeaveRoom:
                self._leave_room(member, event)  # type: ignore[arg-type]
            elif kind is Typing:
                self._typing(member, event)  # type: ignore[arg-type]
            elif kind is GetHistory:
                self._history(member, event)  # type: ignore[arg-type]
            elif kind is JoinPost:
                self._join_post(member, event)  # type: ignore[arg-type]
            elif kind is LeavePost:
                self._leave_post(member, event)  # type: ignore[arg-type]
            elif kind is GetMembers:
                self._members(member, event)  # type: ignore[arg-type]
        except FastchatError as exc:
            self.reply_error(member, exc.code, exc.message, _sent_client_id(event, data))

    def reply_error(
        self, member: Member, code: str, message: str, client_id: str | None = None
    ) -> None:
        self.errors[code] += 1
        if client_id is None:
            self.hub.send(member, error_payload(code, message))
        else:
            self.hub.send(
                member, encode(ErrorEvent(code=code, message=message, client_id=client_id))
            )

    # ------------------------------------------------------------------ events

    def _send_message(self, member: Member, ev: SendMessage) -> None:
        if "r:" + ev.room not in member.rooms:
            raise ProtocolError(
                ErrorCode.NOT_JOINED, f"join room {ev.room!r} (JOIN_ROOM) before sending to it"
            )
        self.messages_in += 1
        self.store.submit((OP_MESSAGE, ev.room, ev.user, ev.message, ev.client_id, member))

    def _send_comment(self, member: Member, ev: SendComment) -> None:
        # Whether the post exists is checked inside the write transaction (post_not_found).
        post_id = post_id_of(ev.post_id)
        self.comments_in += 1
        self.store.submit((OP_COMMENT, post_id, ev.user, ev.comment, ev.client_id, member))

    def _check_room_budget(self, member: Member, key: str) -> None:
        if key not in member.rooms and len(member.rooms) >= self.limits.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a connection may be in at most {self.limits.max_rooms} rooms and posts; "
                "leave one first",
            )

    def _join_room(self, member: Member, ev: JoinRoom) -> None:
        key = "r:" + ev.room
        self._check_room_budget(member, key)
        if ev.last_id is None:
            self._finish_join_room(member, ev, 0)
        else:
            self._start_resume(
                member,
                key,
                "messages",
                ev.room,
                ev.last_id,
                lambda sent: self._finish_join_room(member, ev, sent),
            )

    def _finish_join_room(self, member: Member, ev: JoinRoom, replayed: int) -> None:
        key = "r:" + ev.room
        self.joins += 1
        previous = member.state.names.get(key)
        if key not in member.rooms or previous != ev.user:
            if previous is not None and key in member.rooms:  # rejoined under another name
                self._presence_left(key, previous, member)
            self.hub.join(member, key)
            self.presence.join(key, ev.user)
            self._announce(key, ev.user, +1, member)
        member.state.names[key] = ev.user
        reply = RoomJoined(
            room=ev.room,
            user=ev.user,
            members=self.presence.members(key),
            users=self.presence.users(key),
            replayed=replayed,
        )
        self.hub.send(member, encode(reply))

    def _members(self, member: Member, ev: GetMembers) -> None:
        """A page of a room's names, for its members only: in a room over PRESENCE_LIST_MAX
        members, presence events carry counts alone, and this is how a client lists who is
        there (docs/PROTOCOL.md)."""
        key = "r:" + ev.room
        if key not in member.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"not in room {ev.room!r}")
        users, after = self.presence.page(key, ev.after, ev.limit)
        page = MembersPage(
            room=ev.room,
            members=self.presence.members(key),
            users=users,
            next=after,
            request_id=ev.request_id,
        )
        self.hub.send(member, encode(page))

    def _typing(self, member: Member, ev: Typing) -> None:
        key = "r:" + ev.room
        if key not in member.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"not in room {ev.room!r}")
        now = time.monotonic()
        typing_at = member.state.typing_at
        if typing_at is None:
            typing_at = member.state.typing_at = {}
        if now - typing_at.get(key, 0.0) < TYPING_INTERVAL:
            return  # throttled: silently, typing is a hint
        typing_at[key] = now
        self._ephemeral(key, encode(TypingEvent(room=ev.room, user=ev.user)), member)

    def _leave_room(self, member: Member, ev: LeaveRoom) -> None:
        key = "r:" + ev.room
        if key not in member.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"not in room {ev.room!r}")
        self.hub.leave(member, key)
        user = member.state.names.pop(key, "")
        if member.state.typing_at:
            member.state.typing_at.pop(key, None)
        self._presence_left(key, user)
        self.hub.send(member, encode(RoomLeft(room=ev.room, members=self.presence.members(key))))

    def _presence_left(self, key: str, user: str, exclude: Member | None = None) -> None:
        self.presence.leave(key, user)
        self._announce(key, user, -1, exclude)

    # -- presence to the members: coalesced -------------------------------------------------

    def _announce(
        self, key: str, user: str, delta: int, exclude: Member | None = None, local: bool = True
    ) -> None:
        """`user`'s sessions in room `key` changed: tell the room, coalesced. Each join sent a
        USER_JOINED to every member, so n clients joining cost n*n/2 frames (50 million for
        10,000: 18.7 s to join them all, issue 14) and a mass disconnect queued as many
        USER_LEFTs to members on their way out. Now a room's changes wait for the end of
        the loop tick and go out as one event: the classic USER_JOINED / USER_LEFT when
        there was one, a PRESENCE with every change when more; a room over
        PRESENCE_LIST_MAX members gets a PRESENCE with its count alone, at most every
        PRESENCE_INTERVAL. `local`: the change is this node's (the other nodes are told,
        once per room per flush). `delta`: +1 a session joined, -1 one left."""
        pending = self._presence_pending.get(key)
        if pending is None:
            pending = self._presence_pending[key] = _PendingPresence()
            delay = 0.0
            if self.presence.members(key) > self.limits.presence_list_max:
                last = self._presence_sent.get(key)
                if last is not None:
                    delay = max(0.0, last + PRESENCE_INTERVAL - time.monotonic())
            if delay:
                self._loop.call_later(delay, self._flush_presence, key)
            else:  # this tick, after the events being handled now: no timer's extra turn
                self._loop.call_soon(self._flush_presence, key)
        pending.users[user] = pending.users.get(user, 0) + delta
        pending.exclude = exclude if len(pending.users) == 1 else None
        pending.local = pending.local or local

    def _flush_presence(self, key: str) -> None:
        pending = self._presence_pending.pop(key)
        members = self.presence.members(key)
        room = key[2:]
        event: Any
        if members > self.limits.presence_list_max:
            event = PresenceEvent(room=room, members=members)
            self._presence_sent[key] = time.monotonic()
        else:
            changed = [(u, d) for u, d in pending.users.items() if d]  # joined-and-left: none
            if len(changed) == 1:
                user, delta = changed[0]
                kind = UserJoined if delta > 0 else UserLeft
                event = kind(
                    room=room,
                    user=user,
                    members=members,
                    sessions=self.presence.sessions(key, user),
                )
            elif changed:
                changes = [PresenceChange(u, self.presence.sessions(key, u)) for u, _ in changed]
                event = PresenceEvent(room=room, members=members, changes=changes)
            else:
                event = None
        if event is not None and self.hub.count(key):
            self.hub.publish(key, encode(event), pending.exclude)
        if pending.local and self.clustered:
            self.broker.presence(key, self.presence.local_view(key), self._connections())
        if not members:
            self._presence_sent.pop(key, None)

    # -- presence on the other nodes (clustered) -------------------------------------------

    def _connections(self) -> int:
        return int(self.hub.fast_members + self.hub.sink_members)

    def on_presence(self, node: str, key: str, view: RoomView, connections: int) -> None:
        """Another node's presence in room `key` changed: apply it, tell our members."""
        before = self.presence.remote.get(node, {}).get(key, (0, {}))[1]
        self.presence.apply(node, key, view, time.monotonic(), connections)
        if not self.hub.count(key):
            return
        after = view[1]
        for user in after.keys() | before.keys():
            delta = after.get(user, 0) - before.get(user, 0)
            if delta:
                self._announce(key, user, delta, local=False)

    def on_snapshot(self, node: str, snapshot: Snapshot) -> None:
        self.presence.apply_snapshot(node, snapshot, time.monotonic())

    async def heartbeat(self, period: float = HEARTBEAT_SECONDS) -> None:
        """Clustered: send our presence every `period`; forget nodes silent for 3 periods,
        and tell our members their users left."""
        while True:
            snapshot = self.presence.snapshot()
            snapshot[""] = (self._connections(), {})
            self.broker.snapshot(snapshot)
            for key, user, _sessions, _members in self.presence.expire(
                time.monotonic(), 3 * period
            ):
                self._announce(key, user, -1, local=False)
            await asyncio.sleep(period)

    def _join_post(self, member: Member, ev: JoinPost) -> None:
        post_id = post_id_of(ev.post_id)
        key = f"p:{post_id}"
        self._check_room_budget(member, key)
        self._spawn(member, self._join_post_checked(member, ev, post_id, key))

    async def _join_post_checked(
        self, member: Member, ev: JoinPost, post_id: int, key: str
    ) -> None:
        if not await self.store.post_exists(post_id):
            raise ProtocolError(ErrorCode.POST_NOT_FOUND, f"post {post_id} does not exist")
        if member.closed:
            return
        self._check_room_budget(member, key)  # again: other joins may have run meanwhile

        def finish(replayed: int) -> None:
            self.joins += 1
            self.hub.join(member, key)
            member.state.names[key] = ev.user
            reply = PostJoined(post_id=post_id, viewers=self.hub.count(key), replayed=replayed)
            self.hub.send(member, encode(reply))

        if ev.last_id is None:
            finish(0)
        else:
            self._start_resume(member, key, "comments", post_id, ev.last_id, finish)

    def _leave_post(self, member: Member, ev: LeavePost) -> None:
        post_id = post_id_of(ev.post_id)
        key = f"p:{post_id}"
        if key not in member.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"not viewing post {post_id}")
        self.hub.leave(member, key)
        member.state.names.pop(key, None)
        self.hub.send(member, encode(PostLeft(post_id=post_id, viewers=self.hub.count(key))))

    def _start_resume(
        self,
        member: Member,
        key: str,
        table: str,
        scope: str | int,
        last_id: int,
        finish: Callable[[int], None],
    ) -> None:
        resuming = member.state.resuming
        if resuming is None:
            resuming = member.state.resuming = set()
        if key in resuming:
            return  # a resume of this room is already running; it will answer
        resuming.add(key)
        what = f"room {scope!r}" if table == "messages" else f"post {scope}"

        async def resume() -> None:
            try:
                await self.delivery.replay(
                    member, table, scope, last_id, finish, self.replay_backlog
                )
            except self._read_errors as exc:
                # Not joined: `finish` (the join itself) runs only once the replay has caught
                # up, so a failed read leaves the connection's rooms as they were before this
                # join. What was replayed before the failure was real and in order; the
                # client sends the join again, with the last id it saw.
                raise StoreError(
                    f"cannot resume {what} after id {last_id}: {_unreadable(exc)}; "
                    "not joined: send the join again"
                ) from exc
            finally:
                resuming.discard(key)

        self._spawn(member, resume())

    def _spawn(self, member: Member, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` (an event that must read the database) as a task; a refusal it raises
        is answered to `member` as an ERROR event, as in `receive`."""

        async def guarded() -> None:
            try:
                await work
            except FastchatError as exc:
                if not member.closed:
                    self.reply_error(member, exc.code, exc.message)
            except self._read_errors as exc:
                if not isinstance(exc, StoreError):
                    log.warning("a database read failed: %r", exc)
                if not member.closed:
                    self.reply_error(member, ErrorCode.STORE_UNAVAILABLE, _unreadable(exc))
            except Exception:  # never "Task exception was never retrieved"
                log.exception("handling an event failed")
                if not member.closed:
                    self.reply_error(member, ErrorCode.INTERNAL, "the server failed this request")

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ history

    async def history(
        self,
        *,
        room: str | None = None,
        post_id: int | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        since: str | int | float | None = None,
        until: str | int | float | None = None,
    ) -> HistoryPage:
        """A page of a room's messages or a post's comments (REST and the HISTORY event).
        Raises ProtocolError (bad time) or NotFoundError (no such post)."""
        since_ms, until_ms = time_of(since), time_of(until)
        if post_id is not None and not await self.store.post_exists(post_id):
            raise NotFoundError(f"post {post_id} does not exist")
        table, scope = ("comments", post_id) if post_id is not None else ("messages", room)
        assert scope is not None
        page = await self.store.page(
            table, scope, limit, before=before, after=after, since_ms=since_ms, until_ms=until_ms
        )
        if post_id is not None:
            return HistoryPage(
                has_more=page.has_more,
                next=page.next,
                post_id=post_id,
                comments=[comment_of(r) for r in page.rows],
            )
        return HistoryPage(
            has_more=page.has_more,
            next=page.next,
            room=room,
            messages=[message_of(r) for r in page.rows],
        )

    def _history(self, member: Member, ev: GetHistory) -> None:
        if (ev.room is None) == (ev.post_id is None):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "HISTORY needs exactly one of `room`, `post_id`"
            )
        post_id = post_id_of(ev.post_id) if ev.post_id is not None else None
        for bound in (ev.since, ev.until):
            time_of(bound)  # a bad time is answered now, in order with other replies
        self._spawn(member, self._history_page(member, ev, post_id))

    async def _history_page(self, member: Member, ev: GetHistory, post_id: int | None) -> None:
        page = await self.history(  # NotFoundError is answered by _spawn
            room=ev.room,
            post_id=post_id,
            limit=ev.limit,
            before=ev.before,
            after=ev.after,
            since=ev.since,
            until=ev.until,
        )
        if ev.request_id is not None:
            page.request_id = ev.request_id
        if not member.closed:
            self.hub.send(member, encode(page))

    # ------------------------------------------------------------------ commits

    def _ephemeral(self, key: str, payload: bytes, exclude: Member | None = None) -> None:
        """Presence and typing: to this node's members now, to the other nodes' by relay."""
        self.hub.publish(key, payload, exclude)
        if self.clustered:
            self.broker.relay(key, payload)

    def on_hint(self, key: str, max_id: int) -> None:
        """Another node committed rows of room `key` up to `max_id`."""
        self.delivery.on_hint(key, max_id)

    def on_relay(self, key: str, payload: bytes) -> None:
        """Another node's ephemeral event (typing) for room `key`."""
        self.hub.publish(key, payload)

    # ------------------------------------------------------------------ REST side

    async def post_message(
        self, room: str, user: str, text: str, client_id: str | None = None
    ) -> Message:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.messages_in += 1
        self.store.submit((OP_MESSAGE, room, user, text, client_id, future))
        return await future

    async def post_comment(
        self, post_id: int, user: str, text: str, client_id: str | None = None
    ) -> Comment:
        future: asyncio.Future[Comment] = asyncio.get_running_loop().create_future()
        self.comments_in += 1
        self.store.submit((OP_COMMENT, post_id, user, text, client_id, future))
        try:
            return await future
        except PostNotFound as exc:
            raise NotFoundError(str(exc)) from None

    async def create_post(self, title: str, content: str, author: str) -> Post:
        future: asyncio.Future[Post] = asyncio.get_running_loop().create_future()
        self.store.submit((OP_POST, title, content, author, None, future))
        return await future

    def health_if_fresh(self) -> tuple[bool, str | None]:
        """(True, what `health` would answer) while the last observation is current, else
        (False, None): then `health` asks the store."""
        if (
            time.monotonic() < self._health_until
            and self.store.failed_batches == self._health_failures
        ):
            return True, self._health
        return False, None

    async def health(self) -> str | None:
        """None when the store can be read and written, else why not. As last observed: the
        store is asked at most every HEALTH_SECONDS, by one check that concurrent requests
        share (wrk on /health at 14k requests/s asked the database 14k times a second), and
        at once after a write has failed since."""
        now = time.monotonic()
        failures = self.store.failed_batches
        if now < self._health_until and failures == self._health_failures:
            return self._health
        if self._health_check is None:
            self._health_check = asyncio.ensure_future(self._check_health(failures))
        return await asyncio.shield(self._health_check)

    async def _check_health(self, failures: int) -> str | None:
        try:
            await self.store.check()
            problem = None
        except Exception as exc:  # any failure means "not healthy", with the reason
            problem = f"error: {exc}"
        self._health, self._health_failures = problem, failures
        self._health_until = time.monotonic() + HEALTH_SECONDS
        self._health_check = None
        return problem

    async def stats(self) -> dict[str, Any]:
        hub = self.hub
        counts = await self.store.counts()
        return {
            "node": self.broker.node,
            "connections": {
                "ws_fast": self.connections_open["fast"],
                "ws_http": self.connections_open["http"],
                "total": hub.fast_members + hub.sink_members,
            },
            "rooms": sum(1 for k in hub.room_keys() if k[0] == "r"),
            "post_viewers": sum(hub.count(k) for k in hub.room_keys() if k[0] == "p"),
            "members": hub.membership_count,
            "messages_stored": counts["messages"],
            "comments_stored": counts["comments"],
            "posts": counts["posts"],
            "messages_received": self.messages_in,
            "comments_received": self.comments_in,
            "deliveries": hub.deliveries,
            "socket_writes": hub.writes,
            "slow_consumers_dropped": hub.slow_drops,
            "write_failures": hub.write_failures,
            "hub_flush": {
                "flushes": hub.flushes,
                "flush_ns_sum": hub.flush_ns_sum,
                "flush_ns_max": hub.flush_ns_max,
                "wait_ns_sum": hub.wait_ns_sum,
                "wait_ns_max": hub.wait_ns_max,
                "wait_histogram": hub.wait_histogram,
            },
            "store": {
                "batches": self.store.batches,
                "rows": self.store.rows,
                "failed_batches": self.store.failed_batches,
                "pending": self.store.pending,
                "checkpoints": self.store.checkpoints + self.store.inline_checkpoints,
            },
            "errors": dict(self.errors),
            "cluster": self.cluster_stats(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
        }

    def cluster_stats(self) -> dict[str, int]:
        """Nodes alive and connections on all of them (from the last heartbeats)."""
        here = self._connections()
        return {
            "nodes": 1 + len(self.presence.heard),
            "connections": here + sum(self.presence.remote_connections.values()),
        }


class _PendingPresence:
    """One room's presence changes of this tick: the users whose sessions changed (their
    counts are read at the flush), the joiner who must not hear of its own join (when
    there was one change), and whether any change was this node's."""

    __slots__ = ("exclude", "local", "users")

    def __init__(self) -> None:
        self.users: dict[str, int] = {}  # user -> sessions joined minus left, this tick
        self.exclude: Member | None = None
        self.local = False
