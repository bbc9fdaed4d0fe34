"""Micro-benchmarks of the hot path's pieces (pytest-benchmark).

Run with `make bench-micro`, i.e.

    .venv/bin/python -m pytest bench -o testpaths=bench --benchmark-only -p no:cacheprovider

Not part of `make test`: the project's `testpaths` is `tests`, so a plain `pytest` never
collects this directory. Never a gate on absolute speed (STYLE.md): these numbers are for
comparing a change against the code before it, on the same machine.

What each group answers:

* `decode`: what caching the msgspec tagged-union `Decoder` is worth per received frame
  (DESIGN.md measured ~0.13 us cached vs ~3 us uncached).
* `encode`: building one outgoing CHAT_MESSAGE event (done once per committed message).
* `receive`: a client's text frames from the socket to the service's `receive`, through
  picows and `fastport.FastListener` (its per-frame part compiled, `_listener.pyx`), beside
  the same rules as a Python `on_ws_frame` (how it was before): 2,000 frames a round, 500
  to a write, over loopback on one loop.
* `service`: a chat message's way in, from its text to the store's queue, in a real service
  (`Chat`, its hub and a SQLite store): the lane (`Chat.receive`, `_lane.pyx`) beside the
  service's Python route for the same frame (`Chat.handle`: parse, check, `_send_message`),
  1,000 frames a round from 750 joined members in 500 rooms, the batch dropped after each
  round (the commit is the `commit` group's).
* `frame`: framing one payload (done once per published message per room).
* `fanout`: the hub's bookkeeping to queue one payload for 1/100/10,000 members and flush
  them, through the sink interface (`attach_sink`); fast-port members share the same loop
  but copy into a C buffer instead of appending to a list and end in a socket write, which
  the end-to-end load generator (`python -m bench.loadgen`) measures.
* `commit`: group commit of 1/100/1,000 rows, on SQLite and on PostgreSQL: one transaction
  written by the store's writer (SQLite: its thread; PostgreSQL: its task, pipelined) and
  handed back to the loop (the public path, `submit` -> `on_committed`), and the
  transaction alone without the hand-back.
* `client-ids`: the writer's retry check of a new message's (comment's) client id: the
  filter of every stored one asked (`ClientKeys.may_hold`), then told (`add`), in a filter
  of 1 MB (a new database) and of 64 MB (the most it grows to).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvloop
from picows import WSFrame, WSMsgType, WSTransport, ws_create_server

from bench.loadgen import client_frame
from fastchat import events, fastport
from fastchat._hub import Hub, frame_text
from fastchat.pgstore import PostgresStore
from fastchat.service import Chat
from fastchat.sqlitestore import SqliteStore
from fastchat.store import OP_MESSAGE, Store, Write
from fastchat.trailing import ClientKeys
from tests.conftest import free_port
from tests.pg import Postgres
from tests.unit.limits import limits_with

CHAT = (
    b'{"type":"CHAT_MESSAGE","room":"general","user":"alice",'
    b'"message":"hello there, this is a message of a typical length for a chat","client_id":"c-42"}'
)
OUT = (
    b'{"type":"CHAT_MESSAGE","id":123456,"room":"general","user":"alice",'
    b'"message":"hello there, this is a message of a typical length for a chat",'
    b'"timestamp":"2025-01-01T12:00:00.000Z"}'
)


# ---------------------------------------------------------------------------------- decode


@pytest.mark.benchmark(group="decode")
def test_decode_cached_decoder(benchmark: Any) -> None:
    decode = events.client_decoder.decode
    ev = benchmark(decode, CHAT)
    assert type(ev).__name__ == "SendMessage"


@pytest.mark.benchmark(group="decode")
def test_decode_uncached(benchmark: Any) -> None:
    ev = benchmark(msgspec.json.decode, CHAT, type=events.AnyClientEvent)
    assert type(ev).__name__ == "SendMessage"


# ---------------------------------------------------------------------------------- encode


@pytest.mark.benchmark(group="encode")
def test_encode_message_event(benchmark: Any) -> None:
    def build() -> bytes:
        return events.encode(
            events.MessageEvent(
                id=123456,
                room="general",
                user="alice",
                message="hello there, this is a message of a typical length for a chat",
                timestamp="2025-01-01T12:00:00.000Z",
            )
        )

    assert benchmark(build).startswith(b'{"type":"CHAT_MESSAGE","id":123456,')


# --------------------------------------------------------------------------------- receive

RECEIVE_ROUND = 2000  # frames a round
RECEIVE_WRITE = 500  # frames a write


class PythonFrameListener(fastport.FastListener):
    """FastListener's per-frame rules as a Python `on_ws_frame` (before `_listener.pyx`)."""

    __slots__ = ()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        member = self.member
        if member is None:
            return
        member.state.seen = True
        kind = frame.msg_type
        if transport.is_close_frame_sent and kind != WSMsgType.CLOSE:
            return
        rsv = bool(frame.rsv1 or frame.rsv2 or frame.rsv3)
        if kind == WSMsgType.TEXT and frame.fin and not rsv and not self.messages.in_progress:
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self.invalid_text(transport)
                return
            self._on_text(transport, text)
            return
        self.other_frame(transport, frame, member, rsv)

    def _on_text(self, transport: WSTransport, text: str) -> None:
        assert self.member is not None
        self.on_text(self.member, text)


