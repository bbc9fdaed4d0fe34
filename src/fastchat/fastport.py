"""The fast WebSocket port: picows on WS_PORT, path /ws, same protocol as PORT/ws.

picows hands us raw frames: it leaves UTF-8 validation and reassembly of fragmented
messages to the application, so both are done here before the protocol sees a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import unquote

from picows import (
    WSAutoPingStrategy,
    WSCloseCode,
    WSFrame,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
)
from picows.picows import WSProtocol  # type: ignore[attr-defined]

from fastchat import events, framing
from fastchat._hub import Member
from fastchat._listener import Listener
from fastchat.auth import COOKIE, Identity
from fastchat.config import Settings
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import ErrorBody
from fastchat.protocol import DROP, PING, origin_allowed
from fastchat.service import Chat

log = logging.getLogger("fastchat.fastport")

# A client's protocol violations are told at INFO at most once per this many seconds, with
# the count of those not told: any client can send them at will, so one line each would let
# it fill the log.
VIOLATION_LOG_SECONDS: Final = 10.0

# Measured (DESIGN.md): with read_buffer_init_size=1024 and the loop's own transports an idle
# picows connection costs about 8.7 kB of server RSS; the 16 kB default costs more.
READ_BUFFER_INIT = 1024


class FastListener(Listener):
    """One WebSocket connection, either URL: picows' frames through the message rules
    picows leaves to the application (UTF-8, reassembly, reserved bits, close codes: RFC
    6455 5.2, 5.4, 7.4, 8.1, all in framing.py), text to the service. A whole text message
    in one frame takes `_listener.Listener`'s path in C; the rest is here."""

    __slots__ = ("_chat", "_identity", "_port")

    def __init__(self, chat: Chat, port: str = "fast", identity: Identity | None = None) -> None:
        super().__init__()
        self._chat = chat
        self._port = port  # which URL it came in on: "fast" (WS_PORT) or "http" (PORT)
        self.messages = framing.Messages(chat.limits.max_frame_bytes)
        self.member = None
        self.on_text = chat.receive
        self._identity = identity  # from the handshake's token; None: anonymous (for now)

    def on_ws_connected(self, transport: WSTransport) -> None:
        peer = transport.underlying_transport.get_extra_info("peername")
        self.member = self._chat.connections.transport(
            transport, self._port, f"{peer[0]}:{peer[1]}" if peer else ""
        )
        if self._identity is not None:
            self._chat.identify(self.member, self._identity)
            self._identity = None

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        member = self.member
        if member is not None:
            self._chat.connections.close(member)
            self._chat.delivery.on_writable(member)  # a replay waiting on it sees it closed
            self.member = None

    def resume_writing(self) -> None:
        """The socket takes writes again (its buffer fell under the transport's low-water
        mark): a replay waiting for this client to read goes on."""
        if self.member is not None:
            self._chat.delivery.on_writable(self.member)

    def invalid_text(self, transport: WSTransport) -> None:
        self._close(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text frame")

    def other_frame(
        self, transport: WSTransport, frame: WSFrame, member: Member, rsv: bool
    ) -> None:
        action, value = self.messages.frame(
            frame.msg_type.value, bool(frame.fin), rsv, frame.get_payload_as_bytes()
        )
        if action == framing.MESSAGE_TEXT:
            self.on_text(member, value)
        elif action == framing.MESSAGE_BINARY:
            self._on_binary(transport, value)
        elif action == framing.PONG:
            self._pong(transport, member, value)
        elif action == framing.CLOSE:
            code, reason = value
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode(code), reason)
            transport.disconnect()

    def _on_binary(self, transport: WSTransport, data: bytes) -> None:
        assert self.member is not None
        self._chat.reply_error(
            self.member,
            ErrorCode.UNSUPPORTED_DATA,
            "binary frames are not supported; send JSON text",
        )

    def _pong(self, transport: WSTransport, member: Member, payload: bytes) -> None:
        """Answer a ping, within the outbound budget: a client that floods pings and never
        reads the pongs is dropped as a slow consumer (picows' own auto-pong wrote them
        all into the transport's buffer, without limit: 75 MB in 1.2 s in issue 19)."""
        hub = self._chat.hub
        if member.backlog + len(payload) > hub.high_water:  # the hub's queue + the transport's
            hub.drop_slow(member)
            return
        transport.send_pong(payload)

    def _close(self, transport: WSTransport, code: WSCloseCode, reason: str) -> None:
        transport.send_close(code, reason.encode())
        transport.disconnect()


class EchoListener(FastListener):
    """Echoes messages back, for the Autobahn conformance suite only (CONFORMANCE_ECHO=1,
    path /echo): the same frame checks as the chat path, with the echo that the suite's
    cases need to judge them. Never joins rooms, never stores."""

    __slots__ = ()

    def __init__(self, chat: Chat, port: str = "fast") -> None:
        super().__init__(chat, port)
        self.on_text = _echo_text  # a function, not a bound method: no cycle through self

    def _on_binary(self, transport: WSTransport, data: bytes) -> None:
        transport.send(WSMsgType.BINARY, data)


