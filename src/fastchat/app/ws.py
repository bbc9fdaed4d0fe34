"""The original WebSocket URL, `ws://host:PORT/ws`, through Litestar on Granian.

Same protocol and same rooms as the fast port: each connection joins the hub as a sink
member, and a small writer task sends what the hub delivers, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from fastchat.config import Settings
from fastchat.protocol import ErrorCode, origin_allowed
from fastchat.service import Chat

log = logging.getLogger("fastchat.ws")


class AsgiSink:
    """A hub sink writing to one ASGI WebSocket from its own task."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self._socket = socket
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._write())

    @property
    def backlog(self) -> int:
        return sum(len(p) for p in self._queue)

    def deliver(self, payloads: list[bytes]) -> None:
        self._queue.extend(payloads)
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self._wake.set()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    async def _write(self) -> None:
        send = self._socket.send
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    payload = self._queue.popleft()
                    await send({"type": "websocket.send", "text": payload.decode(), "bytes": None})
                if self.closing is not None:
                    break
        except (WebSocketDisconnect, OSError, RuntimeError):
            pass  # the peer is gone; the receive side sees it too
        if not self.closed.done():
            self.closed.set_result(None)


@websocket("/ws")
async def legacy_ws(socket: WebSocket[Any, Any, Any], chat: Chat, settings: Settings) -> None:
    hub = chat.hub
    refusal = None
    if not origin_allowed(
        socket.headers.get("origin"), socket.headers.get("host"), settings.origins
    ):
        refusal = ("origin_refused", 1008, "origin not allowed")
    elif hub.fast_members + hub.sink_members >= settings.max_connections:
        refusal = ("too_many_connections", 1013, "too many connections, try again later")
    if refusal is not None:
        chat.errors[refusal[0]] += 1
        log.warning(f"handshake refused: {refusal[2]}", extra={"port": "http"})
        # Closing before accepting answers the handshake with HTTP 403.
        await socket.close(code=refusal[1], reason=refusal[2])
        return
    # Counted before the handshake completes, so MAX_CONNECTIONS holds under a rush.
    sink = AsgiSink(socket)
    client = socket.client
    member = chat.connect_sink(sink, f"{client.host}:{client.port}" if client else "")
    try:
        await socket.accept()
    except BaseException:
        chat.disconnect(member)
        await sink.stop()
        raise
    receiving: asyncio.Future[Any] | None = None
    try:
        while True:
            receiving = asyncio.ensure_future(socket.receive())
            await asyncio.wait({receiving, sink.closed}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                # The server closes (shutdown, slow consumer): everything queued was sent.
                receiving.cancel()
                code, reason = sink.closing or (1000, "")
                with contextlib.suppress(Exception):
                    await socket.close(code=code, reason=reason)
                break
            message: dict[str, Any] = dict(receiving.result())
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is not None:
                chat.receive(member, text)
            elif message.get("bytes") is not None:
                chat.reply_error(
                    member,
                    ErrorCode.UNSUPPORTED_DATA,
                    "binary frames are not supported; send JSON text",
                )
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass
    finally:
        chat.disconnect(member)
        await sink.stop()


@websocket("/echo")
async def conformance_echo(socket: WebSocket[Any, Any, Any]) -> None:
    """Echo for the Autobahn conformance suite (CONFORMANCE_ECHO=1 only): Granian's frame
    handling under the same cases as the fast port's."""
    await socket.accept()
    try:
        while True:
            message: dict[str, Any] = dict(await socket.receive())
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await socket.send(
                    {"type": "websocket.send", "text": message["text"], "bytes": None}
                )
            elif message.get("bytes") is not None:
                await socket.send(
                    {"type": "websocket.send", "bytes": message["bytes"], "text": None}
                )
    except (WebSocketDisconnect, OSError, RuntimeError):
        return
