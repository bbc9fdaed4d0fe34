"""Crashes, signals, a locked database, hostile input: nothing acknowledged is lost, nothing
hostile runs, and the server keeps serving."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import uuid
from pathlib import Path

import apsw
import httpx
import psycopg
import pytest
import websockets

from tests.conftest import TIMEOUT, ServerProcess, start_server
from tests.integration.wsclient import Client, masked_frame, raw_handshake, two_in_a_room
from tests.pg import Postgres


def room_name() -> str:
    return "flt-" + uuid.uuid4().hex[:8]


async def burst_then_signal(
    server: ServerProcess, sig: int, n: int = 3000
) -> tuple[list[int], Client]:
    """Pipeline `n` messages, deliver `sig` once some are acknowledged; return the acked ids."""
    room = "burst"
    client = await Client.connect(server.ws_fast)
    await client.join(room, "b")
    for i in range(n):
        await client.say(room, "b", f"b{i}")
    acked: list[int] = []
    try:
        while True:
            event = await client.recv()
            if event["type"] == "CHAT_MESSAGE":
                acked.append(event["id"])
                if len(acked) == 200:
                    server.proc.send_signal(sig)
    except (websockets.ConnectionClosed, TimeoutError):
        pass
    return acked, client


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    server = start_server(db, env={"RATE_LIMIT": "0"})
    acked, _client = await burst_then_signal(server, signal.SIGKILL)
    server.kill()
    assert len(acked) >= 200
    again = start_server(db, env={"RATE_LIMIT": "0"})
    try:
        stored: list[int] = []
        params: dict[str, int] = {"limit": 1000, "after": 0}
        while True:
            body = httpx.get(f"{again.http}/api/v1/messages/burst", params=params).json()
            stored += [m["id"] for m in body["messages"]]
            if body["next"] is None:
                break
            params = {"limit": 1000, **body["next"]}
        assert set(acked) <= set(stored)
        assert stored == sorted(stored)
    finally:
        again.stop()


async def test_sigterm_during_a_burst_drains_then_closes_with_1001(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    server = start_server(db, env={"RATE_LIMIT": "0"})
    watcher = await Client.connect(server.ws_http)
    await watcher.join("burst", "watcher")
    acked, client = await burst_then_signal(server, signal.SIGTERM)
    assert server.stop() == 0
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await watcher.recv()
    for c in (client, watcher):
        assert c.ws.protocol.close_rcvd is not None and c.ws.protocol.close_rcvd.code == 1001
    again = start_server(db)
    try:
        body = httpx.get(
            f"{again.http}/api/v1/messages/burst", params={"limit": 1000, "after": 0}
        ).json()
        stored = {m["id"] for m in body["messages"]}
        while body["next"] is not None:
            body = httpx.get(
                f"{again.http}/api/v1/messages/burst", params={"limit": 1000, **body["next"]}
            ).json()
            stored |= {m["id"] for m in body["messages"]}
        assert set(acked) <= stored
        # Everything it had taken in before the signal was committed and delivered.
        assert len(acked) == len(stored)
    finally:
        again.stop()


async def test_locked_database_refuses_writes_and_keeps_serving_reads(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    server = start_server(db, env={"SQLITE_BUSY_TIMEOUT_MS": "200"})
    room = room_name()
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join(room, "u")
            await c.say(room, "u", "before the lock")
            await c.expect("CHAT_MESSAGE")
            locker = apsw.Connection(str(db))
            locker.execute("BEGIN EXCLUSIVE")
            try:
                await c.say(room, "u", "during the lock")
                error = await c.expect("ERROR")
                assert error["code"] == "store_unavailable"
                r = httpx.get(
                    f"{server.http}/api/v1/test/message", params={"room": room, "message": "x"}
                )
                assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
                # Reads still work.
                history = httpx.get(f"{server.http}/api/v1/messages/{room}").json()["messages"]
                assert [m["message"] for m in history] == ["before the lock"]
                assert httpx.get(f"{server.http}/api/v1/health").status_code == 200
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            await c.say(room, "u", "after the lock")
            assert (await c.expect("CHAT_MESSAGE"))["message"] == "after the lock"
        history = httpx.get(f"{server.http}/api/v1/messages/{room}").json()["messages"]
        assert [m["message"] for m in history] == ["before the lock", "after the lock"]
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["removed", "moved away and back"])
async def test_a_vanished_database_refuses_writes_and_loses_nothing_acknowledged(
    tmp_path: Path, how: str
) -> None:
    """The database's folder goes while the server runs: SQLite would go on committing into
    the orphaned file, and everything acknowledged since would be gone at the next start."""
    folder = tmp_path / "data"
    db = folder / "chat.db"
    folder.mkdir()
    server = start_server(db, log_path=tmp_path / "server.log")
    room = room_name()
    messages = f"{server.http}/api/v1/messages/{room}"
    health = f"{server.http}/api/v1/health"
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join(room, "u")
            acked = []
            for i in range(3):
                await c.say(room, "u", f"before {i}")
                acked.append((await c.expect("CHAT_MESSAGE"))["id"])
            r = httpx.post(messages, json={"user": "r", "message": "before, by REST"})
            assert r.status_code == 201
            acked.append(r.json()["id"])
            assert (await c.expect("CHAT_MESSAGE"))["id"] == acked[-1]  # its broadcast

            if how == "removed":
                shutil.rmtree(folder)
            else:
                folder.rename(tmp_path / "away")
            await c.say(room, "u", "after")
            assert (await c.expect("ERROR"))["code"] == "store_unavailable"
            r = httpx.post(messages, json={"user": "r", "message": "after, by REST"})
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
            r = httpx.get(health)
            assert r.status_code == 503 and "removed or replaced" in r.json()["database"], r.text

            # The folder comes back (empty, or the one moved away): writes stay refused until
            # a restart, since the server still holds the file it opened.
            if how == "removed":
                folder.mkdir()
            else:
                (tmp_path / "away").rename(folder)
            await c.say(room, "u", "after it came back")
            assert (await c.expect("ERROR"))["code"] == "store_unavailable"
            assert httpx.get(health).status_code == 503
            # Reads go on, from the file it holds: nothing refused is in them.
            assert [m["id"] for m in httpx.get(messages).json()["messages"]] == acked
    finally:
        assert server.stop() == 0
    again = start_server(db)
    try:
        history = httpx.get(f"{again.http}/api/v1/messages/{room}").json()["messages"]
        # Moved back, the file has everything acknowledged and nothing refused; removed, it
        # is a new one (what was acknowledged before went with the folder), with nothing.
        assert [m["id"] for m in history] == (acked if how != "removed" else [])
        assert httpx.get(f"{again.http}/api/v1/health").status_code == 200
    finally:
        again.stop()


async def test_postgresql_restarting_under_the_server_costs_no_message(
    tmp_path: Path, postgres: Postgres
) -> None:
    """Every session of the server's database is killed (what a restart or a failover does):
    the next send still commits and is delivered, history and health still answer."""
    url = postgres.new_database().replace("postgres@", "postgres:s3cret@")  # trust auth
    server = start_server(tmp_path / "unused.db", env={"DATABASE_URL": url})
    # The ready line says where the data is, never with the password.
    assert url.rsplit("/", 1)[1] in server.ready and "postgresql://postgres@" in server.ready
    assert "s3cret" not in server.ready and "unused.db" not in server.ready
    room = room_name()
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join(room, "u")
            await c.say(room, "u", "before")
            await c.expect("CHAT_MESSAGE")
            with psycopg.connect(url, autocommit=True) as pg:
                killed = pg.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            assert len(killed) >= 2  # the writer and the read pool
            await c.say(room, "u", "after")
            event = await c.expect("CHAT_MESSAGE")  # an ERROR would fail this
            assert event["message"] == "after"
        history = httpx.get(f"{server.http}/api/v1/messages/{room}", timeout=TIMEOUT)
        assert history.status_code == 200
        assert [m["message"] for m in history.json()["messages"]] == ["before", "after"]
        assert httpx.get(f"{server.http}/api/v1/health", timeout=TIMEOUT).status_code == 200
    finally:
        server.stop()
    assert "s3cret" not in server.log()


HOSTILE = [
    "'; DROP TABLE messages; --",
    '" OR 1=1 --',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "line one\nline two\ttabbed\r\n",
    "emoji 🎉 and rtl \u202e text",
    "{{ 7 * 7 }} ${7*7} %s %n",
    "x" * 4000,
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_strings_are_stored_and_returned_as_data(
    server: ServerProcess, text: str
) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as c:
        await c.join(room, "hostile")
        await c.say(room, "hostile", text)
        assert (await c.expect("CHAT_MESSAGE"))["message"] == text
    history = httpx.get(f"{server.http}/api/v1/messages/{room}").json()["messages"]
    assert [m["message"] for m in history] == [text]
    assert httpx.get(f"{server.http}/api/v1/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "JOIN_ROOM", "room": "r", "user": "u", "last_id": 1e400}', "invalid_field"),
        (
            '{"type": "JOIN_ROOM", "room": "r", "user": "u", "last_id": 99999999999999999999999}',
            "invalid_field",
        ),
        ('{"type": "JOIN_ROOM", "room": "r", "user": "u", "last_id": -1}', "invalid_field"),
        ('{"type": "HISTORY", "room": "r", "limit": 1e308}', "invalid_field"),
        ("[" * 100_000 + "]" * 100_000, "too_large"),
        ("[" * 5000 + "]" * 5000, "invalid_field"),
        (
            '{"type": "JOIN_ROOM", "room": ' + "[" * 5000 + "]" * 5000 + ', "user": "u"}',
            "invalid_field",
        ),
        ('{"type": "JOIN_ROOM", "room": {"$gt": ""}, "user": "u"}', "invalid_field"),
        ('{"type": "JOIN_ROOM", "room": "bad\\u202eroom", "user": "u"}', "invalid_field"),
        (
            '{"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "nul \\u0000"}',
            "invalid_field",
        ),
        (
            '{"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "\\ud800"}',
            "invalid_json",
        ),
    ],
)
async def test_hostile_frames_get_errors(server: ServerProcess, frame: str, code: str) -> None:
    for url in server.ws_urls():
        async with await Client.connect(url) as c:
            await c.send(frame)
            error = await c.expect("ERROR")
            assert error["code"] == code, (url, error)
            assert (await c.join(room_name(), "ok"))["members"] == 1


def close_code_after(sock: socket.socket, frames: bytes) -> int | None:
    """Send raw frames; the status code of the close frame the server answers with (None:
    a close frame without one), reading until the server closes the connection."""
    sock.settimeout(TIMEOUT)
    sock.sendall(frames)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    sock.close()
    close_at = data.rfind(b"\x88")
    assert close_at >= 0, data
    if data[close_at + 1] & 0x7F < 2:
        return None
    return int.from_bytes(data[close_at + 2 : close_at + 4], "big")


def unmasked_frame(opcode: int, payload: bytes) -> bytes:
    return bytes([0x80 | opcode, len(payload)]) + payload


@pytest.mark.parametrize("url", ["ws_port", "port"])
async def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    server: ServerProcess, url: str
) -> None:
    sock = raw_handshake(getattr(server, url))
    assert close_code_after(sock, masked_frame(1, b'{"type": "\xff\xfe"}')) == 1007


async def test_no_way_around_the_frame_rules_through_a_kept_alive_connection(
    server: ServerProcess,
) -> None:
    """PORT's front decides on a connection's first request; a `/ws` upgrade after an HTTP
    request on the same connection would reach Granian, whose WebSocket reads frames of any
    size. It is refused there: every WebSocket on PORT is picows'."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 4"), answer


