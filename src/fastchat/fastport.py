"""The fast WebSocket port: picows on WS_PORT, path /ws, same protocol as PORT/ws.

picows hands us raw frames: it leaves UTF-8 validation and reassembly of fragmented
messages to the application, so both are done here before the protocol sees a message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from fastchat._hub import Member
from fastchat.config import Settings
from fastchat.protocol import ErrorCode, origin_allowed
from fastchat.service import Chat

log = logging.getLogger("fastchat.fastport")

# Measured (DESIGN.md): with read_buffer_init_size=1024 and the loop's own transports an idle
# picows connection costs about 8.7 kB of server RSS; the 16 kB default costs more.
READ_BUFFER_INIT = 1024


class FastListener(WSListener):
    __slots__ = ("_chat", "_fragments", "_limit", "member")

    def __init__(self, chat: Chat) -> None:
        super().__init__()
        self._chat = chat
        self._limit = chat.limits.max_frame_bytes
        self._fragments: bytearray | None = None
        self.member: Member | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        peer = transport.underlying_transport.get_extra_info("peername")
        self.member = self._chat.connect_fast(transport, f"{peer[0]}:{peer[1]}" if peer else "")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.member is not None:
            self._chat.disconnect(self.member)
            self.member = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        member = self.member
        if member is None:
            return
        kind = frame.msg_type
        if transport.is_close_frame_sent and kind != WSMsgType.CLOSE:
            return  # we are closing it: only its close frame matters now
        if kind == WSMsgType.TEXT and frame.fin and self._fragments is None:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._close(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text frame")
                return
            self._chat.receive(member, text)
        elif kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind in (WSMsgType.PING, WSMsgType.PONG):
            return  # picows answers pings itself
        elif kind == WSMsgType.TEXT:  # first fragment of a fragmented text message
            if self._fragments is not None:
                self._close(
                    transport, WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one"
                )
                return
            self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif kind == WSMsgType.CONTINUATION:
            if self._fragments is None:
                self._close(transport, WSCloseCode.PROTOCOL_ERROR, "continuation without a start")
                return
            self._fragments += frame.get_payload_as_memoryview()
            if len(self._fragments) > self._limit:
                self._fragments = None
                self._close(transport, WSCloseCode.MESSAGE_TOO_BIG, "fragmented message too large")
                return
            if frame.fin:
                data = bytes(self._fragments)
                self._fragments = None
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    self._close(
                        transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message"
                    )
                    return
                self._chat.receive(member, text)
        elif kind == WSMsgType.BINARY:
            self._chat.reply_error(
                member,
                ErrorCode.UNSUPPORTED_DATA,
                "binary frames are not supported; send JSON text",
            )

    def _close(self, transport: WSTransport, code: WSCloseCode, reason: str) -> None:
        transport.send_close(code, reason.encode())
        transport.disconnect()


def _refuse(status: int, reason: str) -> WSUpgradeResponseWithListener:
    response = WSUpgradeResponse.create_error_response(
        status, reason.encode(), {"Content-Type": "text/plain; charset=utf-8"}
    )
    return WSUpgradeResponseWithListener(response, None)


async def start_fast_port(chat: Chat, settings: Settings) -> asyncio.Server:
    # A frame over the hard cap is refused by picows with close 1009; frames between the
    # protocol limit and the cap get a readable ERROR instead and the connection stays open.
    hard_cap = max(chat.limits.max_frame_bytes * 4, 1 << 20)
    origins = settings.origins
    max_connections = settings.max_connections
    hub = chat.hub

    def factory(request: WSUpgradeRequest) -> Any:
        if request.path.partition(b"?")[0] != b"/ws":
            return None  # picows answers 404
        headers = request.headers
        if not origin_allowed(headers.get("Origin"), headers.get("Host"), origins):
            chat.errors["origin_refused"] += 1
            log.warning(
                "handshake refused: origin", extra={"port": "fast", "origin": headers.get("Origin")}
            )
            return _refuse(403, "origin not allowed")
        if hub.fast_members + hub.sink_members >= max_connections:
            chat.errors["too_many_connections"] += 1
            log.warning("handshake refused: too many connections", extra={"port": "fast"})
            return _refuse(503, "too many connections, try again later")
        return FastListener(chat)

    return await ws_create_server(
        factory,
        settings.host,
        settings.ws_port,
        max_frame_size=hard_cap,
        read_buffer_init_size=READ_BUFFER_INIT,
        use_aiofastnet=False,
        websocket_handshake_timeout=10,
        # Keepalive: a silent client is pinged, and dropped if it does not answer.
        enable_auto_ping=True,
        auto_ping_idle_timeout=settings.ping_interval,
        auto_ping_reply_timeout=settings.ping_timeout,
        backlog=4096,
        reuse_address=True,
    )