class Session:
    __slots__ = ("seen",)


class CountingChat:
    """The service as far as a listener sees it: counts the messages it is handed."""

    class limits:  # what the listener reads: chat.limits.max_frame_bytes
        max_frame_bytes = 64 * 1024

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.connections = self
        self.received = 0
        self.wanted = 0
        self.done: asyncio.Future[None] | None = None

    def transport(self, transport: WSTransport, port: str, peer: str) -> Any:
        member = self.hub.attach_transport(transport)
        member.state = Session()
        return member

    def receive(self, member: Any, text: str) -> None:
        self.received += 1
        if self.received == self.wanted and self.done is not None:
            self.done.set_result(None)


@pytest.mark.benchmark(group="receive")
@pytest.mark.parametrize("listener", ["compiled", "python"])
def test_receive_text_frames(benchmark: Any, listener: str) -> None:
    loop = uvloop.new_event_loop()
    chat = CountingChat(Hub(loop))
    kind = fastport.FastListener if listener == "compiled" else PythonFrameListener
    write = client_frame(CHAT) * RECEIVE_WRITE

    async def connect() -> Any:
        server = await ws_create_server(lambda _: kind(chat), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await reader.readuntil(b"\r\n\r\n")
        return server, writer

    async def one_round(writer: Any) -> None:
        chat.wanted = chat.received + RECEIVE_ROUND
        chat.done = loop.create_future()
        for _ in range(RECEIVE_ROUND // RECEIVE_WRITE):
            writer.write(write)
        await chat.done

    server, writer = loop.run_until_complete(connect())
    try:
        benchmark(lambda: loop.run_until_complete(one_round(writer)))
    finally:
        writer.close()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
    assert chat.received >= RECEIVE_ROUND and chat.received % RECEIVE_ROUND == 0
    benchmark.extra_info["ns_per_frame"] = round(benchmark.stats.stats.mean / RECEIVE_ROUND * 1e9)


# --------------------------------------------------------------------------------- service


SERVICE_ROUND = 1000


@pytest.mark.benchmark(group="service")
@pytest.mark.parametrize("way", ["lane", "python"])
def test_chat_message_to_the_store_queue(benchmark: Any, way: str, tmp_path: Path) -> None:
    loop = uvloop.new_event_loop()
    store = SqliteStore(tmp_path / "service.db", seed=False)

    async def joined() -> tuple[Chat, list[Any]]:
        chat = Chat(Hub(loop), store, limits_with(rate=0))
        await store.open(chat.on_committed)
        members = [chat.connections.sink(CountingSink()) for _ in range(750)]
        for i, member in enumerate(members):
            join = {"type": "JOIN_ROOM", "room": f"room-{i % 500}", "user": f"u{i}"}
            chat.receive(member, msgspec.json.encode(join).decode())
        await asyncio.sleep(0.1)
        return chat, members

    chat, members = loop.run_until_complete(joined())
    frames = [
        (
            members[i % 750],
            msgspec.json.encode(
                {
                    "type": "CHAT_MESSAGE",
                    "room": f"room-{i % 750 % 500}",
                    "user": f"u{i % 750}",
                    "message": f"{i} 1733482390123456789 " + "x" * 48,
                }
            ).decode(),
        )
        for i in range(SERVICE_ROUND)
    ]
    receive = chat.receive if way == "lane" else chat.handle

    def one_round() -> None:
        for member, text in frames:
            receive(member, text)
        store.pending -= len(store._batch)
        store._batch.clear()

    try:
        benchmark(one_round)
        assert chat.messages_in >= SERVICE_ROUND
    finally:
        loop.run_until_complete(store.close())
        loop.close()
    benchmark.extra_info["ns_per_message"] = round(benchmark.stats.stats.mean / SERVICE_ROUND * 1e9)


# ----------------------------------------------------------------------------------- frame


@pytest.mark.benchmark(group="frame")
@pytest.mark.parametrize("size", [len(OUT), 4096, 70_000])
def test_frame_text(benchmark: Any, size: int) -> None:
    payload = (OUT * (size // len(OUT) + 1))[:size]
    frame = benchmark(frame_text, payload)
    assert frame.endswith(payload) and frame[0] == 0x81


# ---------------------------------------------------------------------------------- fan-out


class FakeLoop:
    """Just enough loop for the hub: the benchmark calls `flush` itself."""

    scheduled = object()

    def call_soon(self, callback: Any, *args: Any) -> object:
        return self.scheduled


class CountingSink:
    """A `Sink` that keeps nothing: the cost measured is the hub's."""

    __slots__ = ("frames",)

    def __init__(self) -> None:
        self.frames = 0

    def deliver(self, payloads: list[bytes]) -> None:
        self.frames += len(payloads)

    def close(self, code: int, reason: str) -> None:
        pass


@pytest.mark.benchmark(group="fanout")
@pytest.mark.parametrize("members", [1, 100, 10_000])
def test_hub_fanout(benchmark: Any, members: int) -> None:
    hub = Hub(FakeLoop())
    sinks = [CountingSink() for _ in range(members)]
    for sink in sinks:
        hub.join(hub.attach_sink(sink), "r:bench")

    def publish_and_flush() -> None:
        hub.publish("r:bench", OUT)
        hub.flush()

    benchmark(publish_and_flush)
    rounds = sinks[0].frames
    assert rounds > 0 and all(s.frames == rounds for s in sinks)
    benchmark.extra_info["members"] = members
    benchmark.extra_info["ns_per_delivery"] = round(benchmark.stats.stats.mean / members * 1e9, 1)


@pytest.mark.benchmark(group="fanout")
def test_hub_fanout_coalesced_100x100(benchmark: Any) -> None:
    """100 messages into a 100-member room, then one flush (a busy tick)."""
    hub = Hub(FakeLoop())
    sinks = [CountingSink() for _ in range(100)]
    for sink in sinks:
        hub.join(hub.attach_sink(sink), "r:bench")

    def burst() -> None:
        for _ in range(100):
            hub.publish("r:bench", OUT)
        hub.flush()

    benchmark(burst)
    benchmark.extra_info["ns_per_delivery"] = round(benchmark.stats.stats.mean / 10_000 * 1e9, 1)


# ----------------------------------------------------------------------------------- commit


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pg = Postgres(free_port())
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Store, asyncio.AbstractEventLoop, dict[str, Any]]]:
    """An open store of each engine (PostgreSQL: a local server on this machine, sharing its
    cores, so a commit includes the server's own CPU time as well as the round trips)."""
    loop = asyncio.new_event_loop()
    box: dict[str, Any] = {"left": 0, "done": None, "batches": 0}

    def on_committed(results: list[Any]) -> None:
        box["batches"] += 1
        box["left"] -= len(results)
        if box["left"] <= 0 and box["done"] is not None and not box["done"].done():
            box["done"].set_result(None)

    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "bench.db", seed=False)
    else:
        s = PostgresStore(request.getfixturevalue("postgres").new_database(), seed=False)
    loop.run_until_complete(s.open(on_committed))
    try:
        yield s, loop, box
    finally:
        loop.run_until_complete(s.close())
        loop.close()


def _ops(n: int) -> list[Write]:
    text = "hello there, this is a message of a typical length for a chat"
    return [Write(OP_MESSAGE, f"room{i % 50}", "alice", text) for i in range(n)]


@pytest.mark.benchmark(group="commit")
@pytest.mark.parametrize("rows", [1, 100, 1000])
def test_group_commit_through_writer(benchmark: Any, store: Any, rows: int) -> None:
    """`submit` N rows from the loop, wait until `on_committed` has handed all N back."""
    s, loop, box = store
    ops = _ops(rows)

    async def roundtrip() -> None:
        box["left"] = rows
        box["done"] = loop.create_future()
        for op in ops:
            s.submit(op)
        await box["done"]

    benchmark(lambda: loop.run_until_complete(roundtrip()))
    benchmark.extra_info["rows_per_s"] = round(rows / benchmark.stats.stats.mean)
    benchmark.extra_info["rows_per_batch"] = round(s.rows / max(1, s.batches), 1)


@pytest.mark.benchmark(group="commit")
@pytest.mark.parametrize("rows", [1, 100, 1000])
def test_group_commit_transaction_only(benchmark: Any, store: Any, rows: int) -> None:
    """One transaction of exactly N rows on the writer connection (no hand-back to the loop)."""
    s, loop, _ = store
    ops = _ops(rows)
    if asyncio.iscoroutinefunction(s._commit):
        results = benchmark(lambda: loop.run_until_complete(s._commit(ops)))
    else:
        results = benchmark(s._commit, ops)
    assert len(results) == rows
    assert all(isinstance(r[1], tuple) for r in results)
    benchmark.extra_info["rows_per_s"] = round(rows / benchmark.stats.stats.mean)


@pytest.mark.benchmark(group="client-ids")
@pytest.mark.parametrize("megabytes", [1, 64])
def test_client_keys_check_then_add(benchmark: Any, megabytes: int) -> None:
    """1,000 new client ids, each asked of the filter, then added: a fresh filter each
    round, its pages written once beforehand (resident, as a filter in use is), none of its
    spots in the CPU's caches yet."""
    keys = [(f"room{i % 500}", f"user{i % 750}", f"{i:08x}-4c2d-4e5f-8a9b") for i in range(1000)]

    def setup() -> tuple[tuple[ClientKeys], dict[str, Any]]:
        filter_ = ClientKeys(megabytes << 23)
        filter_.ready = True
        pages = filter_._bits[::4096]  # touched now: no page faults in the timed part
        filter_._bits[::4096] = pages
        return (filter_,), {}

    def check_then_add(filter_: ClientKeys) -> None:
        for key in keys:
            if not filter_.may_hold(key):
                filter_.add(key)

    benchmark.pedantic(check_then_add, setup=setup, rounds=30)
    benchmark.extra_info["ns_per_key"] = round(benchmark.stats.stats.median / len(keys) * 1e9)
