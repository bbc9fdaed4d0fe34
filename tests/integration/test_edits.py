"""Edits and deletions on a real server, on both stores: live to every member on both URLs,
in history (edited text with `edited_at`, a tombstone without its text), replayed to a client
that resumes (no gap, no duplicate), over REST; and every refusal with its code."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fastchat.auth import mint
from tests.conftest import TIMEOUT, ServerProcess, start_server
from tests.integration.wsclient import Client

SECRET = "edits-secret-0123456789-abcdefghijklmnopqrs"


def token(sub: str, **claims: object) -> str:
    return mint(SECRET, sub=sub, **claims)  # type: ignore[arg-type]


def bearer(sub: str, **claims: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **claims)}"}


# Presence and typing, beside the events a test looks at.
NOISE = ("PRESENCE", "USER_JOINED", "USER_LEFT", "TYPING")


def room_name() -> str:
    return f"edits-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"RATE_LIMIT": "0", "AUTH_SECRET": SECRET}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    srv = start_server(tmp_path_factory.mktemp("edits") / "chat.db", env=env)
    yield srv
    srv.stop()


async def connect(url: str, sub: str | None, **claims: object) -> Client:
    return await Client.connect(url if sub is None else f"{url}?token={token(sub, **claims)}")


async def joined(client: Client, room: str, **extra: Any) -> dict[str, Any]:
    await client.send({"type": "JOIN_ROOM", "room": room, **extra})
    return await client.expect("ROOM_JOINED", skip=("PRESENCE", "USER_JOINED"))


async def said(client: Client, room: str, user: str, text: str) -> dict[str, Any]:
    """Send a message; its stored copy (others' messages before it are passed over)."""
    await client.say(room, user, text)
    while True:
        event = await client.expect("CHAT_MESSAGE", skip=("PRESENCE", "USER_JOINED", "USER_LEFT"))
        if (event["user"], event["message"]) == (user, text):
            return event


async def next_event(client: Client) -> dict[str, Any]:
    while True:
        event = await client.recv()
        if event["type"] not in NOISE:
            return event


@pytest.mark.parametrize("which", ["fast", "http"])
async def test_an_author_edits_and_deletes_and_every_member_sees_it_live(
    server: ServerProcess, which: str
) -> None:
    url = server.ws_fast if which == "fast" else server.ws_http
    other_url = server.ws_http if which == "fast" else server.ws_fast
    room = room_name()
    async with (
        await connect(url, "alice", name="Alice") as alice,
        await connect(other_url, None) as viewer,
    ):
        await joined(alice, room)
        await joined(viewer, room, user="viewer")
        first = await said(alice, room, "Alice", "helo world")
        await viewer.expect("CHAT_MESSAGE", skip=("PRESENCE", "USER_JOINED"))
        await alice.send({"type": "EDIT_MESSAGE", "id": first["id"], "message": "hello world"})
        for client in (alice, viewer):
            edited = await next_event(client)
            assert edited["type"] == "MESSAGE_EDITED", edited
            assert (edited["id"], edited["room"], edited["user"]) == (first["id"], room, "Alice")
            assert edited["message"] == "hello world" and edited["edited_at"]
            assert edited["timestamp"] == first["timestamp"] and edited["change"] > 0
        await alice.send({"type": "DELETE_MESSAGE", "id": first["id"], "room": room})
        for client in (alice, viewer):
            deleted = await next_event(client)
            assert deleted["type"] == "MESSAGE_DELETED", deleted
            assert deleted["id"] == first["id"] and deleted["message"] == ""
            assert deleted["deleted_at"] and deleted["change"] > edited["change"]
        # Gone for good: a second deletion or an edit finds nothing.
        await alice.send({"type": "EDIT_MESSAGE", "id": first["id"], "message": "back?"})
        refusal = await next_event(alice)
        assert refusal["type"] == "ERROR" and refusal["code"] == "not_found"
        assert "deleted" in refusal["message"]
    # History, on REST and the socket: a tombstone without its text.
    page = httpx.get(f"{server.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
    [tombstone] = page["messages"]
    assert tombstone["id"] == first["id"] and tombstone["message"] == ""
    assert tombstone["deleted_at"] and tombstone["edited_at"]


async def test_history_shows_the_edited_text_with_edited_at(server: ServerProcess) -> None:
    room = room_name()
    async with await connect(server.ws_fast, "bob", name="Bob") as bob:
        await joined(bob, room)
        kept = await said(bob, room, "Bob", "first")
        changed = await said(bob, room, "Bob", "secnd")
        await bob.send({"type": "EDIT_MESSAGE", "id": changed["id"], "message": "second"})
        await bob.expect("MESSAGE_EDITED", skip=NOISE)
        await bob.send({"type": "HISTORY", "room": room})
        page = await bob.expect("HISTORY", skip=NOISE)
    by_id = {m["id"]: m for m in page["messages"]}
    assert by_id[kept["id"]] == {k: v for k, v in kept.items() if k != "type"}  # untouched
    assert by_id[changed["id"]]["message"] == "second" and by_id[changed["id"]]["edited_at"]
    rest = httpx.get(f"{server.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
    assert rest["messages"] == page["messages"]


async def test_refusals_each_with_its_code(server: ServerProcess) -> None:
    room = room_name()
    async with (
        await connect(server.ws_fast, "carol", name="Carol") as carol,
        await connect(server.ws_fast, "dave", name="Dave") as dave,
        await connect(server.ws_fast, None) as anonymous,
        await connect(server.ws_fast, "mod", name="Mod", roles=["moderator"]) as moderator,
    ):
        for client in (carol, dave, moderator):
            await joined(client, room)
        await joined(anonymous, room, user="anon")
        mine = await said(carol, room, "Carol", "carol's")
        anon = await said(anonymous, room, "anon", "anonymous words")

        async def refused(client: Client, event: dict[str, Any]) -> dict[str, Any]:
            await client.send(event)
            while True:
                got = await next_event(client)
                if got["type"] == "ERROR":
                    return got
                assert got["type"] == "CHAT_MESSAGE", got  # others' sends, nothing else

        edit = {"type": "EDIT_MESSAGE", "id": mine["id"], "message": "defaced"}
        assert (await refused(anonymous, edit))["code"] == "unauthorized"
        assert (await refused(dave, edit))["code"] == "not_author"
        assert (await refused(dave, {"type": "DELETE_MESSAGE", "id": mine["id"]}))[
            "code"
        ] == "not_author"
        # Nobody's by token: only moderators may remove an anonymous message.
        assert (await refused(carol, {"type": "DELETE_MESSAGE", "id": anon["id"]}))[
            "code"
        ] == "not_author"
        assert (await refused(carol, {**edit, "id": 2**62}))["code"] == "not_found"
        assert (await refused(carol, {**edit, "room": "elsewhere"}))["code"] == "not_found"
        assert (await refused(carol, {**edit, "message": "   "}))["code"] == "invalid_field"
        assert (await refused(carol, {"type": "EDIT_MESSAGE", "id": mine["id"]}))[
            "code"
        ] == "invalid_field"
        # Each refusal names the item it refuses a change of: refused on arrival, in the
        # database, or as an invalid frame (its id read back only when it is one).
        for client, event, code in (
            (anonymous, edit, "unauthorized"),
            (dave, {"type": "DELETE_MESSAGE", "id": mine["id"]}, "not_author"),
            (carol, {**edit, "id": 2**62}, "not_found"),
            (carol, {"type": "EDIT_MESSAGE", "id": mine["id"]}, "invalid_field"),
        ):
            error = await refused(client, event)
            assert (error["code"], error.get("id")) == (code, event["id"])
        error = await refused(carol, {"type": "EDIT_MESSAGE", "id": "7", "message": "x"})
        assert error["code"] == "invalid_field" and "id" not in error
        # A moderator may change anything.
        await moderator.send({"type": "DELETE_MESSAGE", "id": anon["id"]})
        skip = ("CHAT_MESSAGE", "PRESENCE", "USER_JOINED")
        assert (await moderator.expect("MESSAGE_DELETED", skip=skip))["id"] == anon["id"]
    page = httpx.get(f"{server.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
    texts = {m["id"]: m["message"] for m in page["messages"]}
    assert texts == {mine["id"]: "carol's", anon["id"]: ""}  # the refusals changed nothing


async def test_rest_edits_and_deletes_messages_and_comments(server: ServerProcess) -> None:
    room = room_name()
    async with (
        httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http,
        await connect(server.ws_fast, None) as viewer,
    ):
        sent = await http.post(
            f"/api/v1/messages/{room}",
            json={"user": "Erin", "message": "typo"},
            headers=bearer("erin", name="Erin"),
        )
        assert sent.status_code == 201, sent.text
        msg = sent.json()
        await joined(viewer, room, user="viewer")
        path = f"/api/v1/messages/{room}/{msg['id']}"
        r = await http.patch(path, json={"message": "fixed"}, headers=bearer("frank"))
        assert (r.status_code, r.json()["code"]) == (403, "not_author")
        r = await http.patch(path, json={"message": "fixed"})
        assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
        r = await http.patch(path, json={"message": ""}, headers=bearer("erin"))
        assert (r.status_code, r.json()["code"]) == (400, "invalid_field")
        r = await http.patch(path, json={"message": "fixed"}, headers=bearer("erin", name="Erin"))
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "fixed" and r.json()["edited_at"]
        assert (await next_event(viewer))["type"] == "MESSAGE_EDITED"
        r = await http.delete(path, headers=bearer("erin"))
        assert r.status_code == 200 and r.json()["message"] == "" and r.json()["deleted_at"]
        assert (await next_event(viewer))["type"] == "MESSAGE_DELETED"
        r = await http.delete(path, headers=bearer("erin"))
        assert (r.status_code, r.json()["code"]) == (404, "not_found")
        r = await http.delete(f"/api/v1/messages/other-room/{msg['id']}", headers=bearer("mod"))
        assert (r.status_code, r.json()["code"]) == (404, "not_found")

        # Comments: the same, and their post's viewers see it live.
        post = (await http.post("/api/v1/posts", json={"title": "T", "content": "C"})).json()
        c = await http.post(
            f"/api/v1/posts/{post['id']}/comments",
            json={"user": "Erin", "comment": "frist"},
            headers=bearer("erin", name="Erin"),
        )
        comment = c.json()
        await viewer.send({"type": "JOIN_POST", "post_id": post["id"]})
        await viewer.expect("POST_JOINED", skip=NOISE)
        cpath = f"/api/v1/posts/{post['id']}/comments/{comment['id']}"
        r = await http.patch(cpath, json={"comment": "first"}, headers=bearer("erin"))
        assert r.status_code == 200 and r.json()["comment"] == "first"
        edited = await next_event(viewer)
        assert edited["type"] == "COMMENT_EDITED" and edited["comment"] == "first"
        r = await http.delete(cpath, headers=bearer("someone"))
        assert (r.status_code, r.json()["code"]) == (403, "not_author")
        r = await http.delete(cpath, headers=bearer("mod", roles=["moderator"]))
        assert r.status_code == 200 and r.json()["deleted_at"]
        assert (await next_event(viewer))["type"] == "COMMENT_DELETED"
        page = (await http.get(f"/api/v1/posts/{post['id']}/comments")).json()
        assert [(x["id"], x["comment"]) for x in page["comments"]] == [(comment["id"], "")]
        # Over the socket too.
        async with await connect(server.ws_http, "erin", name="Erin") as erin:
            c2 = await http.post(
                f"/api/v1/posts/{post['id']}/comments",
                json={"user": "Erin", "comment": "again"},
                headers=bearer("erin", name="Erin"),
            )
            await next_event(viewer)  # its POST_COMMENT
            await erin.send({"type": "DELETE_COMMENT", "id": c2.json()["id"]})
            # Its answer, though it is not a viewer.
            gone = await erin.expect("COMMENT_DELETED", skip=NOISE)
            assert gone["post_id"] == post["id"] and gone["comment"] == ""
            assert (await next_event(viewer))["type"] == "COMMENT_DELETED"


async def test_a_resuming_client_gets_the_edits_and_deletions_it_missed(
    server: ServerProcess,
) -> None:
    room = room_name()
    async with await connect(server.ws_fast, "gina", name="Gina") as gina:
        await joined(gina, room)
        a = await said(gina, room, "Gina", "a")
        b = await said(gina, room, "Gina", "b")
        async with await connect(server.ws_http, None) as reader:
            seen = await joined(reader, room, user="reader")
            last_change = seen.get("last_change", 0)  # omitted while it is 0
        # While the reader is away: an edit, a deletion, a new message, an edit of it.
        await gina.send({"type": "EDIT_MESSAGE", "id": a["id"], "message": "a2"})
        await gina.expect("MESSAGE_EDITED", skip=NOISE)
        await gina.send({"type": "DELETE_MESSAGE", "id": b["id"]})
        await gina.expect("MESSAGE_DELETED", skip=NOISE)
        c = await said(gina, room, "Gina", "c")
        await gina.send({"type": "EDIT_MESSAGE", "id": a["id"], "message": "a3"})
        newest = await gina.expect("MESSAGE_EDITED", skip=NOISE)

        for url in (server.ws_fast, server.ws_http):
            async with await connect(url, None) as reader:
                await reader.send(
                    {
                        "type": "JOIN_ROOM",
                        "room": room,
                        "user": "reader",
                        "last_id": b["id"],
                        "last_change": last_change,
                    }
                )
                got = []
                while (event := await next_event(reader))["type"] != "ROOM_JOINED":
                    got.append(event)
                # The new message, then each changed item once, in its current state.
                assert [(e["type"], e["id"]) for e in got] == [
                    ("CHAT_MESSAGE", c["id"]),
                    ("MESSAGE_DELETED", b["id"]),
                    ("MESSAGE_EDITED", a["id"]),
                ]
                assert got[2]["message"] == "a3" and got[1]["message"] == ""
                assert event["replayed"] == 3 and event["last_change"] == newest["change"]
                if url == server.ws_http:
                    # Joined: later changes come live.
                    await gina.send({"type": "EDIT_MESSAGE", "id": c["id"], "message": "c2"})
                    live = await next_event(reader)
                    assert (live["type"], live["message"]) == ("MESSAGE_EDITED", "c2")
                    await gina.expect("MESSAGE_EDITED", skip=NOISE)
        newest = live
        # Resumed again from what it saw last: nothing twice.
        async with await connect(server.ws_fast, None) as reader:
            await reader.send(
                {
                    "type": "JOIN_ROOM",
                    "room": room,
                    "user": "reader",
                    "last_id": c["id"],
                    "last_change": newest["change"],
                }
            )
            event = await next_event(reader)
            assert event["type"] == "ROOM_JOINED" and event.get("replayed", 0) == 0
            # Without last_change: the changes since the last message it saw was sent.
            await reader.send({"type": "LEAVE_ROOM", "room": room})
            await reader.expect("ROOM_LEFT", skip=NOISE)
            await reader.send(
                {"type": "JOIN_ROOM", "room": room, "user": "reader", "last_id": b["id"]}
            )
            got = []
            while (event := await next_event(reader))["type"] != "ROOM_JOINED":
                got.append((event["type"], event["id"]))
            assert got == [
                ("CHAT_MESSAGE", c["id"]),
                ("MESSAGE_DELETED", b["id"]),
                ("MESSAGE_EDITED", a["id"]),
                ("MESSAGE_EDITED", c["id"]),
            ]


async def test_a_resume_served_from_memory_shows_items_as_they_are_now(
    server: ServerProcess,
) -> None:
    """A room's newest events are kept for resumes once one read them (a reconnect storm
    reads the database once): an edit or deletion drops them, so what a later resume is
    replayed, from memory or not, is each item as it is stored now."""
    room = room_name()

    async def resume(last_id: int, last_change: int) -> list[dict[str, Any]]:
        async with await connect(server.ws_fast, None) as reader:
            await reader.send(
                {
                    "type": "JOIN_ROOM",
                    "room": room,
                    "user": "reader",
                    "last_id": last_id,
                    "last_change": last_change,
                }
            )
            got = []
            while (event := await next_event(reader))["type"] != "ROOM_JOINED":
                got.append(event)
            return got

    async def from_memory(http: httpx.AsyncClient, last_id: int, change: int) -> list[Any]:
        """A resume replayed from memory: the room's newest events are read in a task of
        their own after a resume read the database, so until they are, resume again (each
        resume waits for its ROOM_JOINED: no sleep between)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            before = (await http.get("/api/v1/stats")).json()["resumes"]["memory"]
            got = await resume(last_id, change)
            if (await http.get("/api/v1/stats")).json()["resumes"]["memory"] > before:
                return got
            assert time.monotonic() < deadline, "the room's newest events were never kept"

    async def both_ways(http: httpx.AsyncClient, last_id: int, change: int) -> list[list[Any]]:
        """The same resume read from the database (the first after a change), then replayed
        from memory."""
        return [await resume(last_id, change), await from_memory(http, last_id, change)]

    async with (
        await connect(server.ws_fast, "hana", name="Hana") as hana,
        httpx.AsyncClient(base_url=server.http) as http,
    ):
        change = (await joined(hana, room)).get("last_change", 0)
        first = await said(hana, room, "Hana", "one")
        await said(hana, room, "Hana", "two")
        three = await said(hana, room, "Hana", "three")
        assert [e["message"] for e in await resume(first["id"], change)] == ["two", "three"]
        got = await from_memory(http, first["id"], change)
        assert [e["message"] for e in got] == ["two", "three"]
        # An edit: what was kept showed "three" as it was.
        await hana.send({"type": "EDIT_MESSAGE", "id": three["id"], "message": "three!"})
        change = (await hana.expect("MESSAGE_EDITED", skip=NOISE))["change"]
        # Read anew, then kept again.
        for got in await both_ways(http, first["id"], change):
            assert [(e["type"], e["message"]) for e in got] == [
                ("CHAT_MESSAGE", "two"),
                ("CHAT_MESSAGE", "three!"),
            ]
            assert got[1]["edited_at"]
        # A deletion: its tombstone, never its text.
        await hana.send({"type": "DELETE_MESSAGE", "id": three["id"]})
        change = (await hana.expect("MESSAGE_DELETED", skip=NOISE))["change"]
        for got in await both_ways(http, first["id"], change):
            assert [(e["type"], e["message"]) for e in got] == [
                ("CHAT_MESSAGE", "two"),
                ("CHAT_MESSAGE", ""),
            ]
            assert got[1]["deleted_at"] and "edited_at" not in got[0]


async def test_a_post_viewer_resumes_with_the_comment_changes(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http:
        post = (await http.post("/api/v1/posts", json={"title": "R", "content": "C"})).json()
        comments = [
            (
                await http.post(
                    f"/api/v1/posts/{post['id']}/comments",
                    json={"user": "Hal", "comment": f"c{i}"},
                    headers=bearer("hal", name="Hal"),
                )
            ).json()
            for i in range(2)
        ]
        async with await connect(server.ws_fast, None) as viewer:
            await viewer.send({"type": "JOIN_POST", "post_id": post["id"]})
            mark = (await viewer.expect("POST_JOINED", skip=NOISE))["last_change"]
        await http.delete(
            f"/api/v1/posts/{post['id']}/comments/{comments[0]['id']}", headers=bearer("hal")
        )
        async with await connect(server.ws_http, None) as viewer:
            await viewer.send(
                {
                    "type": "JOIN_POST",
                    "post_id": str(post["id"]),
                    "last_id": comments[1]["id"],
                    "last_change": mark,
                }
            )
            deleted = await viewer.expect("COMMENT_DELETED", skip=NOISE)
            assert deleted["id"] == comments[0]["id"]
            assert (await viewer.expect("POST_JOINED", skip=NOISE))["replayed"] == 1


async def test_past_the_edit_window_only_moderators_may(tmp_path: Path) -> None:
    env = {"RATE_LIMIT": "0", "AUTH_SECRET": SECRET, "EDIT_WINDOW_SECONDS": "1"}
    server = start_server(tmp_path / "chat.db", env=env)
    room = room_name()
    try:
        async with (
            await connect(server.ws_fast, "ivy", name="Ivy") as ivy,
            await connect(server.ws_fast, "mod", roles=["moderator"]) as moderator,
        ):
            await joined(ivy, room)
            await joined(moderator, room)
            old = await said(ivy, room, "Ivy", "said in haste")
            await moderator.expect("CHAT_MESSAGE", skip=("PRESENCE", "USER_JOINED"))
            # The window (1 s) closes one second after the message's own timestamp: wait
            # for that instant, not a guess at it.
            sent_at = datetime.fromisoformat(old["timestamp"].replace("Z", "+00:00"))
            await asyncio.sleep(max(0.0, sent_at.timestamp() + 1.01 - time.time()))
            await ivy.send({"type": "EDIT_MESSAGE", "id": old["id"], "message": "repent"})
            refusal = await ivy.expect("ERROR", skip=NOISE)
            assert refusal["code"] == "edit_window_closed" and "1 s" in refusal["message"]
            await ivy.send({"type": "DELETE_MESSAGE", "id": old["id"]})
            assert (await ivy.expect("ERROR", skip=NOISE))["code"] == "edit_window_closed"
            await moderator.send({"type": "EDIT_MESSAGE", "id": old["id"], "message": "[removed]"})
            assert (await moderator.expect("MESSAGE_EDITED", skip=NOISE))["message"] == "[removed]"
        # Edits are stored: after a restart, history has them.
        server.stop()
        server = start_server(tmp_path / "chat.db", env=env)
        page = httpx.get(f"{server.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
        assert page["messages"][0]["message"] == "[removed]"
    finally:
        server.stop()


async def test_a_user_muted_in_a_room_cannot_change_its_messages_there(
    server: ServerProcess,
) -> None:
    room = room_name()
    async with (
        httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http,
        await connect(server.ws_fast, "jo", name="Jo") as jo,
    ):
        await joined(jo, room)
        mine = await said(jo, room, "Jo", "before the mute")
        r = await http.post(
            "/api/v1/admin/bans",
            json={"sub": "jo", "room": room, "kind": "mute", "seconds": 60},
            headers=bearer("mod", roles=["moderator"]),
        )
        assert r.status_code == 201, r.text
        # By id alone (no room named): the store knows the room, and refuses.
        await jo.send({"type": "DELETE_MESSAGE", "id": mine["id"]})
        refusal = await jo.expect("ERROR", skip=NOISE)
        assert refusal["code"] == "muted" and room in refusal["message"]
        r = await http.patch(
            f"/api/v1/messages/{room}/{mine['id']}", json={"message": "x"}, headers=bearer("jo")
        )
        assert (r.status_code, r.json()["code"]) == (403, "muted")
        r = await http.delete(
            "/api/v1/admin/bans/jo",
            params={"room": room, "kind": "mute"},
            headers=bearer("mod", roles=["moderator"]),
        )
        assert r.status_code == 200
        await jo.send({"type": "DELETE_MESSAGE", "id": mine["id"]})
        assert (await jo.expect("MESSAGE_DELETED", skip=NOISE))["id"] == mine["id"]
