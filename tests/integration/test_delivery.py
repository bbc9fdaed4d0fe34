"""Delivery guarantees: gap-free resume, idempotent sends, presence, history cursors, times."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import TIMEOUT, ServerProcess, copy_database, start_server
from tests.integration.wsclient import Client, masked_frame, raw_handshake, two_in_a_room


def room_name() -> str:
    return "dlv-" + uuid.uuid4().hex[:8]


async def collect_messages(client: Client, n: int) -> list[dict]:
    got: list[dict] = []
    while len(got) < n:
        event = await client.recv()
        if event["type"] == "CHAT_MESSAGE":
            got.append(event)
    return got


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_resume_after_500_missed_gets_exactly_those_then_live(
    server: ServerProcess, port: str
) -> None:
    room = room_name()
    url = server.ws_fast if port == "fast" else server.ws_http
    sender = await Client.connect(server.ws_fast)
    await sender.join(room, "sender")
    reader = await Client.connect(url)
    await reader.join(room, "reader")
    for i in range(10):
        await sender.say(room, "sender", f"before {i}")
    seen = await collect_messages(reader, 10)
    last_id = seen[-1]["id"]
    await reader.close()

    async with httpx.AsyncClient(base_url=server.http) as http:
        for i in range(500):
            if i % 2:
                await sender.say(room, "sender", f"away {i}")
            else:
                r = await http.post(
                    f"/api/v1/messages/{room}", json={"user": "rest", "message": f"away {i}"}
                )
                assert r.status_code == 201
    await collect_messages(sender, 500)  # every send committed and broadcast

    reader = await Client.connect(url)
    await reader.send({"type": "JOIN_ROOM", "room": room, "user": "reader", "last_id": last_id})
    replay = await collect_messages(reader, 500)
    assert [m["message"] for m in replay] == [f"away {i}" for i in range(500)]
    ids = [m["id"] for m in replay]
    assert ids == sorted(ids) and ids[0] > last_id and len(set(ids)) == 500
    joined = await reader.expect("ROOM_JOINED")
    assert joined["replayed"] == 500
    await sender.say(room, "sender", "live")
    assert (await reader.expect("CHAT_MESSAGE", skip=("USER_JOINED",)))["message"] == "live"
    await sender.expect("CHAT_MESSAGE", skip=("USER_JOINED", "USER_LEFT"))
    await reader.close()
    await sender.close()


async def resumed(
    url: str, room: str, user: str, last_id: int, last_change: int
) -> tuple[list[str], dict]:
    """A client back in `room` as fastchat's own clients come back: the texts it was
    replayed, in order, and its ROOM_JOINED."""
    async with await Client.connect(url) as client:
        await client.send(
            {
                "type": "JOIN_ROOM",
                "room": room,
                "user": user,
                "last_id": last_id,
                "last_change": last_change,
            }
        )
        replayed: list[str] = []
        while (event := await client.recv())["type"] != "ROOM_JOINED":
            if event["type"] == "CHAT_MESSAGE":
                replayed.append(event["message"])
        return replayed, event


async def until_kept(
    http: httpx.AsyncClient, url: str, room: str, last_id: int, last_change: int
) -> None:
    """Resumes that missed nothing, until one is replayed from memory: a room's newest
    events are read in a task of their own after a resume read the database. Each probe
    waits for its own ROOM_JOINED, a round trip through the server: no sleep between."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        before = (await http.get("/api/v1/stats")).json()["resumes"]["memory"]
        assert (await resumed(url, room, "probe", last_id, last_change))[0] == []
        if (await http.get("/api/v1/stats")).json()["resumes"]["memory"] > before:
            return
        assert time.monotonic() < deadline, "the room's newest events were never kept"