# Each a violation of RFC 6455 that a client can commit; both URLs answer each with close 1002
# (the original's URL through Granian answered most with a close frame without a code).
VIOLATIONS = {
    "unmasked frame": unmasked_frame(1, b'{"type": "x"}'),
    "control frame over 125 bytes": masked_frame(9, b"p" * 126),
    "fragmented control frame": masked_frame(9, b"p", fin=False),
    "reserved bit": bytes([0xC1]) + masked_frame(1, b"{}")[1:],
    "reserved opcode": masked_frame(3, b"x"),
    "continuation without a start": masked_frame(0, b"oops"),
    "new message inside a fragmented one": masked_frame(1, b"a", fin=False) + masked_frame(1, b"b"),
}


@pytest.mark.parametrize("violation", list(VIOLATIONS))
@pytest.mark.parametrize("url", ["ws_port", "port"])
async def test_protocol_violations_close_with_1002_on_both_urls(
    server: ServerProcess, url: str, violation: str
) -> None:
    sock = raw_handshake(getattr(server, url))
    assert close_code_after(sock, VIOLATIONS[violation]) == 1002


def test_protocol_violations_are_not_server_errors_and_cannot_flood_the_log(
    tmp_path: Path,
) -> None:
    """Any client can break the protocol on purpose: that is the client's mistake, told at
    INFO at most once per period (with a count), never an ERROR line per frame."""
    server = start_server(tmp_path / "v.db")
    violations = [
        b"\x81\x02hi",  # unmasked
        masked_frame(3, b""),  # a reserved opcode
        masked_frame(9, b"p" * 126),  # a control frame over 125 bytes
        masked_frame(8, b"", fin=False),  # a fragmented control frame
    ]
    try:
        for i in range(300):
            sock = raw_handshake(server.ws_port)
            sock.sendall(violations[i % len(violations)])
            data = b""
            while chunk := sock.recv(4096):  # picows answers with close 1002, then hangs up
                data += chunk
            assert data[:1] == b"\x88" and int.from_bytes(data[2:4], "big") == 1002, data
            sock.close()
        stats = httpx.get(f"{server.http}/api/v1/stats").json()
        assert stats["errors"]["protocol_violation"] == 300
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert [r for r in records if r["level"] in ("error", "critical")] == []
    told = [
        r for r in records if r["logger"].startswith("picows") or "WebSocket protocol" in r["msg"]
    ]
    assert 1 <= len(told) <= 3, told
    assert all(r["level"] == "info" for r in told), told


