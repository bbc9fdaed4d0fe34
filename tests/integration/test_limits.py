"""Every limit triggers with its documented refusal, and nothing else is disturbed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import TIMEOUT, ServerProcess, start_server
from tests.integration.wsclient import Client, masked_frame, raw_handshake


def room_name() -> str:
    return "lim-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("lim") / "chat.db",
        env={
            "RATE_LIMIT": "20",
            "RATE_BURST": "20",
            "MAX_ROOMS_PER_CONNECTION": "3",
            "MAX_FRAME_BYTES": "4096",
            "MAX_MESSAGE_CHARS": "100",
        },
    )
    yield srv
    srv.stop()


async def bystander_still_served(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as a, await Client.connect(server.ws_http) as b:
        await a.join(room, "a")
        await b.join(room, "b")
        await a.say(room, "a", "all good")
        assert (await b.expect("CHAT_MESSAGE", skip=("USER_JOINED",)))["message"] == "all good"


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_flood_is_rate_limited_then_closed(limited: ServerProcess, port: str) -> None:
    url = limited.ws_fast if port == "fast" else limited.ws_http
    room = room_name()
    async with await Client.connect(url) as flooder:
        await flooder.join(room, "flooder")
        for i in range(40):
            await flooder.say(room, "flooder", f"f{i}")
        error = await flooder.expect("ERROR", skip=("CHAT_MESSAGE",))
        assert error["code"] == "rate_limited" and "per second" in error["message"]
        stored = httpx.get(f"{limited.http}/api/v1/messages/{room}").json()["messages"]
        assert 10 <= len(stored) <= 25  # the burst got through, the rest was dropped
        # Persistent abuse: the connection is closed with 1008.
        with pytest.raises(websockets.ConnectionClosed) as info:
            for i in range(200):
                await flooder.say(room, "flooder", f"more {i}")
            while True:
                await flooder.recv()
        if port == "fast":
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
        else:
            # Granian may reset the connection while the flood is still arriving, before the
            # client reads the close frame; closed it is, either way.
            assert info.value.rcvd is None or info.value.rcvd.code == 1008
    await bystander_still_served(limited)


async def test_too_many_rooms(limited: ServerProcess) -> None:
    async with await Client.connect(limited.ws_fast) as c:
        for i in range(3):
            await c.join(f"{room_name()}-{i}", "u")
        await c.send({"type": "JOIN_POST", "post_id": 1})
        error = await c.expect("ERROR")
        assert error["code"] == "too_many_rooms" and "3" in error["message"]
        await c.send({"type": "JOIN_ROOM", "room": room_name(), "user": "u"})
        assert (await c.expect("ERROR"))["code"] == "too_many_rooms"


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_frame_and_message_size_limits(limited: ServerProcess, port: str) -> None:
    url = limited.ws_fast if port == "fast" else limited.ws_http
    room = room_name()
    async with await Client.connect(url) as c:
        await c.join(room, "u")
        await c.say(room, "u", "x" * 101)
        error = await c.expect("ERROR")
        assert error["code"] == "too_large" and "100" in error["message"]
        await c.send("y" * 5000)
        assert (await c.expect("ERROR"))["code"] == "too_large"
        await c.say(room, "u", "x" * 100)
        assert len((await c.expect("CHAT_MESSAGE"))["message"]) == 100


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_a_refused_send_is_named_by_its_client_id(limited: ServerProcess, port: str) -> None:
    """An ERROR answering a CHAT_MESSAGE or POST_COMMENT carries its client_id, so a client
    knows which pending send was refused; other ERRORs keep their shape."""
    url = limited.ws_fast if port == "fast" else limited.ws_http
    room = room_name()
    send = {"type": "CHAT_MESSAGE", "room": room, "user": "u"}
    async with await Client.connect(url) as c:
        await c.join(room, "u")
        refused: list[tuple[dict[str, object] | str, str]] = [
            ({**send, "message": "x" * 101, "client_id": "long"}, "too_large"),
            ({**send, "message": "   ", "client_id": "blank"}, "invalid_field"),
            ({**send, "message": 5, "client_id": "number"}, "invalid_field"),
            ({**send, "room": "elsewhere", "message": "hi", "client_id": "away"}, "not_joined"),
            (
                {
                    "type": "POST_COMMENT",
                    "post_id": "1",
                    "user": "u",
                    "comment": "y" * 101,
                    "client_id": "comment",
                },
                "too_large",
            ),
            # Over MAX_FRAME_BYTES (4096): refused before it is decoded as an event.
            (json.dumps({**send, "message": "z" * 5000, "client_id": "frame"}), "too_large"),
        ]
        for frame, code in refused:
            await c.send(frame)
            error = await c.expect("ERROR")
            sent = json.loads(frame) if isinstance(frame, str) else frame
            assert (error["code"], error.get("client_id")) == (code, sent["client_id"])
        # No client_id to give back: none, a bad one, or not a send.
        for frame in (
            {**send, "message": "x" * 101},
            {**send, "message": "hi", "client_id": "c" * 65},
            {"type": "JOIN_ROOM", "room": "", "client_id": "join"},
            "{not json",
        ):
            await c.send(frame if isinstance(frame, str) else json.dumps(frame))
            assert set(await c.expect("ERROR")) == {"type", "code", "message"}


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_a_refused_request_is_named_by_its_request_id_room_or_post(
    limited: ServerProcess, port: str
) -> None:
    """A client with several requests in flight (HISTORY and MEMBERS pages, joins) knows
    which one an ERROR refuses: it carries the request's request_id and the room or post it
    named, answered at once or after a read (JOIN_POST of a missing post). A frame that
    failed validation gets its request_id back only when it is one a client could have
    made; nothing else of it is sent back."""
    url = limited.ws_fast if port == "fast" else limited.ws_http
    room = room_name()
    async with await Client.connect(url) as c:
        refused: list[tuple[dict[str, object], dict[str, object]]] = [
            (
                {"type": "HISTORY", "room": room, "post_id": 1, "request_id": "h1"},
                {"code": "invalid_field", "request_id": "h1", "room": room, "post_id": 1},
            ),
            (
                {"type": "HISTORY", "room": room, "since": "soon", "request_id": "h2"},
                {"code": "invalid_time", "request_id": "h2", "room": room},
            ),
            (
                {"type": "MEMBERS", "room": room, "request_id": "m1"},
                {"code": "not_joined", "request_id": "m1", "room": room},
            ),
            ({"type": "LEAVE_ROOM", "room": room}, {"code": "not_joined", "room": room}),
            (
                {"type": "JOIN_POST", "post_id": "987654", "user": "u"},
                {"code": "post_not_found", "post_id": 987654},
            ),
            # Failed validation (a limit that is not a number): only the request_id.
            (
                {"type": "HISTORY", "room": room, "limit": "ten", "request_id": "h3"},
                {"code": "invalid_field", "request_id": "h3"},
            ),
            # A request_id no client makes (too long, control characters): not sent back.
            (
                {"type": "HISTORY", "room": room, "limit": "ten", "request_id": "r" * 65},
                {"code": "invalid_field"},
            ),
            (
                {"type": "MEMBERS", "room": "", "request_id": "bad\u0000id"},
                {"code": "invalid_field"},
            ),
        ]
        for frame, expected in refused:
            await c.send(frame)
            error = await c.expect("ERROR")
            del error["type"], error["message"]
            assert error == expected, frame
        # The same after joining: a request in a room it is in is answered, not refused.
        await c.join(room, "u")
        await c.send({"type": "MEMBERS", "room": room, "request_id": "m2"})
        page = await c.expect("MEMBERS")
        assert (page["request_id"], page["users"]) == ("m2", ["u"])


@pytest.mark.parametrize("url", ["ws_fast", "ws_http"])
async def test_a_frame_far_over_the_limit_is_cut_off_with_1009(
    limited: ServerProcess, url: str
) -> None:
    """Cut off while it is read, on both URLs: no client can make the server buffer a frame
    of any size (the original's URL through Granian read 16 MiB whole)."""
    async with await Client.connect(getattr(limited, url)) as c:
        await c.send("z" * (2 << 20))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await c.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    await bystander_still_served(limited)


async def test_max_connections_refused_at_the_handshake(tmp_path: Path) -> None:
    server = start_server(tmp_path / "c.db", env={"MAX_CONNECTIONS": "2"})
    try:
        first = await Client.connect(server.ws_fast)
        second = await Client.connect(server.ws_http)
        # One answer on both URLs, told apart from an Origin refusal (403).
        for url in server.ws_urls():
            with pytest.raises(websockets.InvalidStatus) as info:
                await Client.connect(url)
            assert info.value.response.status_code == 503
            assert b"too many connections" in info.value.response.body
        # The ones inside keep working.
        room = room_name()
        await first.join(room, "a")
        await second.join(room, "b")
        await first.say(room, "a", "still fine")
        assert (await second.expect("CHAT_MESSAGE"))["message"] == "still fine"
        stats = httpx.get(f"{server.http}/api/v1/stats").json()
        assert stats["errors"]["too_many_connections"] == 2
        await second.close()
        # Once one leaves (the server says so: USER_LEFT), a newcomer gets in.
        await first.expect("USER_LEFT", skip=("USER_JOINED", "CHAT_MESSAGE"))
        third = await Client.connect(server.ws_fast)
        await third.close()
        await first.close()
    finally:
        server.stop()


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_cross_site_origin_is_refused(server: ServerProcess, port: str) -> None:
    url = server.ws_fast if port == "fast" else server.ws_http
    with pytest.raises(websockets.InvalidStatus) as info:
        await Client.connect(url, origin="http://evil.example")
    assert info.value.response.status_code == 403
    # The page's own host is fine (any port), and so is a client sending no Origin.
    async with await Client.connect(url, origin=f"http://127.0.0.1:{server.port}") as c:
        assert (await c.join(room_name(), "u"))["members"] == 1
    async with await Client.connect(url) as c:
        assert (await c.join(room_name(), "u"))["members"] == 1


async def test_allowed_origins_setting(tmp_path: Path) -> None:
    server = start_server(tmp_path / "o.db", env={"ALLOWED_ORIGINS": "https://chat.example.com"})
    try:
        for url in server.ws_urls():
            async with await Client.connect(url, origin="https://chat.example.com"):
                pass
            with pytest.raises(websockets.InvalidStatus):
                await Client.connect(url, origin=f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


async def test_silent_client_is_pinged_then_dropped(tmp_path: Path) -> None:
    server = start_server(tmp_path / "p.db", env={"PING_INTERVAL": "0.5", "PING_TIMEOUT": "0.5"})
    try:
        silent = raw_handshake(server.ws_port)
        # It receives a ping, never answers, and the server closes it.
        silent.settimeout(TIMEOUT)
        data = b""
        while True:
            chunk = silent.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data[:1] == b"\x89"  # a PING frame came first
        silent.close()
        # A client that answers pings (websockets does) stays.
        async with await Client.connect(server.ws_fast) as alive:
            room = room_name()
            await alive.join(room, "alive")
            pong_waiter = await alive.ws.ping()
            await asyncio.wait_for(pong_waiter, TIMEOUT)
    finally:
        server.stop()


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each whole unmasked frame in `data` (small frames only)."""
    frames = []
    while len(data) >= 2 and len(data) >= 2 + (data[1] & 0x7F):
        assert data[1] & 0x7F < 126
        frames.append((data[0] & 0x0F, data[2 : 2 + data[1]]))
        data = data[2 + data[1] :]
    return frames


def test_a_client_that_keeps_talking_is_never_pinged(tmp_path: Path) -> None:
    """Any frame counts as a sign of life: a client that sends every 0.2 s but never answers
    a ping (nor gets one) stays well past the 1 s a silent one is given."""
    server = start_server(tmp_path / "p.db", env={"PING_INTERVAL": "0.5", "PING_TIMEOUT": "0.5"})
    try:
        chatty = raw_handshake(server.ws_port)
        chatty.settimeout(TIMEOUT)
        received = b""
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            chatty.sendall(masked_frame(1, b'{"type":"PING"}'))
            time.sleep(0.2)  # the pace under test: a frame every 0.2 s, not a wait
            chatty.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while chunk := chatty.recv(65536):
                    received += chunk
                raise AssertionError("the server closed the connection")
            chatty.settimeout(TIMEOUT)
        frames = _server_frames(received)
        assert frames and all(op == 1 for op, _ in frames), frames  # text only, no 0x9 ping
        assert all(json.loads(p)["type"] == "PONG" for _, p in frames)
        chatty.close()
    finally:
        server.stop()


async def test_slow_consumer_is_dropped_and_others_get_everything(tmp_path: Path) -> None:
    server = start_server(tmp_path / "s.db", env={"RATE_LIMIT": "0"})
    try:
        room = room_name()
        slow = raw_handshake(server.ws_port, rcvbuf=4096)
        slow.sendall(
            masked_frame(1, f'{{"type":"JOIN_ROOM","room":"{room}","user":"slow"}}'.encode())
        )
        reader = await Client.connect(server.ws_fast)
        await reader.join(room, "reader")
        sender = await Client.connect(server.ws_fast)
        await sender.join(room, "sender")
        rss_before = _rss_kb(server.proc.pid)
        text = "m" * 1000
        n, window = 10_000, 200

        async def expect_messages(client: Client, first: int, count: int) -> None:
            for i in range(first, first + count):
                event = await client.expect("CHAT_MESSAGE", skip=("USER_JOINED", "USER_LEFT"))
                assert event["message"].startswith(f"{i} ")

        # The sender and the reader keep up (a window of 200 in flight); the stalled member
        # is sent all ~10 MB and must be dropped, not buffered.
        for first in range(0, n, window):
            for i in range(first, first + window):
                await sender.say(room, "sender", f"{i} {text}")
            await expect_messages(reader, first, window)
            await expect_messages(sender, first, window)
        stats = httpx.get(f"{server.http}/api/v1/stats").json()
        assert stats["slow_consumers_dropped"] == 1
        # ~10 MB went to the room; the stalled member did not make the server hold it.
        assert _rss_kb(server.proc.pid) - rss_before < 40_000
        slow.close()
        await reader.close()
        await sender.close()
    finally:
        server.stop()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


FLOODS = {
    # Pings with the most payload a control frame may carry; each is answered with a pong.
    "pings": masked_frame(9, b"p" * 125),
    # Frames that each provoke an ERROR reply (rate limit off on this server).
    "errors": masked_frame(1, b'{"type": "NOPE"}'),
}


@pytest.mark.parametrize("flood", list(FLOODS))
@pytest.mark.parametrize("url", ["ws_port", "port"])
async def test_a_client_that_never_reads_its_replies_is_dropped(
    tmp_path: Path, url: str, flood: str
) -> None:
    """Pongs and ERROR replies count against OUTBOUND_HIGH_WATER like room traffic: a client
    that provokes them and never reads is dropped as a slow consumer, before it can make the
    server buffer more than the budget (picows' own auto-pong buffered 75 MB in 1.2 s)."""
    high_water = 64 * 1024
    server = start_server(
        tmp_path / "flood.db",
        env={"OUTBOUND_HIGH_WATER": str(high_water), "RATE_LIMIT": "0"},
    )
    try:
        sock = raw_handshake(getattr(server, url), rcvbuf=4096)
        batch = FLOODS[flood] * 1000
        deadline = time.monotonic() + TIMEOUT
        with pytest.raises(OSError):  # reset by the server (BrokenPipe or ConnectionReset)
            while time.monotonic() < deadline:
                sock.sendall(batch)
        sock.close()
        stats = httpx.get(f"{server.http}/api/v1/stats").json()
        assert stats["slow_consumers_dropped"] == 1
        async with await Client.connect(server.ws_fast) as other:  # the others go on
            assert (await other.join(room_name(), "ok"))["members"] == 1
    finally:
        server.stop()


@pytest.mark.parametrize("url", ["ws_port", "port"])
async def test_refusing_a_flood_of_handshakes_costs_no_descriptors(
    tmp_path: Path, url: str
) -> None:
    """At MAX_CONNECTIONS every refusal is answered (503) and its socket closed at once: a
    flood of refused handshakes must not leave descriptors behind (PORT through Granian held
    some in CLOSE-WAIT for over a minute)."""
    server = start_server(tmp_path / "fds.db", env={"MAX_CONNECTIONS": "1"})
    fd_dir = Path(f"/proc/{server.proc.pid}/fd")
    try:
        async with await Client.connect(server.ws_fast):
            before = len(list(fd_dir.iterdir()))
            port = getattr(server, url)
            for _ in range(200):
                with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                    sock.sendall(
                        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                    )
                    assert sock.recv(64).startswith(b"HTTP/1.1 503")
            deadline = time.monotonic() + TIMEOUT
            while len(list(fd_dir.iterdir())) > before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(list(fd_dir.iterdir())) <= before
    finally:
        server.stop()
