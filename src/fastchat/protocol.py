"""The sans-I/O protocol core: bytes in, a validated event or a ProtocolError out.

No sockets, no loop, no database: the WebSocket layers (picows on WS_PORT, Litestar on PORT)
feed it the payload of each text frame and act on what it returns. Outbound payloads are built
here too, so both ports speak byte-identical JSON.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import msgspec

from fastchat import events
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import AnyClientEvent, ErrorEvent, GetHistory, SendComment, SendMessage
from fastchat.timeparse import TimeFormatError, parse_to_ms


class ProtocolError(FastchatError):
    """A client mistake answered with an `ERROR` event; the connection stays open."""

    def payload(self) -> bytes:
        return error_payload(self.code, self.message)


class Refused(NamedTuple):
    """Which of a client's requests an ERROR refuses: its optional fields
    (events.ErrorEvent)."""

    client_id: str | None = None
    request_id: str | None = None
    room: str | None = None
    post_id: int | None = None
    id: int | None = None  # an edit's or deletion's item


NOTHING_REFUSED: Final = Refused()


def error_payload(code: str, message: str, about: Refused = NOTHING_REFUSED) -> bytes:
    return events.encode(ErrorEvent(code=code, message=message, **about._asdict()))


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """The parts of the settings the protocol enforces; made by `Settings.limits`, which
    holds their defaults (config.py)."""

    max_frame_bytes: int
    max_message_chars: int
    # Token bucket per connection: `rate` events per second, bursts up to `burst`.
    # rate 0 turns the limit off (load tests).
    rate: float
    burst: float
    max_rooms: int
    # Rooms with more members get presence as counts only, at most every PRESENCE_INTERVAL.
    presence_list_max: int
    # The most items one history page may hold (REST `limit`, the HISTORY event's).
    history_limit_max: int
    # This many refusals in a row and the connection is closed (1008).
    max_strikes: int = 50


# Session.keepalive's answers.
KEEP: Final = 0
PING: Final = 1
DROP: Final = 2


class Bucket:
    """A token bucket: `limits.rate` events a second, bursts of `limits.burst`. One per
    connection (its Session), and one per token user shared by all its connections."""

    __slots__ = ("strikes", "tokens", "updated")

    def __init__(self, limits: Limits, now: float) -> None:
        self.tokens = limits.burst
        self.updated = now
        self.strikes = 0

    def admit(self, limits: Limits, now: float) -> bool:
        """Take a token for one event; False if the bucket is empty (the event is refused)."""
        if limits.rate <= 0:
            return True
        tokens = self.tokens + (now - self.updated) * limits.rate
        self.updated = now
        if tokens > limits.burst:
            tokens = limits.burst
        if tokens < 1.0:
            self.tokens = tokens
            self.strikes += 1
            return False
        self.tokens = tokens - 1.0
        self.strikes = 0
        return True


class Session(Bucket):
    """One connection's protocol state: names per room, rate limit, typing throttle.

    Pure state, no I/O: the service owns one per connection (in the hub member's `state`).
    """

    __slots__ = (
        "conn_id",
        "expiry",
        "identity",
        "names",
        "no_post",
        "opened",
        "peer",
        "ping_at",
        "port",
        "quiet_since",
        "resuming",
        "typing_at",
    )

    def __init__(
        self, limits: Limits, now: float, conn_id: int = 0, port: str = "", peer: str = ""
    ) -> None:
        self.conn_id = conn_id
        self.port = port
        self.peer = peer
        self.opened = now
        # Keepalive: when the silence began; when we pinged (0: not waiting for a pong).
        self.quiet_since = now
        self.ping_at = 0.0
        self.names: dict[str, str] = {}  # hub room key -> the user name given at join
        # Made on first use: most connections never type or resume, and an idle connection
        # should cost as little as possible (issue 7: under 6 kB each, all included).
        self.typing_at: dict[str, float] | None = None
        self.resuming: set[str] | None = None
        super().__init__(limits, now)
        # Who it is (auth.Identity, from its token; None: anonymous), and the timer that
        # closes it when the token expires.
        self.identity: Any = None
        self.expiry: Any = None
        # With tokens: the joined rooms it may not post in, and the refusal to give (made
        # at the join, so a send costs one lookup).
        self.no_post: dict[str, Any] | None = None

    def joined(self, key: str, user: str) -> None:
        """Joined room or post `key` as `user` (again, maybe under another name)."""
        self.names[key] = user

    def left(self, key: str) -> str:
        """Left room or post `key`: the name it had there ("" if none)."""
        if self.typing_at:
            self.typing_at.pop(key, None)
        return self.names.pop(key, "")

    def may_type(self, key: str, now: float, interval: float) -> bool:
        """Whether a TYPING in `key` is relayed: at most one per `interval` seconds."""
        typing_at = self.typing_at
        if typing_at is None:
            typing_at = self.typing_at = {}
        if now - typing_at.get(key, 0.0) < interval:
            return False
        typing_at[key] = now
        return True

    def stopped_typing(self, key: str) -> bool:
        """A TYPING_STOPPED in `key`: relayed only if a TYPING there was (and not stopped
        since); the next TYPING is relayed at once."""
        typing_at = self.typing_at
        return typing_at is not None and typing_at.pop(key, None) is not None

    def resume_started(self, key: str) -> bool:
        """A replay of `key` begins; False if one is already running (it will answer)."""
        resuming = self.resuming
        if resuming is None:
            resuming = self.resuming = set()
        if key in resuming:
            return False
        resuming.add(key)
        return True

    def resume_ended(self, key: str) -> None:
        if self.resuming is not None:
            self.resuming.discard(key)

    def keepalive(self, now: float, interval: float, timeout: float, seen: bool) -> int:
        """One keepalive sweep over this connection (fastport.keepalive): KEEP, PING (silent
        for `interval` seconds) or DROP (no pong `timeout` seconds after the ping). Any
        frame since the last sweep (`seen`: the hub member's flag, which the reader sets)
        starts the silence anew."""
        if seen:
            self.quiet_since = now
            self.ping_at = 0.0
        elif self.ping_at:
            if now - self.ping_at >= timeout:
                return DROP
        elif now - self.quiet_since >= interval:
            self.ping_at = now
            return PING
        return KEEP


_decode = events.client_decoder.decode
_NAME_MAX: Final = events.NAME_MAX


def parse(data: bytes | str, limits: Limits) -> AnyClientEvent:
    """Decode and validate one text frame. Raises ProtocolError with a stable code."""
    size = len(data)
    if type(data) is str and size * 4 > limits.max_frame_bytes:
        size = len(data.encode("utf-8", "surrogatepass"))  # the limit is in bytes
    if size > limits.max_frame_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"frame of {size} bytes is over the limit of {limits.max_frame_bytes} bytes",
        )
    try:
        event = _decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.INVALID_JSON, "invalid JSON: nested too deeply") from None
    return check(event, limits)


def check(event: AnyClientEvent, limits: Limits) -> AnyClientEvent:
    """The rules past the decoder's types, for an event decoded from a frame or built from a
    REST request (app/api.py): names, ids, text, page sizes. Raises ProtocolError."""
    kind = type(event)
    if kind is SendMessage and _plain_message(event, limits):  # type: ignore[arg-type]
        return event
    return _validate(event, kind, limits)


def _plain_message(msg: SendMessage, limits: Limits) -> bool:
    """True if a chat message passes every check of `_validate`, inline: every chat message
    comes this way, and the generic loops over fields cost ~1 us of each (issue 14). False
    sends it through `_validate`, which raises the error to give."""
    room, user, client_id, text = msg.room, msg.user, msg.client_id, msg.message
    return (
        0 < len(room) <= _NAME_MAX
        and room.isprintable()
        and not room.isspace()
        and "/" not in room
        and 0 < len(user) <= _NAME_MAX
        and user.isprintable()
        and not user.isspace()
        and (client_id is None or client_id.isprintable())
        and 0 < len(text) <= limits.max_message_chars
        and "\x00" not in text
        and not text.isspace()
    )


def _validate(event: AnyClientEvent, kind: type, limits: Limits) -> AnyClientEvent:
    """The checks the decoder cannot make: names, client ids, texts."""
    for field in _NAME_FIELDS[kind]:
        value = getattr(event, field)
        if value is not None:
            check_name(field, value)
    for field in _ID_FIELDS[kind]:
        value = getattr(event, field)
        if value is not None and not value.isprintable():
            raise ProtocolError(ErrorCode.INVALID_FIELD, f"`{field}` must be printable")
    if isinstance(event, SendMessage):
        check_text("message", event.message, limits)
    elif isinstance(event, SendComment):
        check_text("comment", event.comment, limits)
    elif isinstance(event, GetHistory):
        check_limit(event.limit, limits)
    elif isinstance(event, events.EditMessage):
        check_text("message", event.message, limits)
    elif isinstance(event, events.EditComment):
        check_text("comment", event.comment, limits)
    return event


def check_limit(limit: int, limits: Limits) -> int:
    """A history page's size, for the socket and REST alike."""
    if not 1 <= limit <= limits.history_limit_max:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD,
            f"limit must be between 1 and {limits.history_limit_max}, got {limit}",
        )
    return limit


def check_name(field: str, value: str) -> str:
    """A user or room name, by the same rule on the socket and over REST (whose decoders
    have checked the length already). Room names may not hold '/': REST addresses a room
    as one path segment, so a room with one would be stored and never readable there."""
    if not (valid_name(value) and (field != "room" or "/" not in value)):
        rule = ROOM_RULE if field == "room" else NAME_RULE
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"`{field}` must be {rule}")
    return value


