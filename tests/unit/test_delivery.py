"""fastchat.delivery, clustered: each committed row reaches the hub once, in id order, whatever
order the commit callbacks and the other nodes' hints arrive in; single process, a resume
whose read after its join fails.

The hub, the store and the broker are fakes of our own interfaces: the orders tested here are
races between threads and nodes that a real cluster produces only now and then.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import msgspec

from fastchat.broker import Broker
from fastchat.delivery import Delivery
from fastchat.store import OP_MESSAGE, Page, Result, Row, StoreError, Write


def committed(stored: Row, future: asyncio.Future[Any]) -> Result:
    """A REST send of `stored`, committed: what the store hands `on_committed`."""
    return (Write(OP_MESSAGE, stored[1], stored[2], stored[3], future=future), stored, False)


class FakeHub:
    def __init__(self) -> None:
        self.published: list[tuple[str, int]] = []

    def publish(self, key: str, payload: bytes) -> None:
        self.published.append((key, msgspec.json.decode(payload)["id"]))

    def count(self, key: str) -> int:
        return 1


class FakeStore:
    """The shared database: the rows every node has committed, in id order."""

    read_errors = (StoreError,)

    def __init__(self) -> None:
        self.rows: list[Row] = []

    async def page(self, table: str, scope: Any, limit: int, *, after: int, before: int) -> Page:
        rows = [r for r in self.rows if r[1] == scope and after < r[0] < before][:limit]
        more = len([r for r in self.rows if r[1] == scope and after < r[0] < before]) > limit
        return Page(rows, more, True)


class ClusterBroker(Broker):
    clustered = True

    def __init__(self) -> None:
        super().__init__()
        self.hints: list[tuple[str, int]] = []

    def hint(self, key: str, max_id: int) -> None:
        self.hints.append((key, max_id))


def row(id_: int, prev: int) -> Row:
    return (id_, "room", "u", f"m{id_}", 1_700_000_000_000 + id_, None, None, None, prev)


def delivery() -> tuple[Delivery, FakeHub, FakeStore]:
    hub, store = FakeHub(), FakeStore()
    d = Delivery(hub, store, ClusterBroker(), lambda *_: None)  # type: ignore[arg-type]
    return d, hub, store


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_later_hint_before_our_own_commit_callback_delivers_each_row_once() -> None:
    """Node A commits row 1, node B row 2; B's hint reaches A (through Redis) before A's
    writer thread hands row 1 to the loop. A's catch-up reads rows 1 and 2; row 1's own
    callback must then not publish it a second time, after row 2."""
    d, hub, store = delivery()
    ours = asyncio.get_running_loop().create_future()
    store.rows += [row(1, 0), row(2, 1)]
    d.on_hint("r:room", 2)
    await settle()
    d.on_committed([committed(row(1, 0), ours)])
    await settle()
    assert hub.published == [("r:room", 1), ("r:room", 2)]
    assert ours.result().id == 1  # REST's answer still comes


async def test_our_commit_with_everything_before_it_delivered_goes_out_directly() -> None:
    d, hub, store = delivery()
    store.rows += [row(1, 0)]
    d.on_committed([committed(row(1, 0), asyncio.get_running_loop().create_future())])
    store.rows += [row(2, 1)]
    d.on_committed([committed(row(2, 1), asyncio.get_running_loop().create_future())])
    assert hub.published == [("r:room", 1), ("r:room", 2)]  # no read needed
    await settle()
    assert hub.published == [("r:room", 1), ("r:room", 2)]


async def test_our_commit_after_a_row_we_have_not_seen_waits_for_the_catch_up() -> None:
    d, hub, store = delivery()
    store.rows += [row(1, 0), row(2, 1)]  # 1 is the other node's, its hint not yet here
    d.on_committed([committed(row(2, 1), asyncio.get_running_loop().create_future())])
    assert hub.published == []
    await settle()
    assert hub.published == [("r:room", 1), ("r:room", 2)]
    d.on_hint("r:room", 1)  # late: nothing more
    await settle()
    assert hub.published == [("r:room", 1), ("r:room", 2)]


class Reader:
    """A member as `Delivery.replay` sees it: nothing queued, open."""

    backlog = 0
    closed = False


class FailingAfterTheJoin(FakeStore):
    """A database whose read of a room's newest change fails: the read `_keep_recent` makes
    once the resume has joined."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    async def page(  # type: ignore[override]
        self, table: str, scope: Any, limit: int, *, after: int = 0, before: int
    ) -> Page:
        return await super().page(table, scope, limit, after=after, before=before)

    async def changes(self, *_: Any, **__: Any) -> tuple[list[Row], bool]:
        return [], False

    async def last_change(self, table: str, scope: Any) -> int:
        raise StoreError("the database went away")


async def test_a_resume_that_cannot_keep_the_newest_events_has_joined_all_the_same() -> None:
    """Keeping a room's newest events is for the next resumes, in a task of its own: a read
    failing there, after this resume joined, is no error of this one's (no ERROR saying "not
    joined") nor an exception nobody retrieves, and nothing half-read is kept."""
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unhandled.append(context))
    hub, store = FakeHub(), FailingAfterTheJoin()
    hub.send = lambda member, payload: store.sent.append(payload)  # type: ignore[attr-defined]
    d = Delivery(hub, store, Broker(), lambda *_: None)  # type: ignore[arg-type]
    store.rows += [row(1, 0), row(2, 1)]
    d.on_committed([committed(r, loop.create_future()) for r in store.rows])
    joined: list[tuple[int, int]] = []
    member: Any = Reader()
    await d.replay(member, "messages", "room", 1, lambda n, c: joined.append((n, c)), 1 << 20, 0)
    assert joined == [(1, 0)]
    assert [msgspec.json.decode(p)["id"] for p in store.sent] == [2]
    assert d.resumes == {"memory": 0, "database": 1}
    await settle()  # the read of the newest events, failing
    gc.collect()
    assert not d.replay_recent(member, "messages", "room", 1, lambda *_: None, 1 << 20, 0)
    assert unhandled == []
