"""fastchat._hub (Cython): rooms, members, coalesced fan-out, slow-consumer drops, framing.

Most tests drive the hub sans-I/O with a loop stand-in that records `call_soon`, so every
"one loop tick" is explicit; a few run on the real asyncio loop to show the flush is scheduled
there. Members are sinks (the interface the Litestar port uses) recording what they get.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from fastchat._hub import (
    FLUSH_CHUNK,
    Hub,
    Member,
    frame_text,
    wait_bucket,
    wait_bucket_upper_ns,
)

TIMEOUT = float(os.environ.get("FASTCHAT_TEST_TIMEOUT", "10"))
POLICY_VIOLATION = 1008


class ManualLoop:
    """Records call_soon; `tick()` runs what was scheduled, like one loop iteration."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.errors: list[dict[str, Any]] = []  # what asyncio would log

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> object:
        self.scheduled.append((callback, args))
        return object()

    def tick(self) -> int:
        ready, self.scheduled = self.scheduled, []
        for callback, args in ready:
            callback(*args)
        return len(ready)


class Sink:
    """A member's outbound side: records every deliver() and close() call, in order."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.calls: list[tuple[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.delivered: asyncio.Future[None] | None = None

    def deliver(self, payloads: list[bytes]) -> None:
        assert self.closed is None, f"{self.name}: deliver() after close()"
        self.calls.append(("deliver", list(payloads)))
        if self.delivered is not None and not self.delivered.done():
            self.delivered.set_result(None)

    def close(self, code: int, reason: str) -> None:
        self.calls.append(("close", (code, reason)))
        self.closed = (code, reason)

    @property
    def deliveries(self) -> list[list[bytes]]:
        return [arg for kind, arg in self.calls if kind == "deliver"]

    @property
    def received(self) -> list[bytes]:
        return [p for batch in self.deliveries for p in batch]


@pytest.fixture
def loop() -> ManualLoop:
    return ManualLoop()


@pytest.fixture
def hub(loop: ManualLoop) -> Hub:
    return Hub(loop, max_pending=100)


def attach(hub: Hub, n: int, *rooms: str) -> list[tuple[Member, Sink]]:
    out = []
    for i in range(n):
        sink = Sink(f"m{i}")
        m = hub.attach_sink(sink)
        for room in rooms:
            hub.join(m, room)
        out.append((m, sink))
    return out


# --------------------------------------------------------------------------- membership


def test_join_leave_and_count(hub: Hub) -> None:
    (a, _), (b, _) = attach(hub, 2)
    assert hub.count("r") == 0
    assert hub.join(a, "r") == 1
    assert hub.join(b, "r") == 2
    assert hub.join(a, "r") == 2  # idempotent
    assert hub.count("r") == 2
    assert hub.members("r") == [a, b]  # join order
    assert set(a.rooms) == {"r"}
    assert hub.leave(a, "r") == 1
    assert hub.count("r") == 1 and hub.members("r") == [b]
    assert a.rooms == {}


def test_a_room_is_one_object_for_all_its_members_with_its_name(hub: Hub) -> None:
    (a, _), (b, _) = attach(hub, 2)
    hub.join(a, "r:général")
    hub.join(b, "r:général")
    hub.join(a, "p:12")
    room = a.rooms["r:général"]
    assert room is b.rooms["r:général"]
    assert (room.key, room.name) == ("r:général", "général")
    assert a.rooms["p:12"].name == "12"


def test_empty_rooms_are_dropped(hub: Hub) -> None:
    (a, _), (b, _) = attach(hub, 2, "r1", "r2")
    assert hub.room_count == 2 and sorted(hub.room_keys()) == ["r1", "r2"]
    assert hub.membership_count == 4
    hub.leave(a, "r1")
    hub.leave(b, "r1")
    assert hub.room_keys() == ["r2"]
    assert hub.room_count == 1
    assert hub.count("r1") == 0 and hub.members("r1") == []


def test_leaving_a_room_one_is_not_in_changes_nothing(hub: Hub) -> None:
    (a, _), (b, _) = attach(hub, 2)
    hub.join(b, "r")
    assert hub.leave(a, "r") == 1  # the count of those still there
    assert hub.leave(a, "nowhere") == 0
    assert hub.members("r") == [b]
    assert hub.room_keys() == ["r"]


def test_detach_leaves_every_room_and_forgets_the_member(hub: Hub) -> None:
    (a, _), (b, _) = attach(hub, 2, "r1")
    hub.join(a, "r2")
    assert hub.connections() == [a, b]
    assert hub.sink_members == 2
    assert sorted(hub.detach(a)) == ["r1", "r2"]
    assert hub.connections() == [b]
    assert hub.sink_members == 1
    assert hub.members("r1") == [b]
    assert hub.room_keys() == ["r1"]
    assert a.closed
    assert hub.detach(a) == []  # twice is harmless
    assert hub.sink_members == 1


def test_connections_in_attach_order(hub: Hub) -> None:
    members = [m for m, _ in attach(hub, 5)]
    assert hub.connections() == members
    hub.detach(members[2])
    assert hub.connections() == members[:2] + members[3:]
    assert hub.fast_members == 0


def test_member_state_is_free_for_the_service(hub: Hub) -> None:
    ((a, _),) = attach(hub, 1)
    assert a.is_fast is False
    a.state = {"r:general": "ana"}
    assert a.state == {"r:general": "ana"}


# --------------------------------------------------------------------------- fan-out


def test_publish_reaches_every_member_once_in_order(hub: Hub, loop: ManualLoop) -> None:
    members = attach(hub, 4, "r")
    payloads = [f'{{"n":{i}}}'.encode() for i in range(50)]
    for p in payloads:
        assert hub.publish("r", p) == 4
    loop.tick()
    for _, sink in members:
        assert sink.received == payloads
    assert hub.publishes == 50
    assert hub.deliveries == 200


def test_nothing_is_delivered_before_the_flush_runs(hub: Hub, loop: ManualLoop) -> None:
    ((_, sink),) = attach(hub, 1, "r")
    hub.publish("r", b"1")
    hub.publish("r", b"2")
    assert sink.calls == []
    assert len(loop.scheduled) == 1  # one flush per tick, however many publishes
    assert loop.scheduled[0][0] == hub._flush_due
    loop.tick()
    assert sink.calls == [("deliver", [b"1", b"2"])]


def test_a_big_room_is_written_a_chunk_a_tick_and_what_arrives_meanwhile_joins_it(
    hub: Hub, loop: ManualLoop
) -> None:
    # A flush of 1,000 sockets is ~4.5 ms in one callback, during which a new message waits
    # unread. In chunks, the loop reads between two of them: the members not written yet
    # get the new message in the same write, those already written in the next one.
    members = attach(hub, FLUSH_CHUNK * 2 + 10, "r")
    hub.publish("r", b"1")
    assert loop.tick() == 1
    written = [sink for _, sink in members if sink.calls]
    assert [s for _, s in members[:FLUSH_CHUNK]] == written  # the first chunk, in join order
    hub.publish("r", b"2")  # read and committed between two chunks
    while loop.scheduled:
        loop.tick()
    for i, (_, sink) in enumerate(members):
        assert sink.received == [b"1", b"2"]
        if i < FLUSH_CHUNK:
            assert sink.deliveries == [[b"1"], [b"2"]]
        else:
            assert sink.deliveries == [[b"1", b"2"]]  # one write for both
    assert hub.writes == len(members) + FLUSH_CHUNK
    assert hub.flushes == 4  # its 394 writes, in runs of FLUSH_CHUNK at most


def test_flush_writes_every_member_at_once(hub: Hub, loop: ManualLoop) -> None:
    # The drain at shutdown (server.py) flushes directly: no member waits for a later tick.
    members = attach(hub, FLUSH_CHUNK * 3, "r")
    hub.publish("r", b"last")
    hub.flush()
    assert all(sink.received == [b"last"] for _, sink in members)
    loop.tick()  # the scheduled flush finds nothing left
    assert hub.writes == len(members) and hub.flushes == 1


def test_one_tick_is_one_deliver_call_per_member(hub: Hub, loop: ManualLoop) -> None:
    members = attach(hub, 3, "r")
    for i in range(100):
        hub.publish("r", str(i).encode())
    loop.tick()
    for _, sink in members:
        assert len(sink.deliveries) == 1 and len(sink.deliveries[0]) == 100
    assert hub.writes == 3
    # The next tick is a new write.
    hub.publish("r", b"later")
    assert loop.tick() == 1
    for _, sink in members:
        assert sink.deliveries[-1] == [b"later"]
    assert hub.writes == 6


def test_an_idle_tick_writes_nothing(hub: Hub, loop: ManualLoop) -> None:
    ((_, sink),) = attach(hub, 1, "r")
    hub.flush()
    assert sink.calls == [] and hub.writes == 0
    assert hub.publish("nobody", b"x") == 0
    assert loop.scheduled == []


def test_other_rooms_get_nothing(hub: Hub, loop: ManualLoop) -> None:
    ((_, in_r),) = attach(hub, 1, "r")
    ((_, in_s),) = attach(hub, 1, "s")
    ((_, both),) = attach(hub, 1, "r", "s")
    ((_, nowhere),) = attach(hub, 1)
    hub.publish("r", b"for r")
    hub.publish("s", b"for s")
    loop.tick()
    assert in_r.received == [b"for r"]
    assert in_s.received == [b"for s"]
    assert both.received == [b"for r", b"for s"]
    assert nowhere.calls == []


def test_send_is_ordered_with_room_traffic(hub: Hub, loop: ManualLoop) -> None:
    (a, sa), (_, sb) = attach(hub, 2, "r")
    hub.publish("r", b"1")
    assert hub.send(a, b"just for a") == 1
    hub.publish("r", b"2")
    loop.tick()
    assert sa.deliveries == [[b"1", b"just for a", b"2"]]
    assert sb.deliveries == [[b"1", b"2"]]


def test_send_works_outside_any_room(hub: Hub, loop: ManualLoop) -> None:
    ((a, sa),) = attach(hub, 1)
    hub.send(a, b"hello")
    loop.tick()
    assert sa.received == [b"hello"]


def test_publish_can_skip_the_sender(hub: Hub, loop: ManualLoop) -> None:
    (a, sa), (_, sb) = attach(hub, 2, "r")
    assert hub.publish("r", b"typing", a) == 1
    loop.tick()
    assert sa.received == [] and sb.received == [b"typing"]


def test_a_member_that_leaves_before_the_flush_keeps_what_was_queued(
    hub: Hub, loop: ManualLoop
) -> None:
    (a, sa), (_, sb) = attach(hub, 2, "r")
    hub.publish("r", b"before")
    hub.leave(a, "r")
    hub.publish("r", b"after")
    loop.tick()
    assert sa.received == [b"before"]
    assert sb.received == [b"before", b"after"]


def test_a_detached_member_gets_nothing_more(hub: Hub, loop: ManualLoop) -> None:
    (a, sa), (_, sb) = attach(hub, 2, "r")
    hub.publish("r", b"queued")
    hub.detach(a)
    assert hub.send(a, b"direct") == 0
    hub.publish("r", b"after")
    loop.tick()
    assert sa.calls == []
    assert sb.received == [b"queued", b"after"]


def test_buffered_counts_the_bytes_waiting(hub: Hub, loop: ManualLoop) -> None:
    ((a, _),) = attach(hub, 1, "r")
    hub.publish("r", b"12345")
    hub.send(a, b"678")
    assert a.buffered == 8
    loop.tick()
    assert a.buffered == 0


def test_close_sends_what_is_pending_then_closes(hub: Hub, loop: ManualLoop) -> None:
    ((a, sa),) = attach(hub, 1, "r")
    hub.publish("r", b"last words")
    hub.close(a, 1001, "server shutting down")
    assert sa.calls == [("deliver", [b"last words"]), ("close", (1001, "server shutting down"))]
    loop.tick()  # the flush already scheduled finds nothing left to send
    assert len(sa.calls) == 2


# --------------------------------------------------------------------------- slow consumers


def test_a_member_over_max_pending_is_dropped_and_others_get_everything(loop: ManualLoop) -> None:
    hub = Hub(loop, max_pending=3)
    dropped: list[Member] = []
    hub.on_slow = dropped.append
    (slow, s_slow), (ok1, s_ok1), (_, s_ok2) = attach(hub, 3, "r")
    for i in range(3):
        hub.send(slow, f"direct {i}".encode())  # the slow one already has 3 queued
    assert hub.publish("r", b"one more") == 2
    assert slow.slow
    assert hub.send(slow, b"ignored") == 0
    loop.tick()
    assert s_slow.calls == [("close", (POLICY_VIOLATION, s_slow.closed[1]))]
    assert "slow" in s_slow.closed[1]
    assert dropped == [slow]
    assert hub.slow_drops == 1
    assert s_ok1.received == s_ok2.received == [b"one more"]
    # It stays skipped until the service detaches it; the others go on.
    assert hub.publish("r", b"next") == 2
    loop.tick()
    assert s_ok1.received == [b"one more", b"next"]
    assert len(s_slow.calls) == 1
    assert hub.slow_drops == 1
    assert not ok1.slow


def test_exactly_max_pending_is_not_slow(loop: ManualLoop) -> None:
    hub = Hub(loop, max_pending=10)
    ((m, sink),) = attach(hub, 1, "r")
    for i in range(10):
        hub.publish("r", str(i).encode())
    assert not m.slow
    loop.tick()
    assert len(sink.received) == 10 and sink.closed is None
    # The limit is per tick: the flush emptied the queue.
    for i in range(10):
        hub.publish("r", str(i).encode())
    loop.tick()
    assert len(sink.received) == 20 and hub.slow_drops == 0


def test_a_burst_over_max_pending_drops_everyone_in_it(loop: ManualLoop) -> None:
    hub = Hub(loop, max_pending=5)
    members = attach(hub, 3, "r")
    for i in range(6):
        hub.publish("r", str(i).encode())
    loop.tick()
    assert hub.slow_drops == 3
    for _, sink in members:
        assert sink.deliveries == [] and sink.closed is not None
        assert sink.closed[0] == POLICY_VIOLATION


def test_limits_are_readable(loop: ManualLoop) -> None:
    hub = Hub(loop, high_water=4096, max_pending=7)
    assert (hub.high_water, hub.max_pending) == (4096, 7)


# --------------------------------------------------------------------------- failures


class BrokenSink(Sink):
    """A member whose write raises `error` (a sink's deliver is the write of a member)."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(name)
        self.error = error

    def deliver(self, payloads: list[bytes]) -> None:
        raise self.error


def test_a_write_that_raises_closes_that_member_and_the_others_get_their_frames(
    hub: Hub, loop: ManualLoop
) -> None:
    """Issue 13: one member's write raising must not stop the flush of those after it,
    in this flush or the next; the error is reported, and the member that lost frames is
    closed so that it resumes from its last id."""
    (_, sa), (_, sb) = attach(hub, 2, "r")
    broken = BrokenSink("broken", OSError("connection reset"))
    hub.join(hub.attach_sink(broken), "r")
    (_, sc), (_, sd) = attach(hub, 2, "r")
    # The broken member sits in the middle of the flush order.
    assert hub.publish("r", b"1") == 5
    loop.tick()
    assert sa.received == sb.received == sc.received == sd.received == [b"1"]
    assert broken.closed is not None and broken.closed[0] == 1011
    assert "resume" in broken.closed[1]
    assert hub.write_failures == 1
    assert [type(e["exception"]) for e in loop.errors] == [OSError]
    assert "member" in loop.errors[0]["message"]
    # The next flush: everyone still open gets the next frame; the closed one is skipped.
    assert hub.publish("r", b"2") == 4
    loop.tick()
    assert sa.received == sb.received == sc.received == sd.received == [b"1", b"2"]
    assert hub.write_failures == 1 and len(loop.errors) == 1


def test_an_on_slow_callback_that_raises_strands_nobody(loop: ManualLoop) -> None:
    hub = Hub(loop, max_pending=2)

    def on_slow(member: Member) -> None:
        raise RuntimeError("on_slow failed")

    hub.on_slow = on_slow
    (slow, s_slow), (_, s1), (_, s2) = attach(hub, 3, "r")
    hub.send(slow, b"a")
    hub.send(slow, b"b")  # slow is first in the flush order, and full
    assert hub.publish("r", b"x") == 2
    loop.tick()
    assert s1.received == s2.received == [b"x"]
    assert s_slow.calls == [("close", (POLICY_VIOLATION, s_slow.closed[1]))]
    assert "slow" in s_slow.closed[1]
    assert hub.slow_drops == 1 and hub.write_failures == 1
    assert [type(e["exception"]) for e in loop.errors] == [RuntimeError]
    # Before the fix the members after it stayed marked dirty and were never flushed again.
    assert hub.publish("r", b"y") == 2
    loop.tick()
    assert s1.received == s2.received == [b"x", b"y"]


def test_several_failures_in_one_flush_are_each_reported(hub: Hub, loop: ManualLoop) -> None:
    sinks = []
    for i in range(6):
        sink = BrokenSink(f"b{i}", ValueError(i)) if i % 2 else Sink(f"ok{i}")
        hub.join(hub.attach_sink(sink), "r")
        sinks.append(sink)
    hub.publish("r", b"1")
    loop.tick()
    assert [e["exception"].args for e in loop.errors] == [(1,), (3,), (5,)]
    assert [s.received for s in sinks[0::2]] == [[b"1"]] * 3
    assert hub.write_failures == 3


def test_an_interrupt_in_a_write_leaves_the_rest_due_for_the_next_flush(
    hub: Hub, loop: ManualLoop
) -> None:
    """What `except Exception` does not catch (KeyboardInterrupt) propagates, but the
    members not reached yet stay due: the next flush writes them."""
    ((_, sa),) = attach(hub, 1, "r")
    hub.join(hub.attach_sink(BrokenSink("interrupted", KeyboardInterrupt())), "r")
    (_, sc), (_, sd) = attach(hub, 2, "r")
    hub.publish("r", b"1")
    with pytest.raises(KeyboardInterrupt):
        loop.tick()
    assert sa.received == [b"1"] and sc.received == sd.received == []
    assert loop.tick() == 1  # the flush that was scheduled again
    assert sc.received == sd.received == [b"1"]
    assert sa.received == [b"1"]


async def test_a_failed_write_is_logged_by_the_real_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(asyncio.get_running_loop())
    ((_, ok),) = attach(hub, 1, "r")
    hub.join(hub.attach_sink(BrokenSink("broken", OSError("gone"))), "r")
    ok.delivered = asyncio.get_running_loop().create_future()
    hub.publish("r", b"1")
    await asyncio.wait_for(ok.delivered, TIMEOUT)
    assert ok.received == [b"1"]
    logged = [r for r in caplog.records if r.name == "asyncio"]
    assert logged and "writing to a member failed" in logged[0].getMessage()
    assert logged[0].exc_info is not None and isinstance(logged[0].exc_info[1], OSError)


# --------------------------------------------------------------------------- real loop


def test_each_flush_is_timed_from_its_oldest_frame(hub: Hub, loop: ManualLoop) -> None:
    members = attach(hub, 3, "r")
    assert (hub.flushes, hub.wait_histogram) == (0, [])
    before = time.monotonic_ns()  # the hub's clock (CLOCK_MONOTONIC)
    hub.publish("r", b"one")
    queued = time.monotonic_ns()  # the flush's clock started before this
    hub.publish("r", b"two")  # the same flush: timed from the first
    ticked = time.monotonic_ns()
    loop.tick()
    after = time.monotonic_ns()
    assert hub.flushes == 1
    # The wait spans from the first publish to the end of the flush: it covers the time
    # between queueing and the tick, and no more than the whole test's window.
    assert ticked - queued <= hub.wait_ns_sum == hub.wait_ns_max <= after - before
    assert 0 < hub.flush_ns_sum == hub.flush_ns_max <= hub.wait_ns_max
    assert hub.flush_ns_max <= after - ticked
    [[upper_ns, count]] = hub.wait_histogram
    assert count == 1 and hub.wait_ns_max < upper_ns <= hub.wait_ns_max * 1.13
    loop.tick()  # nothing queued: no flush counted
    hub.send(members[0][0], b"three")
    loop.tick()
    assert hub.flushes == 2
    assert sum(c for _, c in hub.wait_histogram) == 2
    assert members[0][1].received == [b"one", b"two", b"three"]


@pytest.mark.parametrize(
    "ns",
    [0, 999, 1_000, 1_124, 1_125, 2_915, 2_999, 3_000, 7_999, 8_000, 123_456, 4_999_999]
    + [int(1.09**k) for k in range(60, 300, 7)],
)
def test_every_wait_lands_below_its_buckets_upper_bound(ns: int) -> None:
    b = wait_bucket(ns)
    last = wait_bucket(10**15)  # the last bucket also holds everything above it (~67 s)
    assert ns < wait_bucket_upper_ns(b) or b == last
    assert b == 0 or ns >= wait_bucket_upper_ns(b - 1)


def test_wait_histogram_buckets_are_eighths_of_an_octave() -> None:
    bounds = [wait_bucket_upper_ns(b) for b in range(1, 40)]
    assert bounds == sorted(set(bounds))  # strictly rising
    assert wait_bucket_upper_ns(0) == 1_000  # below 1 us
    assert wait_bucket_upper_ns(8) == 2_000 and wait_bucket_upper_ns(16) == 4_000  # octaves
    assert all(1.05 < b / a < 1.13 for a, b in itertools.pairwise(bounds))


async def test_the_flush_runs_on_the_next_loop_iteration() -> None:
    hub = Hub(asyncio.get_running_loop())
    (a, sa), (_, sb) = attach(hub, 2, "r")
    sa.delivered = asyncio.get_running_loop().create_future()
    hub.publish("r", b"1")
    hub.send(a, b"2")
    hub.publish("r", b"3")
    assert sa.calls == [] and sb.calls == []
    await asyncio.wait_for(sa.delivered, TIMEOUT)
    assert sa.deliveries == [[b"1", b"2", b"3"]]
    assert sb.deliveries == [[b"1", b"3"]]  # same flush


async def test_each_tick_coalesces_on_a_real_loop() -> None:
    hub = Hub(asyncio.get_running_loop())
    ((_, sink),) = attach(hub, 1, "r")
    for tick in range(3):
        sink.delivered = asyncio.get_running_loop().create_future()
        for i in range(10):
            hub.publish("r", f"{tick}.{i}".encode())
        await asyncio.wait_for(sink.delivered, TIMEOUT)
    assert [len(d) for d in sink.deliveries] == [10, 10, 10]
    assert sink.received == [f"{t}.{i}".encode() for t in range(3) for i in range(10)]


# --------------------------------------------------------------------------- framing


def parse_frame(frame: bytes) -> tuple[int, int, bool, bytes, int]:
    """RFC 6455 section 5.2: (fin, opcode, masked, payload, header length)."""
    b0, b1 = frame[0], frame[1]
    fin, opcode = b0 >> 7, b0 & 0x0F
    assert b0 & 0x70 == 0, "RSV bits must be clear"
    masked = bool(b1 & 0x80)
    n = b1 & 0x7F
    offset = 2
    if n == 126:
        (n,) = struct.unpack_from("!H", frame, 2)
        offset = 4
        assert n >= 126, "16-bit length used for a length that fits 7 bits"
    elif n == 127:
        (n,) = struct.unpack_from("!Q", frame, 2)
        offset = 10
        assert n >= 65536 and n < 2**63, "64-bit length out of its range"
    if masked:
        offset += 4
    payload = frame[offset:]
    assert len(payload) == n, f"header says {n} bytes, frame carries {len(payload)}"
    return fin, opcode, masked, payload, offset


@pytest.mark.parametrize(
    ("length", "header"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_frame_text_is_an_unmasked_final_text_frame(length: int, header: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = frame_text(payload)
    fin, opcode, masked, body, offset = parse_frame(frame)
    assert (fin, opcode, masked) == (1, 0x1, False)
    assert offset == header
    assert body == payload
    assert len(frame) == header + length


def test_frame_text_header_bytes() -> None:
    assert frame_text(b"") == b"\x81\x00"
    assert frame_text(b"hi") == b"\x81\x02hi"
    assert frame_text(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert frame_text(b"x" * 65535)[:4] == b"\x81\x7e\xff\xff"
    assert frame_text(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


def test_frame_text_agrees_with_a_reference_parser() -> None:
    from websockets import frames
    from websockets.streams import StreamReader

    for length in (0, 125, 126, 65535, 65536):
        payload = b"a" * length
        reader = StreamReader()
        reader.feed_data(frame_text(payload))
        parser = frames.Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as stop:
            frame = stop.value
        else:
            raise AssertionError("incomplete frame")
        assert frame.opcode == frames.Opcode.TEXT and frame.fin
        assert frame.data == payload
