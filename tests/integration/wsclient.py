"""A small JSON WebSocket client for the tests, on the `websockets` library."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any, Protocol

import websockets

from tests.conftest import TIMEOUT


class _Server(Protocol):
    ws_fast: str
    ws_http: str


@contextlib.asynccontextmanager
async def two_in_a_room(
    server: _Server, room: str, names: tuple[str, str] = ("alice", "bob")
) -> AsyncIterator[tuple[Client, Client]]:
    """Two clients in `room`, the first on WS_PORT and the second on PORT (so the pair
    crosses the two URLs), the first told of the second's join."""
    first, second = names
    async with (
        await Client.connect(server.ws_fast) as a,
        await Client.connect(server.ws_http) as b,
    ):
        await a.join(room, first)
        await b.join(room, second)
        await a.expect("USER_JOINED")
        yield a, b


class Client:
    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        # No client-side flow control: a test that leaves events unread must still close fast.
        ws = await websockets.connect(
            url, open_timeout=TIMEOUT, max_size=None, max_queue=None, **kwargs
        )
        return cls(ws)

    async def send(self, event: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(event if isinstance(event, str | bytes) else json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        return json.loads(raw)  # type: ignore[no-any-return]

    async def expect(self, type_: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """The next event; it must be of `type_`, after any events whose type is in `skip`."""
        while True:
            event = await self.recv()
            if event["type"] in skip:
                continue
            assert event["type"] == type_, event
            return event

    async def join(self, room: str, user: str, **extra: Any) -> dict[str, Any]:
        await self.send({"type": "JOIN_ROOM", "room": room, "user": user, **extra})
        return await self.expect("ROOM_JOINED")

    async def say(self, room: str, user: str, text: str, **extra: Any) -> None:
        await self.send(
            {"type": "CHAT_MESSAGE", "room": room, "user": user, "message": text, **extra}
        )

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def raw_handshake(port: int, *, rcvbuf: int | None = None, path: str = "/ws") -> socket.socket:
    """A WebSocket that completed its handshake and then does nothing at all: no reads, no
    pongs. For slow-consumer and keepalive tests (a real client library would answer pings
    and drain its socket)."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def masked_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A client frame (masked), for tests that write raw frames."""
    mask = os.urandom(4)
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