async def test_a_reconnect_storm_replays_each_client_exactly_what_it_missed(
    server: ServerProcess,
) -> None:
    """Every client of a room back at once (after a deploy), each having missed a different
    number of messages: each gets exactly those, in order, then joins. The first resume
    reads the database; then the room's newest events are kept, and the resumes that missed
    no more than those are replayed from memory (`resumes` in the stats), the others from
    the database."""
    room = room_name()
    sender = await Client.connect(server.ws_fast)
    last_change = (await sender.join(room, "sender")).get("last_change", 0)
    for i in range(100):
        await sender.say(room, "sender", f"m{i}")
    ids = [m["id"] for m in await collect_messages(sender, 100)]
    texts = [f"m{i}" for i in range(100)]
    async with httpx.AsyncClient(base_url=server.http) as http:
        before = (await http.get("/api/v1/stats")).json()["resumes"]
        first = await resumed(server.ws_http, room, "first", ids[-71], last_change)
        assert first[0] == texts[-70:] and first[1]["replayed"] == 70
        after = (await http.get("/api/v1/stats")).json()["resumes"]
        assert after["database"] - before["database"] == 1
        await until_kept(http, server.ws_fast, room, ids[-1], last_change)
        before = (await http.get("/api/v1/stats")).json()["resumes"]
        # Up to 63 missed: within the 64 newest kept, whatever other ids lie between.
        missed = [0, 1, 5, 20, 63, 65, 80, 99]
        storm = await asyncio.gather(
            *(
                resumed(url, room, f"u{k}", ids[-1 - k], last_change)
                for k in missed
                for url in (server.ws_fast, server.ws_http)
            )
        )
        after = (await http.get("/api/v1/stats")).json()["resumes"]
    for k, (replayed, joined) in zip([k for k in missed for _ in "ab"], storm, strict=True):
        assert replayed == texts[100 - k :], k
        assert joined.get("replayed", 0) == k
    assert after["memory"] - before["memory"] == 2 * 5
    assert after["database"] - before["database"] == 2 * 3
    # Kept as they are sent: 80 more, the oldest of those kept leave as the newest come.
    for i in range(100, 180):
        await sender.say(room, "sender", f"m{i}")
    ids += [m["id"] for m in await collect_messages(sender, 80)]
    texts += [f"m{i}" for i in range(100, 180)]
    async with httpx.AsyncClient(base_url=server.http) as http:
        before = (await http.get("/api/v1/stats")).json()["resumes"]
        for k in (0, 63, 66, 90):
            replayed, joined = await resumed(
                server.ws_fast, room, f"v{k}", ids[-1 - k], last_change
            )
            assert replayed == texts[180 - k :] and joined.get("replayed", 0) == k, k
        after = (await http.get("/api/v1/stats")).json()["resumes"]
    assert (after["memory"] - before["memory"], after["database"] - before["database"]) == (2, 2)
    # Joined: what is sent next comes live, once.
    async with await Client.connect(server.ws_fast) as late:
        await late.send({"type": "JOIN_ROOM", "room": room, "user": "late", "last_id": ids[-3]})
        assert [(await late.expect("CHAT_MESSAGE"))["message"] for _ in range(2)] == texts[-2:]
        await late.expect("ROOM_JOINED")
        await sender.say(room, "sender", "live")
        assert (await late.expect("CHAT_MESSAGE", skip=("USER_JOINED",)))["message"] == "live"
    await sender.close()


async def test_a_resume_after_an_older_copy_was_restored_into_the_live_file(
    tmp_path: Path,
) -> None:
    """Someone copies an older backup into the live database file (SQLite's backup API:
    the same file, writes go on, ids go back). What was kept in memory for resumes is of
    the other history: a resume now gets what the file holds, not messages it lost."""

    db = tmp_path / "chat.db"
    srv = start_server(db, env={"RATE_LIMIT": "0"})
    room = room_name()
    try:
        async with await Client.connect(srv.ws_fast) as sender:
            last_change = (await sender.join(room, "sender")).get("last_change", 0)
            for text in ("a", "b"):
                await sender.say(room, "sender", text)
            kept = [m["id"] for m in await collect_messages(sender, 2)]
            copy_database(db, tmp_path / "older.db")
            for text in ("c", "d"):
                await sender.say(room, "sender", text)
            await collect_messages(sender, 2)
            replayed, _ = await resumed(srv.ws_fast, room, "r1", kept[-1], last_change)
            assert replayed == ["c", "d"]  # from the database; the newest events kept
            copy_database(tmp_path / "older.db", db)
            await sender.say(room, "sender", "e")
            assert (await collect_messages(sender, 1))[0]["message"] == "e"
            replayed, joined = await resumed(srv.ws_fast, room, "r2", kept[-1], last_change)
            assert replayed == ["e"] and joined.get("replayed", 0) == 1
    finally:
        srv.stop()