def _echo_text(member: Member, text: str) -> None:
    assert member.transport is not None
    member.transport.send(WSMsgType.TEXT, text.encode())


class PicowsLog(logging.LoggerAdapter[logging.Logger]):
    """picows' logger, with what a client causes told as the client's doing, not an error.

    picows logs every protocol violation a client commits (an unmasked frame, a bad opcode,
    an oversized control frame, a frame over the hard cap: `WS parser error` in picows.pyx)
    at ERROR, one line each, and flow control (a client reading slowly) at WARNING. Those are
    counted (errors["protocol_violation"]) and told by `fastchat.fastport` at INFO, at most
    once per VIOLATION_LOG_SECONDS; flow control goes to DEBUG (the hub drops slow consumers
    and says so). Everything else picows logs passes through unchanged. The texts are the
    pinned picows' own; should an upgrade change them, the test of violations fails.
    """

    VIOLATION: Final = "WS parser error: %s, initiate disconnect"
    FLOW_CONTROL: Final = frozenset(
        {
            "Protocol writing pause requested, crossed writing buffer high-watermark",
            "Protocol writing resume requested, crossed writing buffer low-watermark",
        }
    )

    def __init__(self, errors: Counter[str], port: str) -> None:
        # A LoggerAdapter, not a Logger: picows then does not build a child logger for every
        # connection (~0.6 kB each).
        super().__init__(logging.getLogger(f"picows.{port}"), {})
        self._errors = errors
        self._quiet_until = 0.0
        self._untold = 0

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg == self.VIOLATION:
            self._violation(args[0] if args else ())
        elif isinstance(msg, str) and msg in self.FLOW_CONTROL:
            super().log(logging.DEBUG, msg, *args, **kwargs)
        else:
            super().log(level, msg, *args, **kwargs)

    def _violation(self, exc_args: tuple[Any, ...]) -> None:
        self._errors["protocol_violation"] += 1
        now = time.monotonic()
        if now < self._quiet_until:
            self._untold += 1
            return
        self._quiet_until = now + VIOLATION_LOG_SECONDS
        untold, self._untold = self._untold, 0
        # picows passes the WSProtocolError's args: (close code, reason).
        code, reason = exc_args if len(exc_args) == 2 else (None, exc_args)
        log.info(
            "a client broke the WebSocket protocol: %s (closed with %s); %d more since the "
            "last such line",
            reason,
            int(code) if code is not None else "?",
            untold,
        )


class ConnectionLog:
    """picows' logger for one connection: the port's PicowsLog, and the one answer that only
    a connection's own log call can give in time.

    picows parses one frame ahead of the one it hands over. Two close frames in one read
    (Autobahn case 7.1.2) make its parser refuse the second, with close 1002, before the
    listener has seen the first; RFC 6455 wants the first answered (1000) and the rest
    ignored. picows logs the refusal just before it sends it, and a close frame already
    sent makes its own a no-op: so here, at that log call, the first close is answered.
    Costs one small object per connection (picows builds a child Logger, ~0.6 kB, only for
    a real Logger).

    The protocol holds this log and this log the protocol: a reference cycle, which kept
    every closed connection (its protocol, transports, listener, futures: 14 objects) alive
    until the cyclic GC's next full collection. A 10,000-client storm left 140,000 of them,
    27 MB, after all had left (issue 14). picows' last log call for a connection is
    "Disconnected" (`connection_lost`, before `on_ws_disconnected`), so the cycle is broken
    there and a connection is freed by reference counting the moment it closes."""

    __slots__ = ("_log", "protocol")

    SECOND_CLOSE: Final = "Received CLOSE for the second time"
    DISCONNECTED: Final = "Disconnected"

    def __init__(self, shared: PicowsLog) -> None:
        self._log = shared
        self.protocol: Any = None

    def isEnabledFor(self, level: int) -> bool:
        return self._log.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if msg is self.DISCONNECTED or msg == self.DISCONNECTED:
            self.protocol = None  # break the cycle (see the class)
        elif msg == PicowsLog.VIOLATION and args and self.SECOND_CLOSE in str(args[0]):
            transport = getattr(self.protocol, "transport", None)
            if transport is not None and not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
        self._log.log(level, msg, *args, **kwargs)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._log.exception(msg, *args, **kwargs)


def _refuse(status: int, reason: str) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_error_response(
        status, reason.encode(), {"Content-Type": "text/plain; charset=utf-8"}
    )
    return WSUpgradeResponseWithListener(response, None)


