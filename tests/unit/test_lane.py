"""fastchat._lane: a chat message's way in and out, in C, held to the Python rules it
shortcuts.

`plain_message` must accept exactly what protocol._plain_message accepts; the lane's
`receive` must answer every frame as the service's Python does (a refusal is the same
ERROR, with nothing stored); the publisher must hand every committed message to its room
once, in order, and the sender its own copy when it left the room in between. The service
runs on the real loop with the real hub and a real SQLite store in `tmp_path`; members are
hub sinks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fastchat._hub import Hub, Member
from fastchat._lane import plain_message
from fastchat.events import NAME_MAX, SendMessage
from fastchat.protocol import _plain_message
from fastchat.service import Chat
from fastchat.sqlitestore import SqliteStore
from tests.unit.limits import limits_with
from tests.unit.test_service import Sink

LIMITS = limits_with(rate=0, max_message_chars=40)

NAMES = [
    "general",
    "a",
    "x" * NAME_MAX,
    "x" * (NAME_MAX + 1),
    "",
    " ",
    "   ",
    " room ",
    "with space",
    "a/b",
    "/",
    "tab\there",
    "\t",
    "nul\x00",
    "del\x7f",
    "bell\x07",
    "~!@#$%^&*()_+{}|:<>?",
    "café",
    "日本語",
    "😀",
    "zero\u200bwidth",
    "\u00a0",
    "\u2028",
    "\u3000",
    "é" * NAME_MAX,
    "é" * (NAME_MAX + 1),
    "a\u0301",
    "line\nbreak",
]
TEXTS = [
    "hello",
    "x" * 40,
    "x" * 41,
    "",
    " ",
    "\t\n\r\x0b\x0c",
    "\x1c\x1d\x1e\x1f",
    " \x1f ",
    "a\x00b",
    "\x00",
    "tab\tinside",
    "ctrl\x01char",
    "del\x7f",
    "café ☕",
    "\u00a0\u2028\u3000",
    "\u00a0x",
    "😀" * 40,
    "😀" * 41,
    "\u0085",
    "日本\x00",
]
CLIENT_IDS = [None, "", "abc-123", "a b", "tab\t", "é", "\x7f", "\u200b"]


def test_plain_message_accepts_exactly_what_the_python_rules_accept() -> None:
    seen = {True: 0, False: 0}
    for room, user, text, client_id in itertools.chain(
        ((r, "bob", "hi", None) for r in NAMES),
        (("general", u, "hi", None) for u in NAMES),
        (("general", "bob", t, None) for t in TEXTS),
        (("general", "bob", "hi", c) for c in CLIENT_IDS),
        itertools.product(NAMES[::4], NAMES[1::5], TEXTS[::3], CLIENT_IDS[::3]),
    ):
        msg = SendMessage(room=room, user=user, message=text, client_id=client_id)
        expected = _plain_message(msg, LIMITS)
        got = plain_message(msg, NAME_MAX, LIMITS.max_message_chars)
        assert got == expected, (room, user, text, client_id)
        seen[expected] += 1
    assert seen[True] > 20 and seen[False] > 50  # both sides of every rule were tried


@pytest.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Chat]:
    loop = asyncio.get_running_loop()
    store = SqliteStore(tmp_path / "chat.db", seed=False)
    chat = Chat(Hub(loop), store, LIMITS)
    await store.open(chat.on_committed)
    await chat.on_store_open()
    yield chat
    await store.close()


def joined(chat: Chat, room: str, user: str) -> tuple[Member, Sink]:
    sink = Sink()
    member = chat.connections.sink(sink)
    send(chat, member, {"type": "JOIN_ROOM", "room": room, "user": user})
    return member, sink


def send(chat: Chat, member: Member, event: dict[str, Any]) -> None:
    chat.receive(member, msgspec.json.encode(event).decode())


async def until(sink: Sink, kind: str) -> dict[str, Any]:
    while True:
        event = await sink.next()
        if event["type"] == kind:
            return event


def chat_message(room: str = "general", **fields: Any) -> dict[str, Any]:
    return {"type": "CHAT_MESSAGE", "room": room, "user": "alice", "message": "hi", **fields}


REFUSED = [
    pytest.param(chat_message(room="a/b"), "invalid_field", id="slash-in-room"),
    pytest.param(chat_message(user=" "), "invalid_field", id="blank-user"),
    pytest.param(chat_message(user="tab\t"), "invalid_field", id="control-in-user"),
    pytest.param(chat_message(message="\t \n"), "invalid_field", id="blank-text"),
    pytest.param(chat_message(message="a\x00b"), "invalid_field", id="nul-in-text"),
    pytest.param(chat_message(message="x" * 41), "too_large", id="text-over-limit"),
    pytest.param(chat_message(message="😀" * 41), "too_large", id="emoji-over-limit"),
    pytest.param(chat_message(client_id="\x7f"), "invalid_field", id="control-in-client-id"),
    pytest.param(chat_message(room="elsewhere"), "not_joined", id="room-not-joined"),
    pytest.param({"type": "CHAT_MESSAGE", "room": "general"}, "invalid_field", id="no-user"),
    pytest.param({"type": "NO_SUCH_TYPE"}, "unknown_type", id="unknown-type"),
]


@pytest.mark.parametrize(("event", "code"), REFUSED)
async def test_a_refused_message_gets_the_python_rules_error_and_nothing_is_stored(
    chat: Chat, event: dict[str, Any], code: str
) -> None:
    member, sink = joined(chat, "general", "alice")
    other, _ = joined(chat, "general", "bob")
    await until(sink, "ROOM_JOINED")
    before = chat.messages_in
    send(chat, member, event)
    error = await until(sink, "ERROR")
    assert error["code"] == code, error
    assert chat.messages_in == before
    send(chat, other, chat_message(user="bob", message="after"))
    heard = await until(sink, "CHAT_MESSAGE")
    assert (heard["user"], heard["message"]) == ("bob", "after")  # nothing else went in
    page = await chat.store.page("messages", "general", 10)
    assert [row[3] for row in page.rows] == ["after"]


async def test_frames_that_do_not_decode_or_are_too_large_get_their_errors(chat: Chat) -> None:
    member, sink = joined(chat, "general", "alice")
    await until(sink, "ROOM_JOINED")
    chat.receive(member, '{"type": "CHAT_MESSAGE", "room": ')
    assert (await until(sink, "ERROR"))["code"] == "invalid_json"
    chat.receive(member, "é" * (LIMITS.max_frame_bytes // 2 + 1))  # under in chars, over in bytes
    assert (await until(sink, "ERROR"))["code"] == "too_large"
    chat.receive(member, b'{"type": "PING"}')  # bytes, as from a sink or a test client
    assert (await sink.next())["type"] == "PONG"


async def test_every_message_reaches_its_room_once_in_order_on_both_ways(chat: Chat) -> None:
    """Plain messages (the lane) and ones the lane hands back (non-ASCII names, client ids)
    interleaved: one order, each once, the same for every member."""
    alice, alice_sink = joined(chat, "général", "alice")
    bob, bob_sink = joined(chat, "général", "bob")
    await until(alice_sink, "ROOM_JOINED")
    await until(bob_sink, "ROOM_JOINED")
    sent = []
    for i in range(30):
        fields: dict[str, Any] = {"message": f"m{i} ☕" if i % 3 else f"m{i}"}
        if i % 4 == 0:
            fields["client_id"] = f"c{i}"
        send(chat, alice if i % 2 else bob, chat_message("général", user="ü", **fields))
        sent.append(fields["message"])
    for sink in (alice_sink, bob_sink):
        heard = [(await until(sink, "CHAT_MESSAGE")) for _ in sent]
        assert [e["message"] for e in heard] == sent
        ids = [e["id"] for e in heard]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert chat.messages_in == len(sent)


async def test_a_sender_that_left_before_the_commit_still_gets_its_own_copy(chat: Chat) -> None:
    alice, alice_sink = joined(chat, "general", "alice")
    await until(alice_sink, "ROOM_JOINED")
    send(chat, alice, chat_message(message="last words"))
    send(chat, alice, {"type": "LEAVE_ROOM", "room": "general"})  # before the commit
    copy = await until(alice_sink, "CHAT_MESSAGE")
    assert copy["message"] == "last words" and copy["id"] > 0
    assert chat.delivery.mark("r:general") == copy["id"]


async def test_a_room_left_after_sending_to_it_refuses_the_next_message(chat: Chat) -> None:
    """The lane remembers the room a member last sent to; leaving it must forget that."""
    alice, alice_sink = joined(chat, "general", "alice")
    bob, bob_sink = joined(chat, "general", "bob")
    await until(alice_sink, "ROOM_JOINED")
    send(chat, alice, chat_message(message="first"))
    assert (await until(bob_sink, "CHAT_MESSAGE"))["message"] == "first"
    send(chat, alice, {"type": "LEAVE_ROOM", "room": "general"})
    send(chat, alice, chat_message(message="after leaving"))
    assert (await until(alice_sink, "ERROR"))["code"] == "not_joined"
    send(chat, bob, chat_message(user="bob", message="bob's"))
    assert (await until(bob_sink, "CHAT_MESSAGE"))["message"] == "bob's"
    page = await chat.store.page("messages", "general", 10)
    assert [row[3] for row in page.rows] == ["first", "bob's"]


async def test_a_room_left_and_joined_again_takes_messages_heard_once(chat: Chat) -> None:
    """Alone in the room, leaving drops it (a new one on the join); the lane must follow."""
    alice, sink = joined(chat, "general", "alice")
    await until(sink, "ROOM_JOINED")
    send(chat, alice, chat_message(message="one"))
    assert (await until(sink, "CHAT_MESSAGE"))["message"] == "one"
    send(chat, alice, {"type": "LEAVE_ROOM", "room": "general"})
    send(chat, alice, {"type": "JOIN_ROOM", "room": "general", "user": "alice"})
    await until(sink, "ROOM_JOINED")
    send(chat, alice, chat_message(message="two"))
    send(chat, alice, chat_message(room="general", message="three"))
    heard = [(await until(sink, "CHAT_MESSAGE"))["message"] for _ in range(2)]
    assert heard == ["two", "three"]
    send(chat, alice, {"type": "PING"})
    between = []
    while (event := await sink.next())["type"] != "PONG":
        between.append(event)
    assert all(e["type"] != "CHAT_MESSAGE" for e in between), between  # each heard once


async def test_a_sender_that_left_a_room_others_stay_in_gets_its_copy_once(chat: Chat) -> None:
    alice, alice_sink = joined(chat, "general", "alice")
    _bob, bob_sink = joined(chat, "general", "bob")
    await until(alice_sink, "ROOM_JOINED")
    send(chat, alice, chat_message(message="warm"))  # the lane now remembers the room
    assert (await until(alice_sink, "CHAT_MESSAGE"))["message"] == "warm"
    send(chat, alice, chat_message(message="last words"))
    send(chat, alice, {"type": "LEAVE_ROOM", "room": "general"})  # before the commit
    assert (await until(alice_sink, "CHAT_MESSAGE"))["message"] == "last words"
    assert (await until(bob_sink, "CHAT_MESSAGE"))["message"] == "warm"
    assert (await until(bob_sink, "CHAT_MESSAGE"))["message"] == "last words"
    send(chat, alice, {"type": "PING"})
    between = []
    while (event := await alice_sink.next())["type"] != "PONG":
        between.append(event)
    assert all(e["type"] != "CHAT_MESSAGE" for e in between), between  # not a second copy