class RawReader:
    """Server frames (unmasked, unfragmented text) off a raw socket, decoded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "connection closed"
            self.buffer += chunk
        head = bytes(self.buffer[:n])
        del self.buffer[:n]
        return head

    def until(self, kind: str) -> list[dict]:
        """Every event up to and including the first of type `kind`."""
        events: list[dict] = []
        while not events or events[-1]["type"] != kind:
            size = self._take(2)[1] & 0x7F
            if size == 126:
                size = int.from_bytes(self._take(2), "big")
            elif size == 127:
                size = int.from_bytes(self._take(8), "big")
            payload = self._take(size)
            events.append(json.loads(payload))
        return events


async def test_a_replay_to_a_client_that_does_not_read_waits_for_it_then_completes(
    server: ServerProcess,
) -> None:
    """A resume of ~12 MB (more than the kernel buffers of both sockets hold) to a client
    with a 4 kB receive buffer that reads nothing for a second: the replay waits for its
    socket to drain (picows' resume_writing) instead of queueing it all, and once the client
    reads, every message comes in order, then ROOM_JOINED, then live traffic."""
    room = room_name()
    sender = await Client.connect(server.ws_fast)
    await sender.join(room, "sender")
    text = "x" * 3900
    stored: list[dict] = []
    for batch in range(30):  # 100 at a time: the sender reads its copies as it goes
        for i in range(100):
            message = f"{batch * 100 + i} {text}"
            await sender.send(
                {"type": "CHAT_MESSAGE", "room": room, "user": "sender", "message": message}
            )
        stored += await collect_messages(sender, 100)
    sock = raw_handshake(server.ws_port, rcvbuf=4096)
    try:
        join = {"type": "JOIN_ROOM", "room": room, "user": "slow", "last_id": 0}
        sock.sendall(masked_frame(0x1, json.dumps(join).encode()))
        # Not reading: the replay must wait for it (not fail or drop it). Read only once the
        # server says a replay is paused on a client.
        deadline = time.monotonic() + TIMEOUT
        async with httpx.AsyncClient(base_url=server.http) as http:
            while (await http.get("/api/v1/stats")).json()["replays_waiting"] < 1:
                assert time.monotonic() < deadline, "the replay never waited for its reader"
                await asyncio.sleep(0.02)
        reader = RawReader(sock)
        events = await asyncio.to_thread(reader.until, "ROOM_JOINED")
        replayed = [e for e in events if e["type"] == "CHAT_MESSAGE"]
        assert [e["id"] for e in replayed] == [m["id"] for m in stored]
        assert events[-1]["replayed"] == 3000
        await sender.say(room, "sender", "live")
        live = await asyncio.to_thread(reader.until, "CHAT_MESSAGE")
        assert live[-1]["message"] == "live"
    finally:
        sock.close()
        await sender.close()


async def test_resume_racing_live_sends_has_no_gap_and_no_duplicate(server: ServerProcess) -> None:
    room = room_name()
    sender = await Client.connect(server.ws_fast)
    await sender.join(room, "sender")
    for i in range(1200):
        await sender.say(room, "sender", f"old {i}")
    old = await collect_messages(sender, 1200)
    start_id = old[99]["id"]  # the rejoiner saw the first 100

    async def keep_sending() -> None:
        for i in range(600):
            await sender.say(room, "sender", f"new {i}")
            if i % 50 == 0:
                await asyncio.sleep(0)

    rejoiner = await Client.connect(server.ws_http)
    sending = asyncio.create_task(keep_sending())
    await rejoiner.send({"type": "JOIN_ROOM", "room": room, "user": "r", "last_id": start_id})
    await sending
    received = []
    while len(received) < 1100 + 600:
        event = await rejoiner.recv()
        if event["type"] == "CHAT_MESSAGE":
            received.append(event)
    ids = [e["id"] for e in received]
    expected = [m["id"] for m in old[100:]] + [m["id"] for m in await collect_messages(sender, 600)]
    assert ids == expected  # every one, once, in order, across the replay/live switch
    await rejoiner.close()
    await sender.close()


async def test_a_retried_send_is_stored_once_and_answered_with_the_original(
    server: ServerProcess,
) -> None:
    room = room_name()
    async with two_in_a_room(server, room) as (alice, bob):
        for _ in range(3):
            await alice.say(room, "alice", "only once", client_id="retry-1")
        answers = [await alice.expect("CHAT_MESSAGE") for _ in range(3)]
        assert {a["id"] for a in answers} == {answers[0]["id"]}
        assert all(a["client_id"] == "retry-1" for a in answers)
        # Bob saw it once: the next thing he gets after it is a fresh marker.
        assert (await bob.expect("CHAT_MESSAGE"))["id"] == answers[0]["id"]
        await alice.say(room, "alice", "marker")
        assert (await bob.expect("CHAT_MESSAGE"))["message"] == "marker"
    async with httpx.AsyncClient(base_url=server.http) as http:
        history = (await http.get(f"/api/v1/messages/{room}")).json()["messages"]
        assert [m["message"] for m in history] == ["only once", "marker"]
        first = await http.post(
            f"/api/v1/messages/{room}", json={"user": "u", "message": "x", "client_id": "k"}
        )
        again = await http.post(
            f"/api/v1/messages/{room}", json={"user": "u", "message": "x", "client_id": "k"}
        )
        assert first.json()["id"] == again.json()["id"]
        # The same client id from another user is another message.
        other = await http.post(
            f"/api/v1/messages/{room}", json={"user": "v", "message": "x", "client_id": "k"}
        )
        assert other.json()["id"] != first.json()["id"]


async def test_comment_retry_is_stored_once(server: ServerProcess) -> None:
    async with await Client.connect(server.ws_fast) as c:
        for _ in range(3):
            await c.send(
                {
                    "type": "POST_COMMENT",
                    "post_id": 2,
                    "user": "u",
                    "comment": "hi",
                    "client_id": "cmt-once",
                }
            )
        ids = {(await c.expect("POST_COMMENT"))["id"] for _ in range(3)}
        assert len(ids) == 1


async def test_presence_counts_across_joins_leaves_and_drops(server: ServerProcess) -> None:
    room = room_name()
    watcher = await Client.connect(server.ws_fast)
    assert (await watcher.join(room, "watcher"))["members"] == 1
    others = [await Client.connect(u) for u in (server.ws_fast, server.ws_http, server.ws_fast)]
    for i, c in enumerate(others):
        joined = await c.join(room, f"u{i}")
        assert joined["members"] == i + 2
        assert (await watcher.expect("USER_JOINED"))["members"] == i + 2
    assert set((await others[2].join(room, "u2"))["users"]) == {"watcher", "u0", "u1", "u2"}
    await others[0].send({"type": "LEAVE_ROOM", "room": room})
    assert (await watcher.expect("USER_LEFT")) == {
        "type": "USER_LEFT",
        "room": room,
        "user": "u0",
        "members": 3,
        "sessions": 0,
    }
    others[1].ws.transport.abort()
    assert (await watcher.expect("USER_LEFT"))["members"] == 2
    await others[2].close()
    assert (await watcher.expect("USER_LEFT"))["members"] == 1
    await others[0].close()
    await watcher.close()


async def test_presence_is_by_name_across_tabs(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as watcher:
        await watcher.join(room, "watcher")
        tab1 = await Client.connect(server.ws_fast)
        tab2 = await Client.connect(server.ws_http)
        await tab1.join(room, "sam")
        assert (await watcher.expect("USER_JOINED"))["sessions"] == 1
        joined = await tab2.join(room, "sam")
        assert joined["users"] == ["watcher", "sam"] and joined["members"] == 3
        assert (await watcher.expect("USER_JOINED"))["sessions"] == 2
        await tab1.close()
        left = await watcher.expect("USER_LEFT")
        assert left["user"] == "sam" and left["sessions"] == 1  # still here in the other tab
        await tab2.close()
        assert (await watcher.expect("USER_LEFT"))["sessions"] == 0


async def test_paging_1000_messages_with_before_returns_each_once(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as c:
        await c.join(room, "pager")
        for i in range(1000):
            await c.say(room, "pager", f"p{i}")
        stored = await collect_messages(c, 1000)
    async with httpx.AsyncClient(base_url=server.http) as http:
        seen: list[int] = []
        params: dict[str, int] = {"limit": 73}
        while True:
            body = (await http.get(f"/api/v1/messages/{room}", params=params)).json()
            seen = [m["id"] for m in body["messages"]] + seen
            if not body["has_more"]:
                assert body["next"] is None
                break
            assert body["next"] == {"before": body["messages"][0]["id"]}
            params = {"limit": 73, **body["next"]}
        assert seen == [m["id"] for m in stored]
        # Forward with `after` and the `next` cursor, too.
        forward: list[int] = []
        params = {"limit": 250, "after": 0}
        while True:
            body = (await http.get(f"/api/v1/messages/{room}", params=params)).json()
            forward += [m["id"] for m in body["messages"]]
            if body["next"] is None:
                break
            params = {"limit": 250, **body["next"]}
        assert forward == seen


def _formats(ts: str) -> list[str]:
    dt = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    seconds = dt.timestamp()
    ms = round(seconds * 1000)
    return [
        ts,  # RFC 3339, Z, fractions
        dt.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],  # ISO without zone (UTC)
        dt.astimezone().isoformat(),  # with a numeric offset
        dt.strftime("%Y-%m-%d %H:%M:%S"),  # 'YYYY-MM-DD HH:MM:SS'
        str(ms // 1000),  # Unix seconds
        str(ms),  # milliseconds
        str(ms * 1000),  # microseconds
        str(ms * 1_000_000),  # nanoseconds
    ]


async def test_since_and_until_accept_every_time_format(server: ServerProcess) -> None:
    room = room_name()
    async with httpx.AsyncClient(base_url=server.http) as http:
        first = (
            await http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": "a"})
        ).json()
        for text in ("b", "c"):
            await http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": text})
        for value in _formats(first["timestamp"]):
            # Whole-second formats round down, so the first message is always included.
            body = (await http.get(f"/api/v1/messages/{room}", params={"since": value})).json()
            assert [m["message"] for m in body["messages"]] == ["a", "b", "c"], value
        far_future = "2999-01-01T00:00:00Z"
        assert (await http.get(f"/api/v1/messages/{room}", params={"since": far_future})).json()[
            "messages"
        ] == []
        until = (await http.get(f"/api/v1/messages/{room}", params={"until": "2000-01-01"})).json()
        assert until["messages"] == []
        for bad in ("yesterday", "2026-13-45", "12:00", "1e400", "--"):
            r = await http.get(f"/api/v1/messages/{room}", params={"since": bad})
            assert r.status_code == 400, bad
            assert r.json()["code"] == "invalid_time" and "RFC 3339" in r.json()["message"]


async def test_history_over_the_socket(server: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(server.ws_fast) as c:
        await c.join(room, "h")
        for i in range(30):
            await c.say(room, "h", f"h{i}")
        await collect_messages(c, 30)
        await c.send({"type": "HISTORY", "room": room, "limit": 10, "request_id": "q1"})
        page = await c.expect("HISTORY")
        assert page["request_id"] == "q1" and page["room"] == room and page["has_more"] is True
        assert [m["message"] for m in page["messages"]] == [f"h{i}" for i in range(20, 30)]
        await c.send({"type": "HISTORY", "room": room, "limit": 10, **page["next"]})
        older = await c.expect("HISTORY")
        assert [m["message"] for m in older["messages"]] == [f"h{i}" for i in range(10, 20)]
        await c.send({"type": "HISTORY", "room": room, "since": "not a time"})
        error = await c.expect("ERROR")
        assert error["code"] == "invalid_time" and "RFC 3339" in error["message"]
        await c.send({"type": "HISTORY", "post_id": "1", "limit": 5})
        comments = await c.expect("HISTORY")
        assert comments["post_id"] == 1 and "comments" in comments
        await c.send({"type": "HISTORY"})
        assert (await c.expect("ERROR"))["code"] == "invalid_field"
        await c.send({"type": "HISTORY", "post_id": 987654})
        assert (await c.expect("ERROR"))["code"] == "post_not_found"
        await c.send({"type": "HISTORY", "room": room, "limit": 5000})
        assert (await c.expect("ERROR"))["code"] == "invalid_field"


async def test_post_resume_replays_missed_comments(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        post = (await http.post("/api/v1/posts", json={"title": "R", "content": "c"})).json()
        pid = post["id"]
        ids = []
        for i in range(5):
            r = await http.post(
                f"/api/v1/posts/{pid}/comments", json={"user": "u", "comment": f"c{i}"}
            )
            ids.append(r.json()["id"])
    async with await Client.connect(server.ws_http) as c:
        await c.send({"type": "JOIN_POST", "post_id": str(pid), "last_id": ids[1]})
        replayed = [await c.expect("POST_COMMENT") for _ in range(3)]
        assert [e["comment"] for e in replayed] == ["c2", "c3", "c4"]
        assert (await c.expect("POST_JOINED"))["replayed"] == 3
