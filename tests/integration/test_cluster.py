"""Past one process: nodes and workers sharing the database, relayed through a real Redis.

Each test module run starts its own `redis-server` (Debian's package, installed by .ci/run)
on an ephemeral port, in a temp dir, with persistence off.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TIMEOUT, free_port, start_server
from tests.integration.wsclient import Client
from tests.redisserver import RedisServer


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    redis = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    redis.start()
    yield redis.url
    redis.stop(TIMEOUT)


PRESENCE = ("USER_JOINED", "USER_LEFT", "PRESENCE")


async def collect(client: Client, n: int) -> list[dict]:
    got = []
    while len(got) < n:
        event = await client.recv()
        if event["type"] == "CHAT_MESSAGE":
            got.append(event)
    return got


@pytest.fixture(params=["sqlite", "postgres"])
def shared_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """What the nodes share: one SQLite file (one machine) or one PostgreSQL database."""
    if request.param == "postgres":
        return {"DATABASE_URL": request.getfixturevalue("postgres").new_database()}
    return {}


async def test_two_nodes_one_room_same_order_each_once(
    tmp_path: Path, redis_url: str, shared_store: dict[str, str]
) -> None:
    db = tmp_path / "shared.db"
    env = {"BROKER_URL": redis_url, "RATE_LIMIT": "0", **shared_store}
    a, b = start_server(db, env=env), start_server(db, env=env)
    try:
        clients = [
            await Client.connect(url) for url in (a.ws_fast, a.ws_http, b.ws_fast, b.ws_http)
        ]
        for i, c in enumerate(clients):
            await c.join("cluster", f"u{i}")
        for i in range(150):
            await clients[0].say("cluster", "u0", f"a{i}")
            await clients[2].say("cluster", "u2", f"b{i}")
        seen = [[e["id"] for e in await collect(c, 300)] for c in clients]
        assert all(s == seen[0] for s in seen)  # the same order for every member, every node
        assert seen[0] == sorted(seen[0]) and len(set(seen[0])) == 300
        # REST on either node stores and reaches the other's members.
        r = httpx.get(
            f"{b.http}/api/v1/test/message", params={"room": "cluster", "message": "rest"}
        )
        assert r.status_code == 200
        # Another node's joins reach a member by the broker, in no fixed order with the
        # messages (which come through the database): a late USER_JOINED may come first.
        for c in clients:
            assert (await c.expect("CHAT_MESSAGE", skip=PRESENCE))["message"] == "rest"
        # Presence and typing are relayed too.
        await clients[0].send({"type": "TYPING", "room": "cluster", "user": "u0"})
        assert (await clients[3].expect("TYPING", skip=PRESENCE))["user"] == "u0"
        for c in clients:
            await c.close()
    finally:
        a.stop()
        b.stop()


async def test_idempotent_sends_across_nodes(
    tmp_path: Path, redis_url: str, shared_store: dict[str, str]
) -> None:
    db = tmp_path / "idem.db"
    env = {"BROKER_URL": redis_url, **shared_store}
    a, b = start_server(db, env=env), start_server(db, env=env)
    try:
        first = httpx.post(
            f"{a.http}/api/v1/messages/idem", json={"user": "u", "message": "m", "client_id": "k1"}
        )
        again = httpx.post(
            f"{b.http}/api/v1/messages/idem", json={"user": "u", "message": "m", "client_id": "k1"}
        )
        assert first.json()["id"] == again.json()["id"]
        assert len(httpx.get(f"{b.http}/api/v1/messages/idem").json()["messages"]) == 1
    finally:
        a.stop()
        b.stop()


async def test_a_killed_node_s_clients_resume_on_the_other(
    tmp_path: Path, redis_url: str, shared_store: dict[str, str]
) -> None:
    db = tmp_path / "kill.db"
    env = {"BROKER_URL": redis_url, "RATE_LIMIT": "0", **shared_store}
    a, b = start_server(db, env=env), start_server(db, env=env)
    try:
        on_a = await Client.connect(a.ws_fast)
        sender = await Client.connect(b.ws_fast)
        await on_a.join("failover", "a")
        await sender.join("failover", "s")
        for i in range(50):
            await sender.say("failover", "s", f"m{i}")
        got = await collect(on_a, 50)
        await collect(sender, 50)
        a.kill()  # SIGKILL: no goodbye
        for i in range(50, 120):
            await sender.say("failover", "s", f"m{i}")
        await collect(sender, 70)
        resumed = await Client.connect(b.ws_fast)
        await resumed.send(
            {"type": "JOIN_ROOM", "room": "failover", "user": "a", "last_id": got[-1]["id"]}
        )
        replay = await collect(resumed, 70)
        assert [e["message"] for e in replay] == [f"m{i}" for i in range(50, 120)]
        # The dead node's users leave by the broker, whenever its heartbeat is missed.
        assert (await resumed.expect("ROOM_JOINED", skip=PRESENCE))["replayed"] == 70
        await sender.say("failover", "s", "live")
        assert (await resumed.expect("CHAT_MESSAGE", skip=PRESENCE))["message"] == "live"
        await resumed.close()
        await sender.close()
    finally:
        a.kill()
        b.stop()


async def test_workers_share_the_ports_and_the_rooms(tmp_path: Path, redis_url: str) -> None:
    server = start_server(
        tmp_path / "w.db", env={"BROKER_URL": redis_url, "WORKERS": "2", "RATE_LIMIT": "0"}
    )
    try:
        nodes = set()
        deadline = time.monotonic() + TIMEOUT
        while len(nodes) < 2 and time.monotonic() < deadline:
            with httpx.Client() as http:  # a new connection each time: the kernel spreads them
                nodes.add(http.get(f"{server.http}/api/v1/stats").json()["node"])
        assert len(nodes) == 2, nodes  # both workers answer on the one port
        clients = [await Client.connect(server.ws_fast) for _ in range(8)]
        for i, c in enumerate(clients):
            await c.join("workers", f"w{i}")
        for i, c in enumerate(clients):
            await c.say("workers", f"w{i}", f"from {i}")
        seen = [[e["id"] for e in await collect(c, 8)] for c in clients]
        assert all(s == seen[0] for s in seen) and len(set(seen[0])) == 8
        for c in clients:
            await c.close()
    finally:
        assert server.stop() == 0


def test_more_than_one_worker_needs_a_broker(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "serve", "--workers", "2"],
        env={**os.environ, "DB_PATH": str(tmp_path / "x.db")},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 2 and "BROKER_URL" in out.stderr


async def test_presence_counts_across_nodes_and_a_dead_node_s_users_leave(
    tmp_path: Path, redis_url: str
) -> None:
    db = tmp_path / "presence.db"
    env = {"BROKER_URL": redis_url, "HEARTBEAT_SECONDS": "0.3"}
    a, b = start_server(db, env=env), start_server(db, env=env)
    try:
        alice = await Client.connect(a.ws_fast)
        assert (await alice.join("pres", "alice"))["members"] == 1
        # Node B hears of alice through Redis, a moment after she joined on A.
        deadline = time.monotonic() + TIMEOUT
        while httpx.get(f"{b.http}/api/v1/stats").json()["cluster"]["connections"] < 1:
            assert time.monotonic() < deadline, "node B never heard of alice"
            await asyncio.sleep(0.01)
        bob = await Client.connect(b.ws_http)
        joined = await bob.join("pres", "bob")
        assert joined["members"] == 2 and set(joined["users"]) == {"alice", "bob"}
        seen = await alice.expect("USER_JOINED")
        assert seen["user"] == "bob" and seen["members"] == 2 and seen["sessions"] == 1
        carol = await Client.connect(b.ws_fast)
        await carol.join("pres", "carol")
        assert (await alice.expect("USER_JOINED"))["members"] == 3
        # Node A counts both nodes and all three connections: B's presence message that
        # announced carol (and so arrived before alice heard of her) carried B's total.
        cluster = httpx.get(f"{a.http}/api/v1/stats").json()["cluster"]
        assert cluster == {"nodes": 2, "connections": 3}
        metrics = httpx.get(f"{a.http}/metrics").text
        assert "fastchat_cluster_nodes 2.0" in metrics
        b.kill()  # node B dies with bob and carol: after three silent heartbeats they leave
        # Both leave in the same instant: one PRESENCE event with both changes.
        event = await alice.expect("PRESENCE")
        assert event["members"] == 1
        assert sorted(event["changes"], key=lambda c: c["user"]) == [
            {"user": "bob", "sessions": 0},
            {"user": "carol", "sessions": 0},
        ]
        await alice.close()
    finally:
        a.stop()
        b.kill()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with httpx.Client() as http:  # a new connection each time: the kernel spreads them
        r = http.get(f"{url}/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


async def test_metrics_with_workers_are_totals_whichever_worker_answers(
    tmp_path: Path, redis_url: str
) -> None:
    """Issue 13: each scrape lands on any worker; it used to answer with its own counters,
    so they jumped between scrapes. Now every scrape has the totals, a per-worker breakdown
    and per-worker process metrics."""
    server = start_server(
        tmp_path / "m.db", env={"BROKER_URL": redis_url, "WORKERS": "2", "RATE_LIMIT": "0"}
    )
    try:
        clients = [await Client.connect(server.ws_fast) for _ in range(6)]
        for i, c in enumerate(clients):
            await c.join("metrics", f"m{i}")
        for i, c in enumerate(clients):
            await c.say("metrics", f"m{i}", "hello")
        for c in clients:
            await collect(c, 6)
        fast, messages = (
            ("fastchat_connections_opened_total", (("port", "fast"),)),
            (
                "fastchat_received_total",
                (("kind", "message"),),
            ),
        )

        def workers_in(got: dict) -> set[str]:  # type: ignore[type-arg]
            return {
                dict(labels)["worker"]
                for (name, labels), value in got.items()
                if name == "process_resident_memory_bytes" and value > 0
            }

        # The other worker's snapshot is at most a second old (on a loaded machine, its
        # first one may come later still, even after the totals add up: the kernel may have
        # given every connection to one worker): wait for both once.
        deadline = time.monotonic() + TIMEOUT
        while (
            (got := scrape(server.http)).get(fast) != 6
            or got.get(messages) != 6
            or workers_in(got) != {"1", "2"}
        ):
            assert time.monotonic() < deadline, {
                k: v for k, v in got.items() if k in (fast, messages)
            }
            time.sleep(0.05)
        workers_seen = set()
        for _ in range(20):  # both workers answer some of these
            got = scrape(server.http)
            assert got[fast] == 6 and got[messages] == 6
            assert got[("fastchat_connections", (("port", "fast"),))] == 6
            breakdown = {
                dict(labels)["worker"]: value
                for (name, labels), value in got.items()
                if name == "fastchat_worker_connections_opened_total" and ("port", "fast") in labels
            }
            assert set(breakdown) == {"1", "2"} and sum(breakdown.values()) == 6
            rss = {
                dict(labels)["worker"]
                for (name, labels), value in got.items()
                if name == "process_resident_memory_bytes" and value > 0
            }
            assert rss == {"1", "2"}
            workers_seen |= {
                dict(labels)["node"] for (name, labels) in got if name == "fastchat_info"
            }
        assert len(workers_seen) == 2
        for c in clients:
            await c.close()
    finally:
        assert server.stop() == 0


async def test_a_ban_on_one_node_takes_the_user_out_on_the_other(
    tmp_path: Path, redis_url: str
) -> None:
    """Bans are stored in the shared database and told to every node (broker): the banned
    user's socket on node B leaves the room at once when a moderator bans it on node A, and
    a lifted ban is lifted on B too."""
    from fastchat.auth import mint

    secret = "cluster-secret-0123456789-abcdefghijklmnop"
    env = {"BROKER_URL": redis_url, "AUTH_SECRET": secret}
    db = tmp_path / "shared.db"
    a, b = start_server(db, env=env), start_server(db, env=env)
    moderator = {"Authorization": f"Bearer {mint(secret, sub='mod', roles=['moderator'])}"}
    try:
        async with await Client.connect(f"{b.ws_fast}?token={mint(secret, sub='t')}") as troll:
            await troll.send({"type": "JOIN_ROOM", "room": "cluster-bans"})
            await troll.expect("ROOM_JOINED")
            r = httpx.post(
                f"{a.http}/api/v1/admin/bans",
                json={"sub": "t", "room": "cluster-bans"},
                headers=moderator,
                timeout=TIMEOUT,
            )
            assert r.status_code == 201, r.text
            assert (await troll.expect("ERROR"))["code"] == "banned"
            assert (await troll.expect("ROOM_LEFT"))["room"] == "cluster-bans"
            r = httpx.delete(
                f"{a.http}/api/v1/admin/bans/t",
                params={"room": "cluster-bans"},
                headers=moderator,
                timeout=TIMEOUT,
            )
            assert r.status_code == 200
            # The lift reaches B through the broker (nothing tells the user: wait until B
            # lists no ban), then its joins are taken again.
            deadline = time.monotonic() + TIMEOUT
            while httpx.get(f"{b.http}/api/v1/admin/bans", headers=moderator).json()["bans"]:
                assert time.monotonic() < deadline, "the lift never reached node B"
                await asyncio.sleep(0.01)
            await troll.send({"type": "JOIN_ROOM", "room": "cluster-bans"})
            assert (await troll.expect("ROOM_JOINED"))["room"] == "cluster-bans"
    finally:
        a.stop()
        b.stop()


async def test_an_edit_on_one_node_reaches_the_other_live_and_in_its_history(
    tmp_path: Path, redis_url: str
) -> None:
    """An edit committed on node A is relayed to B's members at once, and B's cached
    newest page (REST) shows the new text: the relay counts as a change of the room there."""
    from fastchat.auth import mint

    secret = "cluster-secret-0123456789-abcdefghijklmnop"
    env = {"BROKER_URL": redis_url, "AUTH_SECRET": secret, "RATE_LIMIT": "0"}
    db = tmp_path / "shared.db"
    a, b = start_server(db, env=env), start_server(db, env=env)
    room = "cluster-edits"
    try:
        author = mint(secret, sub="w", name="Writer")
        async with (
            await Client.connect(f"{a.ws_fast}?token={author}") as writer,
            await Client.connect(b.ws_http) as reader,
        ):
            await writer.send({"type": "JOIN_ROOM", "room": room})
            await writer.expect("ROOM_JOINED")
            await reader.join(room, "reader")
            await writer.say(room, "Writer", "befor")
            presence = ("USER_JOINED", "USER_LEFT", "PRESENCE")  # across nodes: any time
            sent = await writer.expect("CHAT_MESSAGE", skip=presence)
            await reader.expect("CHAT_MESSAGE", skip=presence)
            page = httpx.get(f"{b.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
            assert [m["message"] for m in page["messages"]] == ["befor"]  # now cached on B
            await writer.send({"type": "EDIT_MESSAGE", "id": sent["id"], "message": "before"})
            edited = await reader.expect("MESSAGE_EDITED", skip=presence)
            assert (edited["id"], edited["message"]) == (sent["id"], "before")
            page = httpx.get(f"{b.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
            assert [m["message"] for m in page["messages"]] == ["before"]
    finally:
        a.stop()
        b.stop()
