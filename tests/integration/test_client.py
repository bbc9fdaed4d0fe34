"""fastchat.client and the `fastchat send` / `fastchat tail` commands against a real server:
join, send, receive on both URLs; idempotent sends; resume across a server restart (SIGKILL);
a send made while disconnected; history and members paging."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from fastchat.client import Client, FastchatError, connect
from fastchat.events import CommentEvent, MessageEvent, TypingEvent, TypingStoppedEvent
from tests.conftest import TIMEOUT, ServerProcess, start_server


def room_name() -> str:
    return "cli-" + uuid.uuid4().hex[:8]


async def next_message(chat: Client) -> MessageEvent:
    """The next CHAT_MESSAGE the client yields (other events skipped), within TIMEOUT."""

    async def wait() -> MessageEvent:
        async for event in chat:
            if isinstance(event, MessageEvent):
                return event
        raise AssertionError("the client closed")

    return await asyncio.wait_for(wait(), TIMEOUT)


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_join_send_and_receive(server: ServerProcess, port: str) -> None:
    url = server.ws_fast if port == "fast" else server.ws_http
    room = room_name()
    async with connect(url, user="alice") as alice, connect(url) as bob:
        joined = await alice.join(room)
        assert joined.room == room and joined.user == "alice"
        await bob.join(room, user="bob")
        sent = await alice.send(room, "hello")
        assert sent.id > 0 and sent.user == "alice" and sent.timestamp.endswith("Z")
        got = await next_message(bob)
        assert (got.id, got.message, got.user) == (sent.id, "hello", "alice")
        # The sender's own stream has it once too (its echo, the acknowledgement).
        mine = await next_message(alice)
        assert mine.id == sent.id


async def test_the_same_client_id_twice_is_stored_once(server: ServerProcess) -> None:
    room = room_name()
    async with connect(server.ws_fast, user="alice") as chat:
        await chat.join(room)
        first = await chat.send(room, "once", client_id="retry-me")
        again = await chat.send(room, "once", client_id="retry-me")
        assert again.id == first.id
        page = await chat.history(room, limit=10)
        assert [m.message for m in page.messages or []] == ["once"]


async def test_a_refused_send_raises_the_servers_error(server: ServerProcess) -> None:
    room = room_name()
    async with connect(server.ws_fast) as chat:
        await chat.join(room)
        with pytest.raises(FastchatError) as refused:
            await asyncio.wait_for(chat.send(room, "x" * 4001), TIMEOUT)
        assert refused.value.code == "too_large"
        with pytest.raises(FastchatError) as not_joined:
            await asyncio.wait_for(chat.send(room_name(), "hi"), TIMEOUT)
        assert not_joined.value.code == "not_joined"


async def test_a_refused_request_fails_that_request_alone(server: ServerProcess) -> None:
    """Several requests in flight, one refused: the ERROR names it (request_id, room, post),
    so that one raises and the others are answered."""
    room = room_name()
    async with connect(server.ws_fast, user="asker") as chat:
        await chat.join(room)
        await chat.send(room, "one")
        good = asyncio.create_task(chat.history(room))
        bad = asyncio.create_task(chat.history(room, since="not a time"))
        missing = asyncio.create_task(chat.join_post(987654))
        also_good = asyncio.create_task(chat.history(room, limit=1))
        page = await asyncio.wait_for(good, TIMEOUT)
        assert [m.message for m in page.messages or []] == ["one"]
        with pytest.raises(FastchatError) as refused:
            await asyncio.wait_for(bad, TIMEOUT)
        assert refused.value.code == "invalid_time"
        with pytest.raises(FastchatError) as no_post:
            await asyncio.wait_for(missing, TIMEOUT)
        assert no_post.value.code == "post_not_found"
        assert len((await asyncio.wait_for(also_good, TIMEOUT)).messages or []) == 1


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_a_send_made_while_its_join_is_on_its_way_waits_for_it(
    server: ServerProcess, port: str
) -> None:
    """A join with last_id is done once its replay was read; a send to that room made
    meanwhile is held until the join is answered, not sent ahead of it (the server would
    refuse it as not_joined)."""
    room = room_name()
    url = server.ws_fast if port == "fast" else server.ws_http
    async with connect(url, user="early") as chat:
        joining = asyncio.create_task(chat.join(room, last_id=0))
        await asyncio.sleep(0)  # the join is on the wire; its replay is being read
        stored = await asyncio.wait_for(chat.send(room, "right away"), TIMEOUT)
        assert stored.message == "right away" and stored.room == room
        await asyncio.wait_for(joining, TIMEOUT)


async def test_typing_and_its_end_reach_the_others(server: ServerProcess) -> None:
    room = room_name()
    async with (
        connect(server.ws_fast, user="writer") as writer,
        connect(server.ws_http, user="reader") as reader,
    ):
        await writer.join(room)
        await reader.join(room)
        await writer.typing(room)
        await writer.stop_typing(room)

        async def typing_events() -> list[tuple[str, str]]:
            seen: list[tuple[str, str]] = []
            async for event in reader:
                if isinstance(event, TypingEvent | TypingStoppedEvent):
                    seen.append((type(event).__name__, event.user))
                    if len(seen) == 2:
                        return seen
            raise AssertionError("the client closed")

        assert await asyncio.wait_for(typing_events(), TIMEOUT) == [
            ("TypingEvent", "writer"),
            ("TypingStoppedEvent", "writer"),
        ]


async def test_history_pages_back_to_the_first_message(server: ServerProcess) -> None:
    room = room_name()
    async with connect(server.ws_fast, user="pager") as chat:
        await chat.join(room)
        sent = [await chat.send(room, f"m{i}") for i in range(5)]
        seen: list[int] = []
        before: int | None = None
        while True:
            page = await chat.history(room, limit=2, before=before)
            seen[:0] = [m.id for m in page.messages or []]
            if page.next is None:
                break
            before = page.next["before"]
        assert seen == [m.id for m in sent]
        newer = await chat.history(room, after=sent[2].id)
        assert [m.message for m in newer.messages or []] == ["m3", "m4"]


async def test_members_pages_through_every_name(server: ServerProcess) -> None:
    room = room_name()
    names = ["carol", "alice", "dave", "bob", "erin"]
    clients = [connect(server.ws_fast, user=n) for n in names]
    try:
        for chat in clients:
            await chat.open()
            await chat.join(room)
        listed = [name async for name in clients[0].members(room, page_size=2)]
        assert listed == sorted(names)
    finally:
        for chat in clients:
            await chat.close()


async def test_resume_across_a_server_restart(tmp_path: Path) -> None:
    """The reader is connected; the server is SIGKILLed and restarted on the same ports and
    database; another client sends after the restart; the reader gets every message exactly
    once, in order, and its own send made during the outage is stored once."""
    db = tmp_path / "chat.db"
    srv = start_server(db)
    room = room_name()
    try:
        reader = await connect(srv.ws_fast, user="reader", backoff_cap=0.5).open()
        try:
            await reader.join(room)
            async with connect(srv.ws_http, user="writer") as writer:
                await writer.join(room)
                before = [await writer.send(room, f"before {i}") for i in range(3)]
            assert [(await next_message(reader)).id for _ in before] == [m.id for m in before]

            srv.kill()  # SIGKILL: no close frame, no goodbye
            # Made while the server is down: sent again, with its client_id, once back.
            offline = asyncio.create_task(reader.send(room, "sent while down"))
            srv = start_server(db, port=srv.port, ws_port=srv.ws_port)

            async with connect(srv.ws_http, user="writer") as writer:
                await writer.join(room)
                after = [await writer.send(room, f"after {i}") for i in range(5)]
                mine = await asyncio.wait_for(offline, TIMEOUT * 2)
                last = await writer.send(room, "last")
            assert reader.reconnects >= 1

            expected = sorted([*after, mine, last], key=lambda m: m.id)
            got = [await next_message(reader) for _ in expected]
            assert [(m.id, m.message) for m in got] == [(m.id, m.message) for m in expected]
            assert got[-1].message == "last"  # nothing twice before it
            page = await reader.history(room, limit=100)
            texts = [m.message for m in page.messages or []]
            assert texts.count("sent while down") == 1
            assert texts == [m.message for m in [*before, *expected]]
        finally:
            await reader.close()
    finally:
        srv.kill()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastchat", *args]


async def test_fastchat_send_prints_the_stored_id_and_refusals_exit_non_zero(
    server: ServerProcess,
) -> None:
    room = room_name()
    proc = await asyncio.create_subprocess_exec(
        *cli("send", room, "from a script", "--user", "bot", "--url", server.ws_fast),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert proc.returncode == 0, err.decode()
    msg_id, timestamp = out.decode().split()
    async with connect(server.ws_fast) as chat:
        await chat.join(room)
        page = await chat.history(room)
        assert [(m.id, m.user, m.timestamp) for m in page.messages or []] == [
            (int(msg_id), "bot", timestamp)
        ]

    env = {**os.environ, "FASTCHAT_URL": server.ws_http}
    proc = await asyncio.create_subprocess_exec(
        *cli("send", room, "x" * 4001),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT * 2)
    assert proc.returncode == 1 and out == b""
    assert "too_large" in err.decode()


@pytest.mark.parametrize("as_json", [False, True])
async def test_fastchat_tail_prints_each_message_and_exits_0_on_ctrl_c(
    server: ServerProcess, as_json: bool
) -> None:
    room = room_name()
    args = ["tail", room, "--url", server.ws_fast, "--last-id", "0"]
    proc = await asyncio.create_subprocess_exec(
        *cli(*args, *(["--json"] if as_json else [])),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with connect(server.ws_fast, user="alice") as chat:
            await chat.join(room)
            sent = [await chat.send(room, text) for text in ("one", "two")]
        assert proc.stdout is not None
        lines = [
            (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode().rstrip("\n")
            for _ in sent
        ]
        if as_json:
            decoded = [json.loads(line) for line in lines]
            assert [(d["type"], d["id"], d["message"]) for d in decoded] == [
                ("CHAT_MESSAGE", m.id, m.message) for m in sent
            ]
        else:
            assert lines == [f"{m.timestamp[11:19]} alice: {m.message}" for m in sent]
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_comments_on_a_post_live_and_idempotent(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        created = await http.post("/api/v1/posts/", json={"title": "t", "content": "c"})
        assert created.status_code == 201, created.text
        post_id = created.json()["id"]
    # The token is accepted and sent (the server ignores it until identity lands).
    async with (
        connect(server.ws_fast, user="viewer", token="t0k") as viewer,
        connect(server.ws_http, user="author") as author,
    ):
        joined = await viewer.join_post(post_id)
        assert joined.post_id == post_id
        stored = await author.comment(str(post_id), "first!", client_id="c-1")
        assert (stored.post_id, stored.comment) == (post_id, "first!")
        again = await author.comment(post_id, "first!", client_id="c-1")
        assert again.id == stored.id

        async def next_comment() -> CommentEvent:
            async for event in viewer:
                if isinstance(event, CommentEvent):
                    return event
            raise AssertionError("the client closed")

        seen = await asyncio.wait_for(next_comment(), TIMEOUT)
        assert seen.id == stored.id
        left = await viewer.leave_post(post_id)
        assert left.post_id == post_id
        with pytest.raises(FastchatError) as missing:
            await asyncio.wait_for(author.comment(10**9, "nobody reads this"), TIMEOUT)
        assert missing.value.code == "post_not_found"


async def test_edits_made_while_away_reach_the_client_when_it_resumes(tmp_path: Path) -> None:
    """The reader's server is SIGKILLed; meanwhile another server on the same database (other
    ports) edits one message and deletes another; the restarted server replays both to the
    reader when it resumes, and later edits come live."""
    from fastchat.auth import mint
    from fastchat.events import MessageDeleted, MessageEdited

    secret = "client-secret-0123456789-abcdefghijklmnop"
    env = {"AUTH_SECRET": secret}
    db = tmp_path / "chat.db"
    srv = start_server(db, env=env)
    room = room_name()
    author = {"Authorization": f"Bearer {mint(secret, sub='w', name='writer')}"}

    async def changes(chat: Client, n: int) -> list[MessageEdited | MessageDeleted]:
        got: list[MessageEdited | MessageDeleted] = []

        async def wait() -> None:
            async for event in chat:
                if isinstance(event, MessageEdited | MessageDeleted):
                    got.append(event)
                    if len(got) == n:
                        return

        await asyncio.wait_for(wait(), TIMEOUT * 2)
        return got

    try:
        reader = await connect(srv.ws_fast, user="reader", backoff_cap=0.5).open()
        try:
            await reader.join(room)
            sent = [
                httpx.post(
                    f"{srv.http}/api/v1/messages/{room}",
                    json={"user": "writer", "message": text},
                    headers=author,
                    timeout=TIMEOUT,
                ).json()
                for text in ("keep me", "edit me", "delete me")
            ]
            assert [(await next_message(reader)).id for _ in sent] == [m["id"] for m in sent]
            srv.kill()
            other = start_server(db, env=env)
            try:
                base = f"{other.http}/api/v1/messages/{room}"
                r = httpx.patch(
                    f"{base}/{sent[1]['id']}", json={"message": "edited"}, headers=author
                )
                assert r.status_code == 200, r.text
                r = httpx.delete(f"{base}/{sent[2]['id']}", headers=author)
                assert r.status_code == 200, r.text
            finally:
                other.stop()
            srv = start_server(db, port=srv.port, ws_port=srv.ws_port, env=env)
            replayed = await changes(reader, 2)
            assert [(type(e), e.id) for e in replayed] == [
                (MessageEdited, sent[1]["id"]),
                (MessageDeleted, sent[2]["id"]),
            ]
            assert replayed[0].message == "edited" and replayed[1].deleted_at
            r = httpx.patch(
                f"{srv.http}/api/v1/messages/{room}/{sent[0]['id']}",
                json={"message": "kept, edited"},
                headers=author,
            )
            [live] = await changes(reader, 1)
            assert (live.id, live.message) == (sent[0]["id"], "kept, edited")
            assert live.change > replayed[1].change
        finally:
            await reader.close()
    finally:
        srv.kill()