def post_id_of(ref: int | str) -> int:
    """The numeric id behind a post reference ("123" or 123). Raises ProtocolError."""
    if type(ref) is int:
        return ref
    text = str(ref).strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 18 and int(text) > 0:
        return int(text)
    raise ProtocolError(
        ErrorCode.INVALID_FIELD, f"post_id must be a positive integer, got {str(ref)[:24]!r}"
    )


def time_of(value: str | int | float | None) -> int | None:
    """Unix ms of a client-supplied time (any accepted format). Raises ProtocolError."""
    if value is None:
        return None
    try:
        return parse_to_ms(value)
    except TimeFormatError as exc:
        raise ProtocolError(ErrorCode.INVALID_TIME, str(exc)) from None


def check_text(field: str, text: str, limits: Limits) -> str:
    if not text.strip():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"`{field}` must not be empty")
    if "\x00" in text:  # never meant as text, and PostgreSQL cannot store it
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"`{field}` must not contain NUL characters")
    if len(text) > limits.max_message_chars:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"`{field}` is {len(text)} characters, over the limit of {limits.max_message_chars}",
        )
    return text


_TYPES_HINT: Final = ", ".join(events.CLIENT_EVENT_TYPES)


def origin_allowed(origin: str | None, host: str | None, allowed: frozenset[str]) -> bool:
    """Cross-site WebSocket hijacking guard.

    Clients that send no Origin (not a browser) are let in. A browser's Origin must be listed
    in `allowed` ('*' allows any) or, when nothing is listed, name the same host as the
    request's Host header (any port: the page is on PORT, the fast socket on WS_PORT).
    """
    if not origin:
        return True
    origin = origin.strip().rstrip("/").lower()
    if "*" in allowed or origin in allowed:
        return True
    if allowed:
        return False
    origin_host = origin.partition("://")[2].rpartition("@")[2]
    return host is not None and _hostname(origin_host) == _hostname(host.strip().lower())