def _refuse_as(error: FastchatError) -> WSUpgradeResponseWithListener:
    """A handshake refused with REST's error body: its status, code and message."""
    response = WSUpgradeResponse.create_error_response(
        error.status,
        events.encode(ErrorBody(error.code, error.message)),
        {"Content-Type": "application/json"},
    )
    return WSUpgradeResponseWithListener(response, None)


def handshake_token(target: bytes, cookie: str | None) -> str | None:
    """The token of a handshake: `?token=` in its URL, else the `fastchat_token` cookie
    (set by an embedding site for its pages). Browsers cannot set headers on a WebSocket."""
    _, _, query = target.partition(b"?")
    if query:
        for pair in query.split(b"&"):
            key, _, raw = pair.partition(b"=")
            if key == b"token" and raw:
                return unquote(raw.decode("latin-1"))
    if cookie:
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return unquote(value)
    return None


def protocol_factory(chat: Chat, settings: Settings, port: str) -> Callable[[], Any]:
    """picows' server protocol for one connection, as both URLs use it: WS_PORT's listener
    makes one per accepted connection, PORT's front (`front.py`) one per `/ws` upgrade."""
    # A frame over the hard cap is refused by picows with close 1009; frames between the
    # protocol limit and the cap get a readable ERROR instead and the connection stays open.
    hard_cap = max(chat.limits.max_frame_bytes * 4, 1 << 20)
    origins = settings.origins
    max_connections = settings.max_connections
    hub = chat.hub
    echo = settings.conformance_echo
    logger = PicowsLog(chat.errors, port)
    auth = chat.auth

    def listener(request: WSUpgradeRequest) -> Any:
        path = request.path.partition(b"?")[0]
        if path != b"/ws":
            if echo and path == b"/echo":
                return EchoListener(chat, port)
            return None  # picows answers 404
        headers = request.headers
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), origins):
            chat.errors[ErrorCode.ORIGIN_REFUSED] += 1
            log.warning(
                "handshake refused: origin", extra={"port": port, "origin": headers.get("Origin")}
            )
            return _refuse(403, "origin not allowed")
        if chat.draining:
            return _refuse(503, "server shutting down, connect again")
        if hub.fast_members + hub.sink_members >= max_connections:
            chat.errors["too_many_connections"] += 1
            log.warning("handshake refused: too many connections", extra={"port": port})
            return _refuse(503, "too many connections, try again later")
        identity = None
        if auth.enabled:
            token = handshake_token(request.path, headers.get("Cookie"))
            try:
                if token is not None:
                    identity = auth.verify(token)
                elif auth.required:
                    raise FastchatError(
                        ErrorCode.UNAUTHORIZED,
                        "this server needs a token: connect to /ws?token=...",
                    )
            except FastchatError as exc:
                chat.errors[exc.code] += 1
                return _refuse_as(exc)  # the token is never logged
        return FastListener(chat, port, identity)

    def make() -> Any:
        connection_log = ConnectionLog(logger)
        protocol = WSProtocol(
            None,  # host and port: a server's are its listener's
            None,  # path: the listener factory routes
            False,  # server side
            listener,
            connection_log,
            True,  # disconnect on an exception in a callback
            10,  # handshake timeout, seconds
            # Keepalive is `keepalive()` below, one sweep for all connections: picows' own
            # auto-ping keeps a timer per connection, about 3 kB of RSS each (measured: 4.8 kB
            # per idle connection without it, 7.8 kB with it).
            False,
            20,
            20,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            False,  # pings are answered by FastListener._pong, within the outbound budget
            hard_cap,
            None,  # extra response headers
            READ_BUFFER_INIT,
        )
        connection_log.protocol = protocol
        return protocol

    return make


async def start_fast_port(chat: Chat, settings: Settings) -> asyncio.Server:
    """WS_PORT: picows on the loop's own transports (not aiofastnet's)."""
    return await asyncio.get_running_loop().create_server(
        protocol_factory(chat, settings, "fast"),
        settings.host,
        settings.ws_port,
        backlog=4096,
        reuse_address=True,
        reuse_port=settings.workers > 1,
    )


async def keepalive(chat: Chat, interval: float, timeout: float) -> None:
    """Ping fast-port clients silent for `interval` seconds; drop those silent `timeout`
    seconds more. One sweep over all connections every half period instead of a timer per
    connection. (Granian keeps the PORT connections alive on its own.)"""
    loop = asyncio.get_running_loop()
    hub = chat.hub
    period = max(0.1, min(interval, timeout) / 2)
    while True:
        await asyncio.sleep(period)
        now = loop.time()
        for member in hub.connections():
            transport = member.transport
            if transport is None or member.closing:
                continue
            session = member.state
            seen, member.seen = member.seen, False
            action = session.keepalive(now, interval, timeout, seen)
            if action == DROP:
                chat.errors["ping_timeout"] += 1
                log.info("connection dropped: no pong", extra={"conn": session.conn_id})
                transport.disconnect(False)
            elif action == PING:
                transport.send_ping()
