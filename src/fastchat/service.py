"""The chat service: what happens to each event, on both WebSocket ports and over REST.

It reads each frame through the sans-I/O protocol and hands it to the part that owns it:
`rooms.py` (memberships, presence, typing), `history.py` (pages, resume), `connections.py`
(opening and closing), `health.py`; writes go to the store, and committed rows reach the hub
through `delivery.py` (database first, id order per room). This module is the dispatcher
and the one place those parts are put together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Final

import msgspec

from fastchat import events
from fastchat._hub import Hub, Member
from fastchat._lane import Lane
from fastchat.auth import Auth, Identity, name_for
from fastchat.broker import Broker, LocalBroker
from fastchat.config import Settings
from fastchat.connections import Connections
from fastchat.delivery import CHANGE_RELAY, Delivery
from fastchat.errors import CLOSE_CODE, ErrorCode, FastchatError
from fastchat.events import (
    AnyClientEvent,
    Authenticate,
    Authenticated,
    Comment,
    DeleteComment,
    DeleteMessage,
    EditComment,
    EditMessage,
    GetHistory,
    GetMembers,
    JoinPost,
    JoinRoom,
    LeavePost,
    LeaveRoom,
    Message,
    Ping,
    Pong,
    Post,
    SendComment,
    SendMessage,
    Typing,
    TypingStopped,
)
from fastchat.health import StoreHealth
from fastchat.history import History, NotFoundError, unreadable
from fastchat.moderation import EVERYWHERE, Ban, Moderation
from fastchat.moderation import refusal as moderation_refusal
from fastchat.presence import RoomView, Snapshot
from fastchat.protocol import (
    NOTHING_REFUSED,
    Bucket,
    Limits,
    ProtocolError,
    Refused,
    Session,
    check,
    error_payload,
    parse,
    post_id_of,
)
from fastchat.rooms import Rooms
from fastchat.search import Search
from fastchat.store import (
    OP_BAN,
    OP_COMMENT,
    OP_DELETE_COMMENT,
    OP_DELETE_MESSAGE,
    OP_EDIT_COMMENT,
    OP_EDIT_MESSAGE,
    OP_MESSAGE,
    OP_POST,
    OP_UNBAN,
    Edit,
    PostNotFound,
    Row,
    Store,
    StoreError,
    Write,
)
from fastchat.timeparse import format_ms

__all__ = ["Chat", "NotFoundError"]

log = logging.getLogger("fastchat.service")

encode: Final = events.encode


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The broker key under which nodes tell each other of bans and mutes set or lifted (room
# keys start with "r:" or "p:": no room has it).
MODERATION_KEY: Final = "!moderation"
# JOIN_ROOM's and JOIN_POST's `user` when a client leaves it out.
JOIN_DEFAULT_USER: Final = "anonymous"


# Edits and deletions: event -> (store op, field holding the new text or None).
_CHANGE_EVENTS: Final[dict[type, tuple[int, str | None]]] = {
    EditMessage: (OP_EDIT_MESSAGE, "message"),
    DeleteMessage: (OP_DELETE_MESSAGE, None),
    EditComment: (OP_EDIT_COMMENT, "comment"),
    DeleteComment: (OP_DELETE_COMMENT, None),
}

PONG: Final = encode(Pong())
_CHANGE_TYPES: Final = frozenset(
    kind.__struct_config__.tag  # type: ignore[attr-defined]
    for kind in _CHANGE_EVENTS
)
_SEND_TYPES: Final = frozenset(
    (SendMessage.__struct_config__.tag, SendComment.__struct_config__.tag)
)


def _refused(event: object, data: bytes | str) -> Refused:
    """Which request an ERROR refuses (events.ErrorEvent): a send's client_id; any other
    event's request_id, room and post; an edit's or deletion's item id. A frame that
    failed validation (`event` None) is read again, loosely, for its client_id (a send's),
    request_id and item id (a change's) alone: only on this rare path, and only ids as a
    client could have made them (a field that failed validation is not sent back)."""
    if isinstance(event, SendMessage | SendComment):  # the client_id says which
        return NOTHING_REFUSED if event.client_id is None else Refused(client_id=event.client_id)
    if type(event) in _CHANGE_EVENTS:
        # An edit or deletion is one of an item's: its id says which (its room would not,
        # and a client waiting for a join there must not take it for the join's refusal).
        return Refused(id=event.id)  # type: ignore[attr-defined]
    if event is not None:
        return Refused(
            request_id=getattr(event, "request_id", None),
            room=getattr(event, "room", None),
            post_id=_post_id(getattr(event, "post_id", None)),
        )
    try:
        sent = events.sent_id_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return NOTHING_REFUSED
    item = sent.id
    return Refused(
        client_id=_id_or_none(sent.client_id) if sent.type in _SEND_TYPES else None,
        request_id=_id_or_none(sent.request_id),
        id=item if sent.type in _CHANGE_TYPES and type(item) is int and 0 < item < 2**63 else None,
    )


def _id_or_none(value: object) -> str | None:
    if type(value) is str and 0 < len(value) <= events.CLIENT_ID_MAX and value.isprintable():
        return value
    return None


def _post_id(ref: object) -> int | None:
    if ref is None:
        return None
    try:
        return post_id_of(ref)  # type: ignore[arg-type]
    except ProtocolError:
        return None


class Chat:
    """Rooms, posts and their traffic; one per process, wired in `server.py`."""

    def __init__(
        self,
        hub: Hub,
        store: Store,
        limits: Limits,
        broker: Broker | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.hub = hub
        # Tokens and room rules (auth.py); by default none: anonymous, as the original.
        self.auth = auth or Auth(Settings())
        self.moderation = Moderation()  # bans and mutes, loaded when the store opens
        self.store = store
        self.limits = limits
        self.broker = broker or LocalBroker()
        self.clustered = self.broker.clustered
        # Committed rows to the hub (and replays): the store calls its on_committed.
        self.delivery = Delivery(hub, store, self.broker, self.reply_error)
        self.on_committed = self.delivery.on_committed
        self.rooms = Rooms(hub, limits, self.broker)
        self.connections = Connections(hub, limits, self.rooms.left, self._closed)
        self.history = History(
            hub, store, self.delivery, self.spawn, max(64 * 1024, hub.high_water // 4)
        )
        self.store_health = StoreHealth(store)
        self.search = Search(store, self.auth)  # GET /api/v1/search
        self.started = time.monotonic()
        self.comments_in = 0
        self.errors: Counter[str] = Counter()
        self.draining = False  # a SIGTERM started the drain: no new WebSockets
        # Token users' rate-limit buckets, and how many connections each has open.
        self._per_user = limits.rate > 0
        self._user_buckets: dict[str, Bucket] = {}
        self._user_connections: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        # A text frame from a client, on either port: a plain chat message goes its own way
        # to the store, in C (_lane.pyx); anything else comes back here (`handle`).
        self.lane = Lane(
            self,
            events.client_decoder.decode,
            SendMessage,
            Write,
            OP_MESSAGE,
            limits,
            events.NAME_MAX,
        )
        self.receive = self.lane.receive

    @property
    def messages_in(self) -> int:
        """Chat messages received (from sockets and REST) and queued for the store."""
        return self.lane.messages_in

    async def on_store_open(self) -> None:
        await self.delivery.on_store_open()
        self.moderation.load(await self.store.bans())

    # ------------------------------------------------------------------ events

    def admit(self, member: Member) -> bool:
        """The rate limits (when on): False if this frame is refused (and the refusal is
        answered, or the flooder closed)."""
        session: Session = member.state
        now = time.monotonic()
        if not session.admit(self.limits, now) or (
            session.identity is not None and self._per_user and not self._user_admits(session, now)
        ):
            self._refuse_flood(member, session)
            return False
        return True

    def handle(self, member: Member, data: bytes | str) -> None:
        """A text frame the lane did not take (it did not decode, or is too large): parsed
        here, for its ERROR."""
        event = None
        try:
            event = parse(data, self.limits)
            self._dispatch(member, event)
        except FastchatError as exc:
            self.reply_error(member, exc.code, exc.message, _refused(event, data))
        except Exception:
            self._failed(member, _refused(event, data))

    def handle_event(self, member: Member, event: AnyClientEvent, data: bytes | str) -> None:
        """An event the lane decoded and did not take: anything but a plain chat message
        (or one the checks refuse: `check` says why)."""
        try:
            self._dispatch(member, check(event, self.limits))
        except FastchatError as exc:
            self.reply_error(member, exc.code, exc.message, _refused(event, data))
        except Exception:
            self._failed(member, _refused(event, data))

    def _failed(self, member: Member, about: Refused) -> None:
        """Handling an event raised what no rule refuses, now or in its task (`spawn`): a
        bug. Logged with its traceback and answered `internal_error`, saying `about` which
        request; the connection stays open. (Left to picows, an exception in a frame's
        handling closed the connection, 1011 with no reason, and the client could not tell
        which of its requests failed.)"""
        log.exception("handling an event failed", extra={"conn": member.state.conn_id})
        if not member.closed:
            self.reply_error(member, ErrorCode.INTERNAL, "the server failed this request", about)

    def _dispatch(self, member: Member, event: AnyClientEvent) -> None:
        kind = type(event)
        if kind is SendMessage:
            self._send_message(member, event)  # type: ignore[arg-type]
        elif kind is SendComment:
            self._send_comment(member, event)  # type: ignore[arg-type]
        elif kind is JoinRoom:
            self._join_room(member, event)  # type: ignore[arg-type]
        elif kind is LeaveRoom:
            self.rooms.leave(member, event)  # type: ignore[arg-type]
        elif kind is Typing:
            self._typing(member, event)  # type: ignore[arg-type]
        elif kind is TypingStopped:
            self._typing_stopped(member, event)  # type: ignore[arg-type]
        elif kind is GetHistory:
            self._history(member, event)  # type: ignore[arg-type]
        elif kind is JoinPost:
            self._join_post(member, event)  # type: ignore[arg-type]
        elif kind is LeavePost:
            self.rooms.leave_post(member, event)  # type: ignore[arg-type]
        elif kind is GetMembers:
            self.rooms.members(member, event)  # type: ignore[arg-type]
        elif kind is Authenticate:
            self._authenticate(member, event)  # type: ignore[arg-type]
        elif kind is Ping:
            self.hub.send(member, PONG)
        elif kind in _CHANGE_EVENTS:
            self._change(member, event)

    def _user_admits(self, session: Session, now: float) -> bool:
        """A token user's own bucket, shared by all its connections: ten tabs do not get
        ten budgets. A refusal counts as a strike of this connection."""
        bucket = self._user_buckets.get(session.identity.sub)
        if bucket is None or bucket.admit(self.limits, now):
            return True
        session.strikes += 1
        return False

    def _refuse_flood(self, member: Member, session: Session) -> None:
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

    def reply_error(
        self, member: Member, code: str, message: str, about: Refused = NOTHING_REFUSED
    ) -> None:
        """An ERROR to `member`; `about`: which of its requests it refuses."""
        self.errors[code] += 1
        self.hub.send(member, error_payload(code, message, about))

    def _send_message(self, member: Member, ev: SendMessage) -> None:
        if "r:" + ev.room not in member.rooms:
            raise ProtocolError(
                ErrorCode.NOT_JOINED, f"join room {ev.room!r} (JOIN_ROOM) before sending to it"
            )
        if self.auth.enabled:
            session: Session = member.state
            identity = session.identity
            if identity is not None:
                if ev.user != identity.name:
                    name_for(identity, ev.user)  # raises name_mismatch
                if self.moderation:
                    self.moderation.check_post(identity.sub, ev.room, now_ms())
            no_post = session.no_post
            if no_post is not None and ev.room in no_post:
                raise no_post[ev.room]
        self.lane.messages_in += 1
        identity = member.state.identity
        self.store.submit(
            Write(
                OP_MESSAGE,
                ev.room,
                ev.user,
                ev.message,
                ev.client_id,
                member,
                sub=None if identity is None else identity.sub,
            )
        )

    def _send_comment(self, member: Member, ev: SendComment) -> None:
        # Whether the post exists is checked inside the write transaction (post_not_found).
        post_id = post_id_of(ev.post_id)
        identity = member.state.identity
        user = name_for(identity, ev.user)
        if identity is not None and self.moderation:
            self.moderation.check_post(identity.sub, EVERYWHERE, now_ms())
        self.comments_in += 1
        self.store.submit(
            Write(
                OP_COMMENT,
                post_id,
                user,
                ev.comment,
                ev.client_id,
                member,
                sub=None if identity is None else identity.sub,
            )
        )

    def _change(self, member: Member, ev: Any) -> None:
        """EDIT_MESSAGE, DELETE_MESSAGE, EDIT_COMMENT, DELETE_COMMENT: judged by the store
        against the item in the write transaction; every member of its room hears it."""
        op, field = _CHANGE_EVENTS[type(ev)]
        identity: Identity | None = member.state.identity
        edit = self.auth.edit(identity, ev.id)
        assert identity is not None
        scope: str | int | None
        if op in (OP_EDIT_MESSAGE, OP_DELETE_MESSAGE):
            room: str | None = ev.room
            if room is not None:
                self.auth.check_join(identity, room)
            scope = room
        else:
            scope = None if ev.post_id is None else post_id_of(ev.post_id)
        edit = self._may_change(identity, scope if isinstance(scope, str) else EVERYWHERE, edit)
        text = "" if field is None else getattr(ev, field)
        write = Write(op, scope, identity.name, text, None, member, None, edit, identity.sub)  # type: ignore[arg-type]
        self.store.submit(write)

    def _may_change(self, identity: Identity, room: str, edit: Edit) -> Edit:
        """A banned or muted user changes nothing it could not post (moderators may): here
        for the room named (or everywhere), in the store for the item's own room."""
        if not self.moderation or identity.moderator:
            return edit
        now = now_ms()
        self.moderation.check_post(identity.sub, room, now)
        return edit._replace(silenced=self.moderation.silenced(identity.sub, now) or None)

    def _join_room(self, member: Member, ev: JoinRoom) -> None:
        identity = member.state.identity
        user = name_for(identity, ev.user, JOIN_DEFAULT_USER)
        self.auth.check_join(identity, ev.room)
        if identity is not None and self.moderation:
            self.moderation.check_join(identity.sub, ev.room, now_ms())
        self.rooms.check_budget(member, "r:" + ev.room)
        if self.auth.enabled:
            self._rule_posts(member.state, ev.room)
        if ev.last_id is None:
            self.rooms.join(member, ev.room, user, 0, self.delivery.change_mark())
        else:
            self.history.resume(
                member,
                "r:" + ev.room,
                "messages",
                ev.room,
                ev.last_id,
                ev.last_change,
                lambda sent, change: self.rooms.join(member, ev.room, user, sent, change),
            )

    def _typing_stopped(self, member: Member, ev: TypingStopped) -> None:
        self.rooms.typing_stopped(member, ev.room, name_for(member.state.identity, ev.user))

    def _typing(self, member: Member, ev: Typing) -> None:
        self.rooms.typing(member, ev.room, name_for(member.state.identity, ev.user))

    def _history(self, member: Member, ev: GetHistory) -> None:
        if ev.room is not None:
            self.auth.check_join(member.state.identity, ev.room)
        self.history.request(member, ev)

    def _join_post(self, member: Member, ev: JoinPost) -> None:
        post_id = post_id_of(ev.post_id)
        user = name_for(member.state.identity, ev.user, JOIN_DEFAULT_USER)
        self.rooms.check_budget(member, f"p:{post_id}")
        self.spawn(
            member, self._join_post_checked(member, user, ev, post_id), Refused(post_id=post_id)
        )

    async def _join_post_checked(
        self, member: Member, user: str, ev: JoinPost, post_id: int
    ) -> None:
        if not await self.store.post_exists(post_id):
            raise ProtocolError(ErrorCode.POST_NOT_FOUND, f"post {post_id} does not exist")
        if member.closed:
            return
        key = f"p:{post_id}"
        self.rooms.check_budget(member, key)  # again: other joins may have run meanwhile
        if ev.last_id is None:
            self.rooms.join_post(member, post_id, user, 0, self.delivery.change_mark())
        else:
            self.history.resume(
                member,
                key,
                "comments",
                post_id,
                ev.last_id,
                ev.last_change,
                lambda sent, change: self.rooms.join_post(member, post_id, user, sent, change),
            )

    # ------------------------------------------------------------------ identity

    def identify(self, member: Member, identity: Identity | None) -> None:
        """`member` is `identity` (from the handshake's token, or an AUTH): its names are
        the token's from now on, and it is closed (4001) when the token expires, unless a
        fresh one comes first."""
        session: Session = member.state
        if session.identity is None and identity is not None:
            sub = identity.sub
            self._user_connections[sub] += 1
            if sub not in self._user_buckets:
                self._user_buckets[sub] = Bucket(self.limits, time.monotonic())
        session.identity = identity
        if session.names:  # an AUTH after joins: the rooms' rules, for this identity
            session.no_post = None
            for key in list(session.names):
                if key[0] == "r":
                    self._rule_posts(session, key[2:])
        if session.expiry is not None:
            session.expiry.cancel()
            session.expiry = None
        if identity is not None:
            left = max(0.0, identity.exp - time.time())
            session.expiry = asyncio.get_running_loop().call_later(left, self._expired, member)

    def _rule_posts(self, session: Session, room: str) -> None:
        """Whether `session` may post in `room` (read-only rooms, a token's `publish`),
        decided once, at the join: CHAT_MESSAGE then looks it up."""
        try:
            self.auth.check_publish(session.identity, room)
        except FastchatError as refusal:
            if session.no_post is None:
                session.no_post = {}
            session.no_post[room] = refusal
        else:
            if session.no_post is not None:
                session.no_post.pop(room, None)

    def _authenticate(self, member: Member, ev: Authenticate) -> None:
        identity = self.auth.verify(ev.token)
        current: Identity | None = member.state.identity
        if current is not None and current.sub != identity.sub:
            raise FastchatError(
                ErrorCode.TOKEN_CLAIMS,
                f"this connection is {current.sub!r}: a fresh token must be for the same sub",
            )
        self.identify(member, identity)
        reply = Authenticated(
            sub=identity.sub, user=identity.name, expires_at=format_ms(int(identity.exp * 1000))
        )
        self.hub.send(member, encode(reply))

    def _expired(self, member: Member) -> None:
        member.state.expiry = None
        if not member.closed:
            self.errors[ErrorCode.TOKEN_EXPIRED] += 1
            self.hub.close(
                member, CLOSE_CODE[ErrorCode.TOKEN_EXPIRED], "token expired: connect again"
            )

    def _closed(self, member: Member) -> None:
        session: Session = member.state
        if session.expiry is not None:
            session.expiry.cancel()
        if session.identity is not None:
            sub = session.identity.sub
            self._user_connections[sub] -= 1
            if self._user_connections[sub] <= 0:
                del self._user_connections[sub], self._user_buckets[sub]

    def spawn(
        self, member: Member, work: Coroutine[Any, Any, None], about: Refused = NOTHING_REFUSED
    ) -> None:
        """Run `work` (an event that must read the database) as a task; a refusal it raises
        is answered to `member` as an ERROR event, as in `receive`, saying `about` which
        request it was."""

        async def guarded() -> None:
            try:
                await work
            except FastchatError as exc:
                if not member.closed:
                    self.reply_error(member, exc.code, exc.message, about)
            except self.history.read_errors as exc:
                if not isinstance(exc, StoreError):
                    log.warning("a database read failed: %r", exc)
                if not member.closed:
                    self.reply_error(member, ErrorCode.STORE_UNAVAILABLE, unreadable(exc), about)
            except Exception:  # never "Task exception was never retrieved"
                self._failed(member, about)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ other nodes

    def on_hint(self, key: str, max_id: int) -> None:
        """Another node committed rows of room `key` up to `max_id`."""
        self.delivery.on_hint(key, max_id)

    def on_relay(self, key: str, payload: bytes) -> None:
        """Another node's ephemeral event (typing) for room `key`, or a moderator's ban
        or mute set or lifted there (already stored: this node applies it)."""
        if key.startswith(CHANGE_RELAY):
            self.delivery.on_relayed_change(key[len(CHANGE_RELAY) :], payload)
            return
        if key == MODERATION_KEY:
            change = msgspec.json.decode(payload)
            if change[0] == "put":
                self._banned(self.moderation.put(tuple(change[1])))
            else:
                self.moderation.drop(*change[1])
            return
        self.rooms.on_relay(key, payload)

    def on_presence(self, node: str, key: str, view: RoomView, connections: int) -> None:
        self.rooms.on_presence(node, key, view, connections)

    def on_snapshot(self, node: str, snapshot: Snapshot) -> None:
        self.rooms.on_snapshot(node, snapshot)

    # ------------------------------------------------------------------ REST side

    async def post_message(
        self,
        room: str,
        user: str,
        text: str,
        client_id: str | None = None,
        sub: str | None = None,
    ) -> Message:
        if sub is not None and self.moderation:
            self.moderation.check_post(sub, room, now_ms())  # banned or muted: refused
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.lane.messages_in += 1
        self.store.submit(Write(OP_MESSAGE, room, user, text, client_id, future=future, sub=sub))
        return await future

    async def post_comment(
        self,
        post_id: int,
        user: str,
        text: str,
        client_id: str | None = None,
        sub: str | None = None,
    ) -> Comment:
        if sub is not None and self.moderation:
            self.moderation.check_post(sub, EVERYWHERE, now_ms())
        future: asyncio.Future[Comment] = asyncio.get_running_loop().create_future()
        self.comments_in += 1
        self.store.submit(Write(OP_COMMENT, post_id, user, text, client_id, future=future, sub=sub))
        try:
            return await future
        except PostNotFound as exc:
            raise NotFoundError(str(exc)) from None

    # ------------------------------------------------------------------ moderation

    async def ban(
        self, sub: str, room: str, kind: str, seconds: float | None, by: str, reason: str
    ) -> Ban:
        """Ban (or mute) `sub` in `room` ("*": everywhere) for `seconds` (None: for good):
        stored first, then in force; a ban takes the user's sockets out of the room at
        once, each told with an ERROR `banned`."""
        until = None if seconds is None else now_ms() + int(seconds * 1000)
        future: asyncio.Future[Row] = asyncio.get_running_loop().create_future()
        self.store.submit(Write(OP_BAN, room, sub, kind, future=future, extra=(until, by, reason)))
        ban = self.moderation.put(await future)
        self._banned(ban)
        if self.clustered:
            self.broker.relay(MODERATION_KEY, encode(("put", ban)))
        return ban

    def _banned(self, ban: Ban) -> None:
        """A ban takes its user's sockets here out of the room (or all rooms) at once."""
        if ban.kind != "ban":
            return
        refusal = moderation_refusal(ErrorCode.BANNED, ban, ban.room)
        for member in self.hub.connections():
            identity = member.state.identity
            if identity is not None and identity.sub == ban.sub and not member.closed:
                self.rooms.kick(member, ban.room, refusal)

    async def unban(self, sub: str, room: str, kind: str) -> Ban | None:
        """Lift a ban or mute; the lifted one, or None if there was none."""
        future: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self.store.submit(Write(OP_UNBAN, room, sub, kind, future=future))
        row = await future
        self.moderation.drop(sub, room, kind)
        if self.clustered:
            self.broker.relay(MODERATION_KEY, encode(("drop", (sub, room, kind))))
        return None if row is None else Ban(*row)

    async def change(
        self,
        op: int,
        item_id: int,
        scope: str | int,
        identity: Identity | None,
        text: str = "",
    ) -> Message | Comment:
        """An edit or deletion over REST: the item as it now is (a deletion: its tombstone).
        Raises FastchatError (unauthorized, not_found, not_author, edit_window_closed)."""
        edit = self.auth.edit(identity, item_id)
        assert identity is not None
        edit = self._may_change(identity, scope if isinstance(scope, str) else EVERYWHERE, edit)
        future: asyncio.Future[Message | Comment] = asyncio.get_running_loop().create_future()
        self.store.submit(
            Write(op, scope, identity.name, text, None, None, future, edit, identity.sub)
        )
        return await future

    async def create_post(
        self, title: str, content: str, author: str, slug: str | None = None
    ) -> Post:
        """A new post; with `slug` (a thread of embed.js), the post made for it before if
        there is one: the slug is the write's idempotency key."""
        future: asyncio.Future[Post] = asyncio.get_running_loop().create_future()
        self.store.submit(Write(OP_POST, title, author, content, slug, future=future))
        return await future

    async def stats(self) -> dict[str, Any]:
        hub = self.hub
        counts = await self.store.counts()
        return {
            "node": self.broker.node,
            "connections": {
                "ws_fast": self.connections.open["fast"],
                "ws_http": self.connections.open["http"],
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
            "replays_waiting": self.delivery.replays_waiting,
            "resumes": dict(self.delivery.resumes),
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
                "thread_batches": self.store.thread_batches,
            },
            "errors": dict(self.errors),
            "cluster": self.rooms.cluster_stats(),
            "uptime_seconds": round(time.monotonic() - self.started, 3),
        }
