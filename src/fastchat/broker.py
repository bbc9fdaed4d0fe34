"""Relaying between fastchat nodes: the `Broker` interface, in-process and Redis.

The broker never carries stored messages themselves. After a commit, a node sends a *hint*,
`(room key, highest id committed)`; every node, the committing one included, then delivers
the room's new rows by reading them from the shared database, in id order (docs/SCALING.md):
the database is the sequencer, so every member on every node sees a room in the same order,
each message once. Ephemeral events (presence, typing) are *relayed* as they are.

`LocalBroker` is the single-process default: nothing to relay. `RedisBroker` uses Redis
pub/sub through redis-py's asyncio client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any, Final, Protocol

import msgspec

from fastchat.presence import RoomView, Snapshot

log = logging.getLogger("fastchat.broker")

CHANNEL: Final = "fastchat"
_HINTS: Final = 0  # {room key: highest id committed}, all of a tick's commits in one message
_RELAY: Final = 1
_PRESENCE: Final = 2
_SNAPSHOT: Final = 3


class BrokerHandler(Protocol):
    """What a broker delivers to (the chat service), on the loop thread."""

    def on_hint(self, key: str, max_id: int) -> None: ...
    def on_relay(self, key: str, payload: bytes) -> None: ...
    def on_presence(self, node: str, key: str, view: RoomView, connections: int) -> None: ...
    def on_snapshot(self, node: str, snapshot: Snapshot) -> None: ...


def node_id() -> str:
    """This process, as the cluster (and `/api/v1/stats`, `/metrics`) names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Broker:
    """What the service needs from a broker. The base class is the in-process one."""

    clustered: bool = False

    def __init__(self) -> None:
        self.node = node_id()

    async def start(self, handler: BrokerHandler) -> None:
        """Begin delivering other nodes' messages to `handler` (loop thread)."""

    def hint(self, key: str, max_id: int) -> None:
        """Tell the other nodes that room `key` committed rows up to `max_id`."""

    def relay(self, key: str, payload: bytes) -> None:
        """Send an ephemeral event (typing) of room `key` to the other nodes' members."""

    def presence(self, key: str, view: RoomView, connections: int) -> None:
        """This node's presence in room `key` changed; `connections`: its total now."""

    def snapshot(self, snapshot: Snapshot) -> None:
        """This node's whole presence, as a heartbeat."""

    async def close(self) -> None:
        """Flush what is queued and stop."""


class LocalBroker(Broker):
    """One process: nothing to tell anyone."""


class RedisBroker(Broker):
    """Redis pub/sub, one channel, messages batched per loop tick into one pipeline."""

    clustered = True

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # only needed when a broker URL is set

        super().__init__()
        self.url = url
        self._redis: Any = redis.from_url(url)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._outbox: list[bytes] = []
        self._hints: dict[str, int] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[str, int, str, Any]).decode
        self._view = msgspec.msgpack.Decoder(tuple[tuple[int, dict[str, int]], int]).decode
        self._snapshot = msgspec.msgpack.Decoder(dict[str, tuple[int, dict[str, int]]]).decode
        self._hints_of = msgspec.msgpack.Decoder(dict[str, int]).decode

    async def start(self, handler: BrokerHandler) -> None:
        await self._redis.ping()  # fail at start, with the URL, not at the first message
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(CHANNEL)
        self._reader = asyncio.get_running_loop().create_task(self._read(handler))

    async def _read(self, handler: BrokerHandler) -> None:
        node = self.node
        async for message in self._pubsub.listen():
            try:
                sender, kind, key, data = self._decode(message["data"])
                if sender == node:
                    continue
                if kind == _HINTS:
                    for room, max_id in self._hints_of(data).items():
                        handler.on_hint(room, max_id)
                elif kind == _RELAY:
                    handler.on_relay(key, bytes(data))
                elif kind == _PRESENCE:
                    view, connections = self._view(data)
                    handler.on_presence(sender, key, view, connections)
                elif kind == _SNAPSHOT:
                    handler.on_snapshot(sender, self._snapshot(data))
            except (msgspec.DecodeError, KeyError, TypeError, ValueError):
                log.warning("ignored a malformed broker message")

    def hint(self, key: str, max_id: int) -> None:
        # Coalesced: a busy node commits rows of hundreds of rooms per tick, and one message
        # for all of them costs each node one decode instead of hundreds.
        if max_id > self._hints.get(key, 0):
            self._hints[key] = max_id
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def relay(self, key: str, payload: bytes) -> None:
        self._queue(self._encode((self.node, _RELAY, key, payload)))

    def presence(self, key: str, view: RoomView, connections: int) -> None:
        message = (self.node, _PRESENCE, key, self._encode((view, connections)))
        self._queue(self._encode(message))

    def snapshot(self, snapshot: Snapshot) -> None:
        self._queue(self._encode((self.node, _SNAPSHOT, "", self._encode(snapshot))))

    def _queue(self, message: bytes) -> None:
        self._outbox.append(message)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox or self._hints:
                batch, self._outbox = self._outbox, []
                if self._hints:
                    hints, self._hints = self._hints, {}
                    batch.append(self._encode((self.node, _HINTS, "", self._encode(hints))))
                async with self._redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(CHANNEL, message)
                    await pipe.execute()
        except Exception:  # Redis away: the database still has everything; log and go on
            log.exception("publishing to the broker failed")
        finally:
            self._flushing = None

    async def close(self) -> None:
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self._redis.aclose()


def broker_for(url: str) -> Broker:
    if not url:
        return LocalBroker()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url)
    raise ValueError(f"unsupported BROKER_URL {url!r}: expected redis://host:port")