def _hostname(hostport: str) -> str:
    if hostport.startswith("["):  # [v6]:port
        return hostport.partition("]")[0] + "]"
    return hostport.partition(":")[0]


NAME_RULE: Final = (
    f"1-{events.NAME_MAX} characters, not blank, without control or invisible characters"
)
ROOM_RULE: Final = NAME_RULE + ", without '/'"
# Which fields of each event are names (rooms, users) and which are client-chosen ids.
_NAME_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    events.JoinRoom: ("room", "user"),
    events.LeaveRoom: ("room",),
    events.SendMessage: ("room", "user"),
    events.SendComment: ("user",),
    events.Typing: ("room", "user"),
    events.TypingStopped: ("room", "user"),
    events.GetHistory: ("room",),
    events.JoinPost: ("user",),
    events.LeavePost: (),
    events.GetMembers: ("room", "after"),
    events.Authenticate: (),  # the token is auth.py's to judge
    events.Ping: (),
    events.EditMessage: ("room",),
    events.DeleteMessage: ("room",),
    events.EditComment: (),
    events.DeleteComment: (),
}
_ID_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    events.SendMessage: ("client_id",),
    events.SendComment: ("client_id",),
    events.GetHistory: ("request_id",),
    events.GetMembers: ("request_id",),
}
_ID_FIELDS.update({kind: () for kind in _NAME_FIELDS if kind not in _ID_FIELDS})


def valid_name(value: str) -> bool:
    """The rule for user and room names, shared by the socket and REST: str.isprintable()
    refuses control (Cc), format (Cf: zero-width, bidi overrides), separator (Zl, Zp, and
    spaces other than ' ') and unassigned characters."""
    return 0 < len(value) <= events.NAME_MAX and value.isprintable() and not value.isspace()


def _classify(detail: str) -> ProtocolError:
    if detail.endswith("at `$.type`"):
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown event type; expected one of {_TYPES_HINT}"
        )
    if detail == "Object missing required field `type`":
        return ProtocolError(
            ErrorCode.INVALID_FIELD, f"missing `type`; expected one of {_TYPES_HINT}"
        )
    if detail.startswith("Expected `object`"):
        return ProtocolError(ErrorCode.INVALID_FIELD, f"an event must be a JSON object: {detail}")
    return ProtocolError(ErrorCode.INVALID_FIELD, detail)
