"""bench/_recv.pyx's Stamper, the paced scenario's default receiver: it parses the server's
WebSocket frames by hand from recvmsg(2) reads, so a figure of `make bench` is only as right
as this parsing. Real loopback TCP sockets; what the server would write is written by hand.
"""

from __future__ import annotations

import importlib
import select
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recv() -> Any:
    """bench._recv, built first if missing or older than its source (`make bench-build`)."""
    pyx = ROOT / "bench" / "_recv.pyx"
    built = list((ROOT / "bench").glob("_recv.*.so"))
    if not built or min(p.stat().st_mtime for p in built) < pyx.stat().st_mtime:
        subprocess.run([sys.executable, str(ROOT / "bench" / "build_recv.py")], check=True)
    return importlib.import_module("bench._recv")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, member side) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as lsn:
        member = socket.create_connection(lsn.getsockname())
        server, _ = lsn.accept()
    with server, member:
        yield server, member


def frame(payload: bytes, opcode: int = 1, fin: bool = True, masked: bool = False) -> bytes:
    """A frame as a server writes it (unmasked unless `masked`)."""
    b0 = (0x80 if fin else 0) | opcode
    mask = 0x80 if masked else 0
    if len(payload) < 126:
        head = bytes([b0, mask | len(payload)])
    else:
        head = bytes([b0, mask | 126]) + len(payload).to_bytes(2, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


def chat(id_: int, seq: int, sent_ns: int, pad: str = "x" * 48) -> bytes:
    """fastchat's CHAT_MESSAGE around the load generator's text "<seq> <send ns> <pad>"."""
    return (
        f'{{"type":"CHAT_MESSAGE","id":{id_},"room":"paced","user":"pacer",'
        f'"message":"{seq} {sent_ns} {pad}","timestamp":"2026-12-06T19:00:00Z"}}'
    ).encode()


def member_of(recv: Any, capacity: int = 8, seq_from: int = 0) -> Any:
    class Member(recv.CTimed):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.others: list[bytes] = []
            self.pongs: list[tuple[Any, bytes]] = []
            self.disconnected = False

        def other(self, payload: bytes) -> None:
            self.others.append(payload)

    m = Member()
    m.bind(array("q", bytes(8 * capacity)), seq_from, array("q", bytes(8 * capacity)))
    return m


def stamper_for(recv: Any, member: Any, pair: tuple[socket.socket, socket.socket]) -> Any:
    """A Stamper reading `member` on `pair`'s member side, once the kernel stamps its reads:
    the first socket to ask turns the stamps on for all a moment later (a deferred work
    item), so a frame sent at once may arrive unstamped (in a run, the warm-up covers it)."""
    server, sock = pair
    st = recv.Stamper()
    st.pong = lambda m, payload: member.pongs.append((m, payload))
    st.add(member, sock.fileno())
    deadline = time.monotonic() + 5
    while st.reads == st.unstamped:
        assert time.monotonic() < deadline, "the kernel never stamped a read"
        server.sendall(frame(b'{"type":"PROBE"}'))
        st.drain()
        time.sleep(0.001)
    member.others.clear()
    member.frames = 0
    st.unstamped = 0
    return st


def test_each_copy_is_timed_to_its_arrival_and_to_its_read(recv: Any, pair: Any) -> None:
    server, _ = pair
    m = member_of(recv)
    st = stamper_for(recv, m, pair)
    sent = time.monotonic_ns()
    server.sendall(frame(chat(1, 0, sent)) + frame(chat(2, 1, sent)))
    arrived_by = time.monotonic_ns()
    time.sleep(0.005)  # so that the read comes measurably later than the arrival
    st.drain()
    m.unbind()
    assert (m.n, m.timed, m.disorder, m.frames) == (2, 2, 0, 0)
    assert st.unstamped == 0
    for at_socket, read in zip(m.lat_socket, m.lat, strict=True):
        assert 0 < at_socket <= arrived_by - sent
        assert read >= at_socket + 5_000_000


def test_a_frame_split_over_reads_is_parsed_whole(recv: Any, pair: Any) -> None:
    server, _ = pair
    m = member_of(recv)
    st = stamper_for(recv, m, pair)
    t = time.monotonic_ns()
    long_one = frame(chat(7, 0, t, pad="y" * 300))  # a 16-bit length
    assert long_one[1] == 126
    stream = long_one + frame(chat(8, 1, t)) + frame(b'{"type":"USER_JOINED"}')
    # Cut inside the first header, inside its 16-bit length, inside its payload, one byte
    # into the next frame and inside the last one.
    cuts = [1, 3, 200, len(long_one) + 1, len(stream) - 5, len(stream)]
    for start, end in zip([0, *cuts], cuts, strict=False):
        server.sendall(stream[start:end])
        st.drain()
    m.unbind()
    assert (m.n, m.timed, m.last_id, m.disorder) == (2, 2, 8, 0)
    assert m.others == [b'{"type":"USER_JOINED"}']


def test_warm_up_is_counted_not_timed_and_disorder_is_seen(recv: Any, pair: Any) -> None:
    server, _ = pair
    m = member_of(recv, seq_from=2)
    st = stamper_for(recv, m, pair)
    t = time.monotonic_ns()
    server.sendall(b"".join(frame(chat(i, s, t)) for i, s in ((1, 0), (2, 1), (3, 2), (3, 3))))
    st.drain()
    m.unbind()
    assert (m.n, m.timed, m.disorder) == (4, 2, 1)
    assert len(m.lat) == len(m.lat_socket) == 2


def test_a_ping_gets_its_pong_and_a_close_or_eof_disconnects(recv: Any, pair: Any) -> None:
    server, _ = pair
    m = member_of(recv)
    st = stamper_for(recv, m, pair)
    server.sendall(frame(b"are you there", opcode=9))
    st.drain()
    assert m.pongs == [(m, b"are you there")]
    assert not m.disconnected
    server.sendall(frame(b"\x03\xe8", opcode=8))
    st.drain()
    assert m.disconnected
    m.disconnected = False
    server.shutdown(socket.SHUT_WR)
    st.drain()
    assert m.disconnected
    # ... and the socket, readable for ever at EOF, no longer wakes the loop.
    assert select.select([st.fileno()], [], [], 0)[0] == []


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (frame(b"hi", masked=True), "masked"),
        (frame(b"hi", fin=False), "fragmented"),
        (bytes([0x81, 127]) + (70_000).to_bytes(8, "big"), "64 kB"),
        (frame(b'{"type":"CHAT_MESSAGE","id":x}'), "without an id"),
    ],
)
def test_what_no_server_should_send_stops_the_run(
    recv: Any, pair: Any, bad: bytes, why: str
) -> None:
    server, _ = pair
    st = stamper_for(recv, member_of(recv), pair)
    server.sendall(bad)
    with pytest.raises(ValueError, match=why):
        st.drain()
