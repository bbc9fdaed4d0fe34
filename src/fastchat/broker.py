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
from collections.abc import Callable
from typing import Any, Final

import msgspec

log = logging.getLogger("fastchat.broker")

OnHint = Callable[[str, int], None]
OnRelay = Callable[[str, bytes], None]

CHANNEL: Final = "fastchat"
_HINT: Final = 0
_RELAY: Final = 1


def node_id() -> str:
    """This process, as the cluster (and `/api/v1/stats`, `/metrics`) names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Broker:
    """What the service needs from a broker. The base class is the in-process one."""

    clustered: bool = False

    def __init__(self) -> None:
        self.node = node_id()

    async def start(self, on_hint: OnHint, on_relay: OnRelay) -> None:
        """Begin delivering other nodes' hints and relays to the callbacks (loop thread)."""

    def hint(self, key: str, max_id: int) -> None:
        """Tell the other nodes that room `key` committed rows up to `max_id`."""

    def relay(self, key: str, payload: bytes) -> None:
        """Send an ephemeral event of room `key` to the other nodes' members."""

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
        self._flushing: asyncio.Task[None] | None = None
        self._encode = msgspec.msgpack.Encoder().encode
        self._decode = msgspec.msgpack.Decoder(tuple[str, int, str, int | bytes]).decode

    async def start(self, on_hint: OnHint, on_relay: OnRelay) -> None:
        await self._redis.ping()  # fail at start, with the URL, not at the first message
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(CHANNEL)
        self._reader = asyncio.get_running_loop().create_task(self._read(on_hint, on_relay))

    async def _read(self, on_hint: OnHint, on_relay: OnRelay) -> None:
        node = self.node
        async for message in self._pubsub.listen():
            try:
                sender, kind, key, data = self._decode(message["data"])
            except (msgspec.DecodeError, KeyError, TypeError):
                log.warning("ignored a malformed broker message")
                continue
            if sender == node:
                continue
            if kind == _HINT and isinstance(data, int):
                on_hint(key, data)
            elif kind == _RELAY and isinstance(data, bytes):
                on_relay(key, data)

    def hint(self, key: str, max_id: int) -> None:
        self._queue(self._encode((self.node, _HINT, key, max_id)))

    def relay(self, key: str, payload: bytes) -> None:
        self._queue(self._encode((self.node, _RELAY, key, payload)))

    def _queue(self, message: bytes) -> None:
        self._outbox.append(message)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
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
