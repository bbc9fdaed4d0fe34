"""The WebSocket protocol against the real server, on both ports."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from fastchat._hub import FLUSH_CHUNK
from tests.conftest import ServerProcess, start_server
from tests.integration.wsclient import Client, masked_frame, raw_handshake, two_in_a_room

PORTS = ["fast", "http"]


def url_of(server: ServerProcess, port: str) -> str:
    return server.ws_fast if port == "fast" else server.ws_http


def room_name() -> str:
    return "room-" + uuid.uuid4().hex[:8]


def assert_rfc3339_utc(ts: str) -> None:
    assert ts.endswith("Z") and "T" in ts, ts
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("port", PORTS)
async def test_two_clients_chat_and_each_message_has_id_and_timestamp(
    server: ServerProcess, port: str
) -> None:
    room = room_name()
    async with (
        await Client.connect(url_of(server, port)) as alice,
        await Client.connect(url_of(server, port)) as bob,
    ):
        joined = await alice.join(room, "alice")
        assert joined["members"] == 1 and joined["users"] == ["alice"]
        joined = await bob.join(room, "bob")
        assert joined["members"] == 2 and set(joined["users"]) == {"alice", "bob"}
        presence = await alice.expect("USER_JOINED")
        assert presence == {
            "type": "USER_JOINED",
            "room": room,
            "user": "bob",
            "members": 2,
            "sessions": 1,
        }

        await alice.say(room, "alice", "hello bob")
        mine = await alice.expect("CHAT_MESSAGE")
        theirs = await bob.expect("CHAT_MESSAGE")
        assert mine == theirs
        assert mine["message"] == "hello bob" and mine["user"] == "alice" and mine["room"] == room
        assert isinstance(mine["id"], int) and mine["id"] > 0
        assert_rfc3339_utc(mine["timestamp"])

        await bob.say(room, "bob", "hi alice")
        reply = await alice.expect("CHAT_MESSAGE")
        assert reply["message"] == "hi alice" and reply["id"] > mine["id"]
        assert (await bob.expect("CHAT_MESSAGE")) == reply


async def test_both_ports_share_rooms(server: ServerProcess) -> None:
    room = room_name()
    async with two_in_a_room(server, room, ("fast", "legacy")) as (fast, legacy):
        await legacy.say(room, "legacy", "from PORT")
        assert (await fast.expect("CHAT_MESSAGE"))["message"] == "from PORT"
        await legacy.expect("CHAT_MESSAGE")
        await fast.say(room, "fast", "from WS_PORT")
        assert (await legacy.expect("CHAT_MESSAGE"))["message"] == "from WS_PORT"


@pytest.mark.parametrize("port", PORTS)
async def test_a_client_in_another_room_receives_nothing(server: ServerProcess, port: str) -> None:
    room, other = room_name(), room_name()
    async with (
        await Client.connect(url_of(server, port)) as alice,
        await Client.connect(url_of(server, port)) as carol,
    ):
        await alice.join(room, "alice")
        await carol.join(other, "carol")
        for i in range(5):
            await alice.say(room, "alice", f"secret {i}")
        for _ in range(5):
            await alice.expect("CHAT_MESSAGE")
        # A marker in carol's own room: it must be the very next thing she receives.
        await carol.say(other, "carol", "marker")
        event = await carol.recv()
        assert event["type"] == "CHAT_MESSAGE" and event["message"] == "marker", event


@pytest.mark.parametrize("port", PORTS)
async def test_leave_room_stops_delivery_and_tells_the_others(
    server: ServerProcess, port: str
) -> None:
    room = room_name()
    async with (
        await Client.connect(url_of(server, port)) as alice,
        await Client.connect(url_of(server, port)) as bob,
    ):
        await alice.join(room, "alice")
        await bob.join(room, "bob")
        await alice.expect("USER_JOINED")
        await bob.send({"type": "LEAVE_ROOM", "room": room})
        assert (await bob.expect("ROOM_LEFT")) == {"type": "ROOM_LEFT", "room": room, "members": 1}
        left = await alice.expect("USER_LEFT")
        assert left["user"] == "bob" and left["members"] == 1
        await alice.say(room, "alice", "anyone?")
        await alice.expect("CHAT_MESSAGE")
        await bob.send({"type": "LEAVE_ROOM", "room": room})
        assert (await bob.expect("ERROR"))["code"] == "not_joined"


@pytest.mark.parametrize("port", PORTS)
async def test_abrupt_disconnect_is_a_leave(server: ServerProcess, port: str) -> None:
    room = room_name()
    async with await Client.connect(url_of(server, port)) as alice:
        await alice.join(room, "alice")
        bob = await Client.connect(url_of(server, port))
        await bob.join(room, "bob")
        await alice.expect("USER_JOINED")
        bob.ws.transport.abort()  # no close handshake
        left = await alice.expect("USER_LEFT")
        assert left["user"] == "bob" and left["members"] == 1


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("", "invalid_json"),
        ('{"type": "SHOUT", "room": "x"}', "unknown_type"),
        ('{"room": "x"}', "invalid_field"),
        ("[1, 2, 3]", "invalid_field"),
        ('"just a string"', "invalid_field"),
        ('{"type": "JOIN_ROOM"}', "invalid_field"),
        ('{"type": "JOIN_ROOM", "room": 42, "user": "u"}', "invalid_field"),
        ('{"type": "JOIN_ROOM", "room": "", "user": "u"}', "invalid_field"),
        ('{"type": "JOIN_ROOM", "room": "' + "r" * 65 + '", "user": "u"}', "invalid_field"),
        ('{"type": "JOIN_ROOM", "room": "a\\u0000b", "user": "u"}', "invalid_field"),
        ('{"type": "CHAT_MESSAGE", "room": "r", "user": "u"}', "invalid_field"),
        ('{"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "   "}', "invalid_field"),
        ('{"type": "CHAT_MESSAGE", "room": "nojoin", "user": "u", "message": "m"}', "not_joined"),
        (
            '{"type": "POST_COMMENT", "post_id": "abc", "user": "u", "comment": "c"}',
            "invalid_field",
        ),
        (
            '{"type": "POST_COMMENT", "post_id": "999999", "user": "u", "comment": "c"}',
            "post_not_found",
        ),
        ('{"type": "JOIN_POST", "post_id": 999999}', "post_not_found"),
        (
            '{"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "' + "m" * 4001 + '"}',
            "too_large",
        ),
        ("x" * 70_000, "too_large"),
    ],
)
async def test_bad_input_gets_an_error_and_the_connection_stays_open(
    server: ServerProcess, port: str, frame: str, code: str
) -> None:
    room = room_name()
    async with (
        await Client.connect(url_of(server, port)) as client,
        await Client.connect(url_of(server, port)) as bystander,
    ):
        await bystander.join(room, "bystander")
        await client.send(frame)
        error = await client.expect("ERROR")
        assert error["code"] == code, error
        assert isinstance(error["message"], str) and len(error["message"]) > 5
        # Same connection keeps working, and the bystander saw nothing of it.
        await client.join(room, "client")
        await bystander.expect("USER_JOINED")
        await client.say(room, "client", "still here")
        assert (await bystander.expect("CHAT_MESSAGE"))["message"] == "still here"


@pytest.mark.parametrize("port", PORTS)
async def test_binary_frames_are_refused_with_an_error(server: ServerProcess, port: str) -> None:
    async with await Client.connect(url_of(server, port)) as client:
        await client.send(b'{"type": "JOIN_ROOM", "room": "r", "user": "u"}')
        assert (await client.expect("ERROR"))["code"] == "unsupported_data"
        assert (await client.join("r-" + uuid.uuid4().hex[:6], "u"))["members"] == 1


@pytest.mark.parametrize("port", PORTS)
async def test_post_viewers_get_new_comments_live(server: ServerProcess, port: str) -> None:
    async with (
        await Client.connect(url_of(server, port)) as viewer,
        await Client.connect(url_of(server, port)) as writer,
    ):
        await viewer.send({"type": "JOIN_POST", "post_id": "1"})
        joined = await viewer.expect("POST_JOINED")
        assert joined["post_id"] == 1 and joined["viewers"] >= 1
        # The writer is not viewing the post: it still gets its own copy as the ack.
        await writer.send(
            {"type": "POST_COMMENT", "post_id": "1", "user": "writer", "comment": "Great post!"}
        )
        ack = await writer.expect("POST_COMMENT")
        live = await viewer.expect("POST_COMMENT")
        assert ack == live
        assert live["post_id"] == 1 and live["comment"] == "Great post!" and live["id"] > 0
        assert_rfc3339_utc(live["timestamp"])
        # Through the original REST test endpoint too.
        async with httpx.AsyncClient(base_url=server.http) as http:
            r = await http.get(
                "/api/v1/test/comment", params={"post_id": "1", "comment": "via REST", "user": "c"}
            )
            assert r.status_code == 200
        assert (await viewer.expect("POST_COMMENT"))["comment"] == "via REST"
        # Viewers of another post get nothing.
        await viewer.send({"type": "LEAVE_POST", "post_id": 1})
        assert (await viewer.expect("POST_LEFT"))["post_id"] == 1


@pytest.mark.parametrize("port", PORTS)
async def test_rest_test_message_reaches_live_clients(server: ServerProcess, port: str) -> None:
    room = room_name()
    async with await Client.connect(url_of(server, port)) as client:
        await client.join(room, "watcher")
        async with httpx.AsyncClient(base_url=server.http) as http:
            r = await http.get(
                "/api/v1/test/message", params={"room": room, "message": "Hello", "user": "tester"}
            )
        assert r.status_code == 200
        stored = r.json()["message"]
        live = await client.expect("CHAT_MESSAGE")
        assert live["id"] == stored["id"] and live["message"] == "Hello"


async def test_typing_is_relayed_to_others_not_stored(server: ServerProcess) -> None:
    room = room_name()
    async with two_in_a_room(server, room) as (alice, bob):
        await alice.send({"type": "TYPING", "room": room, "user": "alice"})
        assert (await bob.expect("TYPING")) == {"type": "TYPING", "room": room, "user": "alice"}
        await alice.say(room, "alice", "done typing")
        # Alice never gets her own TYPING: the next thing she sees is her message.
        assert (await alice.recv())["type"] == "CHAT_MESSAGE"
    async with httpx.AsyncClient(base_url=server.http) as http:
        history = (await http.get(f"/api/v1/messages/{room}")).json()
    assert [m["message"] for m in history["messages"]] == ["done typing"]


async def test_typing_stopped_is_relayed_once_after_a_typing(server: ServerProcess) -> None:
    """TYPING_STOPPED takes back a relayed TYPING: relayed to the others once; one with no
    TYPING before it (or a second one) is dropped; the next TYPING is relayed at once, not
    a second later; outside the room: not_joined, naming the room."""
    room = room_name()
    async with two_in_a_room(server, room) as (alice, bob):
        stop = {"type": "TYPING_STOPPED", "room": room, "user": "alice"}
        await alice.send(stop)  # nothing announced: nothing to take back
        await alice.send({"type": "TYPING", "room": room, "user": "alice"})
        await alice.send(stop)
        await alice.send(stop)  # already taken back
        await alice.send({"type": "TYPING", "room": room, "user": "alice"})  # at once
        await alice.say(room, "alice", "sent")
        seen = []
        while not seen or seen[-1]["type"] != "CHAT_MESSAGE":
            seen.append(await bob.recv())
        assert [e["type"] for e in seen] == ["TYPING", "TYPING_STOPPED", "TYPING", "CHAT_MESSAGE"]
        assert seen[1] == stop
        assert (await alice.recv())["type"] == "CHAT_MESSAGE"  # none of it to herself
        await alice.send({"type": "TYPING_STOPPED", "room": "elsewhere", "user": "alice"})
        error = await alice.expect("ERROR")
        assert (error["code"], error["room"]) == ("not_joined", "elsewhere")


async def test_many_messages_arrive_in_commit_order_on_both_ports(server: ServerProcess) -> None:
    room = room_name()
    clients = [await Client.connect(u) for u in server.ws_urls() * 2]
    try:
        for i, c in enumerate(clients):
            await c.join(room, f"user{i}")
        sender = clients[0]
        for i in range(200):
            await sender.say(room, "user0", f"m{i}")
        for c in clients:
            got = []
            while len(got) < 200:
                event = await c.recv()
                if event["type"] == "CHAT_MESSAGE":
                    got.append(event)
            assert [e["message"] for e in got] == [f"m{i}" for i in range(200)]
            ids = [e["id"] for e in got]
            assert ids == sorted(ids) and len(set(ids)) == 200
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_burst_goes_out_in_few_writes_per_member_and_in_order(
    server: ServerProcess,
) -> None:
    # 100 messages in one TCP write: the server reads them at once, commits them in a batch
    # or a few, and publishes them in the same tick or two, so each member gets them in a
    # write or a few of several frames each (issue 7), in commit order, on both ports.
    room = room_name()
    readers = [await Client.connect(u) for u in server.ws_urls() * 2]
    sender = await asyncio.to_thread(raw_handshake, server.ws_port)
    try:
        for i, c in enumerate(readers):
            await c.join(room, f"reader{i}")
        join = {"type": "JOIN_ROOM", "room": room, "user": "burst"}
        await asyncio.to_thread(sender.sendall, masked_frame(1, json.dumps(join).encode()))
        for c in readers:  # the sender is in the room for everyone before the burst
            while (await c.expect("USER_JOINED"))["user"] != "burst":
                pass
        async with httpx.AsyncClient(base_url=server.http) as http:
            before = (await http.get("/api/v1/stats")).json()
            burst = b"".join(
                masked_frame(
                    1,
                    json.dumps(
                        {"type": "CHAT_MESSAGE", "room": room, "user": "burst", "message": f"b{i}"}
                    ).encode(),
                )
                for i in range(100)
            )
            await asyncio.to_thread(sender.sendall, burst)
            for c in readers:
                got = [(await c.expect("CHAT_MESSAGE"))["message"] for _ in range(100)]
                assert got == [f"b{i}" for i in range(100)]
            after = (await http.get("/api/v1/stats")).json()
        deliveries = after["deliveries"] - before["deliveries"]
        writes = after["socket_writes"] - before["socket_writes"]
        assert deliveries == 100 * (len(readers) + 1)  # the sender gets its own copies too
        assert writes * 10 <= deliveries, (writes, deliveries)
    finally:
        sender.close()
        await asyncio.gather(*(c.close() for c in readers))


async def test_a_room_bigger_than_a_flush_run_hears_every_message_once_in_one_order(
    tmp_path: Path,
) -> None:
    """A big room's flush is written in runs of FLUSH_CHUNK sockets, one per loop tick, and
    what is committed between two runs joins the members not written yet. Two senders
    sending at once into a room of more than one run, after a lone message: every member, on
    either URL, gets every message once, all of them in the same order (the commit order),
    each sender's in the order it sent them."""
    server = start_server(tmp_path / "big.db", env={"RATE_LIMIT": "0"})
    room = room_name()
    urls = [server.ws_fast, server.ws_http] * ((FLUSH_CHUNK + 100) // 2)
    crowd = await asyncio.gather(*(Client.connect(u) for u in urls))
    try:
        await asyncio.gather(*(c.join(room, f"u{i}") for i, c in enumerate(crowd)))
        # One message with nothing after it: the runs after the first are written too.
        await crowd[0].say(room, "u0", "alone")
        lone = await asyncio.gather(
            *(c.expect("CHAT_MESSAGE", skip=("USER_JOINED", "PRESENCE")) for c in crowd)
        )
        assert {e["message"] for e in lone} == {"alone"}
        senders = crowd[-2:]

        async def burst(k: int, c: Client) -> None:
            for i in range(25):
                await c.say(room, f"u{len(crowd) - 2 + k}", f"s{k}-{i}")

        async def hear(c: Client) -> list[tuple[int, str]]:
            got = []
            while len(got) < 50:
                event = await c.recv()
                if event["type"] == "CHAT_MESSAGE":
                    got.append((event["id"], event["message"]))
            return got

        listening = [asyncio.ensure_future(hear(c)) for c in crowd]
        await asyncio.gather(*(burst(k, c) for k, c in enumerate(senders)))
        heard = await asyncio.gather(*listening)
        first = heard[0]
        assert [i for i, _ in first] == sorted({i for i, _ in first})  # 50 ids, ascending
        for k in range(2):
            assert [m for _, m in first if m.startswith(f"s{k}-")] == [
                f"s{k}-{i}" for i in range(25)
            ]
        assert all(h == first for h in heard)  # everyone: the same messages, the same order
    finally:
        await asyncio.gather(*(c.close() for c in crowd))
        server.stop()


async def test_a_join_storm_and_a_mass_disconnect_cost_few_presence_frames(
    tmp_path: Path,
) -> None:
    """Presence is coalesced: a room over PRESENCE_LIST_MAX members hears counts only, at most
    twice a second, so n clients joining cost each member a few frames, not n (n*n/2 in all:
    10,000 clients took 18.7 s to join). Counts stay right through the storm and after."""
    server = start_server(tmp_path / "storm.db", env={"PRESENCE_LIST_MAX": "20"})
    n = 200
    try:
        async with await Client.connect(server.ws_fast) as watcher:
            room = "storm-" + uuid.uuid4().hex[:6]
            await watcher.join(room, "watcher")
            crowd = await asyncio.gather(*(Client.connect(server.ws_fast) for _ in range(n)))
            joined = await asyncio.gather(*(c.join(room, f"u{i}") for i, c in enumerate(crowd)))
            assert max(j["members"] for j in joined) == n + 1
            frames = []
            while not frames or frames[-1]["members"] < n + 1:
                frames.append(await watcher.recv())
            assert {f["type"] for f in frames} <= {"USER_JOINED", "PRESENCE"}
            assert len(frames) < 40, [f["members"] for f in frames]  # not one per join
            # Over the threshold, counts only.
            assert frames[-1] == {"type": "PRESENCE", "room": room, "members": n + 1}
            await asyncio.gather(*(c.close() for c in crowd))
            frames = []
            while not frames or frames[-1]["members"] > 1:
                frames.append(await watcher.recv())
            assert len(frames) < 40
            assert frames[-1]["members"] == 1
            # A newcomer sees the room as it is.
            async with await Client.connect(server.ws_http) as late:
                assert (await late.join(room, "late"))["members"] == 2
    finally:
        server.stop()


@pytest.mark.parametrize("port", PORTS)
async def test_a_member_pages_through_who_is_in_a_big_room(
    server: ServerProcess, port: str
) -> None:
    """A big room's presence carries counts only; MEMBERS lists its names, a page at a time,
    in name order, each name once (a user with two tabs too), for its members only."""
    room = "members-" + uuid.uuid4().hex[:6]
    names = sorted({f"user{i:03d}" for i in range(130)})
    crowd = await asyncio.gather(*(Client.connect(url_of(server, port)) for _ in range(131)))
    try:
        await asyncio.gather(*(c.join(room, n) for c, n in zip(crowd, names, strict=False)))
        await crowd[-1].join(room, names[0])  # a second tab: one name
        asker = crowd[0]
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            ask: dict[str, object] = {"type": "MEMBERS", "room": room, "limit": 50}
            if after is not None:
                ask["after"] = after
            await asker.send({**ask, "request_id": f"p{pages}"})
            page = await asker.expect("MEMBERS", skip=("USER_JOINED", "PRESENCE"))
            assert page["room"] == room and page["members"] == 131
            assert page["request_id"] == f"p{pages}"
            seen += page["users"]
            pages += 1
            after = page.get("next")
            if after is None:
                break
        assert seen == names and pages == 3
        async with await Client.connect(url_of(server, port)) as outsider:
            await outsider.send({"type": "MEMBERS", "room": room})
            refused = await outsider.expect("ERROR")
            assert refused["code"] == "not_joined"
            await outsider.send({"type": "MEMBERS", "room": room, "limit": 0})
            assert (await outsider.expect("ERROR"))["code"] == "invalid_field"
    finally:
        await asyncio.gather(*(c.close() for c in crowd))


async def test_changes_of_one_instant_that_cancel_out_are_not_told(tmp_path: Path) -> None:
    """Presence changes wait for the end of the loop tick: a client that joins as "a" and
    renames itself "b" in the same instant is told to the room once, as "b"."""
    server = start_server(tmp_path / "small.db")
    try:
        async with await Client.connect(server.ws_fast) as watcher:
            room = "small-" + uuid.uuid4().hex[:6]
            await watcher.join(room, "watcher")
            sock = raw_handshake(server.ws_port)
            sock.sendall(  # both joins in one TCP write: one loop tick
                b"".join(
                    masked_frame(
                        1, json.dumps({"type": "JOIN_ROOM", "room": room, "user": u}).encode()
                    )
                    for u in ("a", "b")
                )
            )
            joined = await watcher.recv()
            assert joined == {
                "type": "USER_JOINED",
                "room": room,
                "user": "b",
                "members": 2,
                "sessions": 1,
            }
            sock.close()
            left = await watcher.recv()
            assert left == {
                "type": "USER_LEFT",
                "room": room,
                "user": "b",
                "members": 1,
                "sessions": 0,
            }
    finally:
        server.stop()


@pytest.mark.parametrize("port", PORTS)
async def test_ping_is_answered_with_pong_in_order(server: ServerProcess, port: str) -> None:
    """PING, for a client that cannot see WebSocket pings (a browser): PONG, after what was
    answered before it; joined or not."""
    room = room_name()
    async with await Client.connect(url_of(server, port)) as c:
        await c.send({"type": "PING"})
        assert await c.expect("PONG") == {"type": "PONG"}
        await c.send({"type": "JOIN_ROOM", "room": room, "user": "u"})
        await c.send({"type": "PING"})
        assert (await c.recv())["type"] == "ROOM_JOINED"
        assert await c.recv() == {"type": "PONG"}