async def test_fragmented_messages_are_reassembled_on_the_fast_port(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as watcher:
        await watcher.join(room, "w")
        sock = raw_handshake(server.ws_port)
        join = json.dumps({"type": "JOIN_ROOM", "room": room, "user": "frag"}).encode()
        sock.sendall(masked_frame(1, join))
        msg = json.dumps(
            {"type": "CHAT_MESSAGE", "room": room, "user": "frag", "message": "héllo wörld"}
        ).encode()
        third = len(msg) // 3
        # A ping between fragments is allowed and answered.
        sock.sendall(
            masked_frame(1, msg[:third], fin=False)
            + masked_frame(9, b"p")
            + masked_frame(0, msg[third : 2 * third], fin=False)
            + masked_frame(0, msg[2 * third :], fin=True)
        )
        await watcher.expect("USER_JOINED")
        event = await watcher.expect("CHAT_MESSAGE")
        assert event["message"] == "héllo wörld" and event["user"] == "frag"
        # A continuation with nothing to continue is a protocol error: close 1002.
        sock.sendall(masked_frame(0, b"oops"))
        data = b""
        sock.settimeout(TIMEOUT)
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        close_at = data.rfind(b"\x88")
        assert close_at >= 0 and int.from_bytes(data[close_at + 2 : close_at + 4], "big") == 1002
        sock.close()


async def test_text_split_inside_a_utf8_character_is_fine(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as watcher:
        await watcher.join(room, "w")
        sock = raw_handshake(server.ws_port)
        sock.sendall(
            masked_frame(1, json.dumps({"type": "JOIN_ROOM", "room": room, "user": "s"}).encode())
        )
        msg = json.dumps(
            {"type": "CHAT_MESSAGE", "room": room, "user": "s", "message": "€"}, ensure_ascii=False
        ).encode()
        cut = msg.index("€".encode()) + 1  # inside the 3-byte character
        sock.sendall(masked_frame(1, msg[:cut], fin=False) + masked_frame(0, msg[cut:]))
        await watcher.expect("USER_JOINED")
        assert (await watcher.expect("CHAT_MESSAGE"))["message"] == "€"
        sock.close()


async def test_a_full_database_refuses_writes_and_keeps_serving_history(tmp_path: Path) -> None:
    # DB_MAX_BYTES caps the file the way a full disk would (SQLite answers SQLITE_FULL).
    server = start_server(
        tmp_path / "f.db", env={"DB_MAX_BYTES": str(160 * 1024), "RATE_LIMIT": "0"}
    )
    room = room_name()
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join(room, "u")
            stored = 0
            for i in range(2000):
                await c.say(room, "u", f"{i} " + "x" * 900)
                event = await c.recv()
                if event["type"] == "ERROR":
                    assert event["code"] == "store_unavailable", event
                    break
                assert event["type"] == "CHAT_MESSAGE"
                stored += 1
            else:
                raise AssertionError("the database never filled up")
            assert stored > 10
            # Nothing that was refused is in history; everything acknowledged is.
            history = httpx.get(
                f"{server.http}/api/v1/messages/{room}", params={"limit": 1000}
            ).json()["messages"]
            assert len(history) == stored
            assert httpx.get(f"{server.http}/api/v1/health").status_code == 200
            r = httpx.get(
                f"{server.http}/api/v1/test/message", params={"room": room, "message": "y" * 3000}
            )
            assert r.status_code == 503 and r.json()["code"] == "store_unavailable"
            # The connection is still usable for everything that does not write.
            await c.send({"type": "HISTORY", "room": room, "limit": 1})
            assert (await c.expect("HISTORY"))["messages"][0]["id"] == history[-1]["id"]
    finally:
        server.stop()


async def test_nothing_leaves_before_its_transaction_commits(tmp_path: Path) -> None:
    # Hold the database's write lock: the writer's batch waits, open, in BEGIN IMMEDIATE.
    db = tmp_path / "hold.db"
    server = start_server(db, env={"SQLITE_BUSY_TIMEOUT_MS": "60000"})
    room = room_name()
    try:
        async with two_in_a_room(server, room, ("s", "w")) as (sender, watcher):
            locker = apsw.Connection(str(db))
            locker.execute("BEGIN IMMEDIATE")
            try:
                await sender.say(room, "s", "held")
                # Until the lock goes, nobody (the sender included) hears of it: a HISTORY
                # request, answered at once, comes back first, and the message is not stored.
                for client in (sender, watcher):
                    await client.send({"type": "HISTORY", "room": room, "request_id": "probe"})
                    page = await client.recv()
                    assert page["type"] == "HISTORY" and page["messages"] == [], page
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            for client in (sender, watcher):
                event = await client.expect("CHAT_MESSAGE")
                assert event["message"] == "held"
    finally:
        server.stop()
