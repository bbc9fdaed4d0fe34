"""A small JSON WebSocket client for the tests, on the `websockets` library."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from tests.conftest import TIMEOUT


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
        await self.send({"type": "CHAT_MESSAGE", "room": room, "user": user, "message": text, **extra})

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
