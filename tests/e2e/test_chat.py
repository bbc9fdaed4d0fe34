"""/chat in real Chromium: rooms, presence, typing, history paging, and a server restart
that loses nothing."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.conftest import TIMEOUT, start_server
from tests.e2e.conftest import (
    Browsers,
    api,
    chat_texts,
    expect,
    expect_accessible,
    expect_joined,
    join_chat,
    send_chat,
    shown_messages,
)

pytestmark = pytest.mark.e2e


def history(http: str, room: str, **params: Any) -> list[tuple[int, str]]:
    r = api.get(f"{http}/api/v1/messages/{room}", params={"limit": 1000, **params})
    r.raise_for_status()
    return [(m["id"], m["message"]) for m in r.json()["messages"]]


def poll(page: Any, ready: Callable[[], bool], what: str) -> None:
    """Wait (5 s at most) for a condition on the test's side (a held route, a frame seen)."""
    for _ in range(100):
        if ready():
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"never happened: {what}")


def choose(page: Any, name: str, room: str) -> None:
    """Fill in a name and a room on /chat and press Join, without waiting for the join."""
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#join")


def post_message(http: str, room: str, user: str, text: str) -> None:
    r = api.post(f"{http}/api/v1/messages/{room}", json={"user": user, "message": text})
    assert r.status_code == 201, r.text


def test_two_people_chat_both_ways_and_other_rooms_see_nothing(
    server: Any, browsers: Browsers
) -> None:
    url = f"{server.http}/chat"
    alice = browsers.open(url)
    bob = browsers.open(url)
    carol = browsers.open(url)
    join_chat(alice, "alice", "lobby")
    join_chat(bob, "bob", "lobby")
    join_chat(carol, "carol", "elsewhere")

    # Presence: each sees both names in the room; carol's room has only her.
    for page in (alice, bob):
        expect(page.locator("#members li[data-user]")).to_have_count(2)
        expect(page.locator('#members li[data-user="alice"]')).to_have_count(1)
        expect(page.locator('#members li[data-user="bob"]')).to_have_count(1)
    expect(carol.locator("#members li[data-user]")).to_have_count(1)

    send_chat(alice, "hello from alice")
    for page in (alice, bob):
        expect(chat_texts(page)).to_have_text(["hello from alice"])
    expect(alice.locator("#messages .message.pending")).to_have_count(0)
    expect(alice.locator("#messages .message.own")).to_have_count(1)

    # Typing shows on the other side only, then the message replaces it.
    bob.locator("#composer").press_sequentially("hi al")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.fill("#composer", "hi alice, bob here")
    bob.press("#composer", "Enter")
    for page in (alice, bob):
        expect(chat_texts(page)).to_have_text(["hello from alice", "hi alice, bob here"])
    expect(bob.locator("#composer")).to_have_value("")

    # Carol's own message reaches her after anything the lobby could have leaked to her
    # (one connection delivers in order), so seeing it proves she got nothing else.
    send_chat(carol, "anyone here?")
    expect(chat_texts(carol)).to_have_text(["anyone here?"])
    expect(carol.locator("#messages .message")).to_have_count(1)
    expect(chat_texts(alice)).to_have_text(["hello from alice", "hi alice, bob here"])
    assert [t for _, t in history(server.http, "elsewhere")] == ["anyone here?"]

    # Leaving is seen too.
    bob.context.close()
    expect(alice.locator('#members li[data-user="bob"]')).to_have_count(0)
    expect(alice.locator("#members li[data-user]")).to_have_count(1)


def test_typing_cleared_without_sending_ends_the_others_indicator(
    server: Any, browsers: Browsers
) -> None:
    """Bob types, then deletes what he typed: his page says so (TYPING_STOPPED) and Alice's
    "bob is typing…" goes; typing again shows it again."""
    room = "typing-cleared"
    url = f"{server.http}/chat"
    alice = browsers.open(url)
    bob_frames: list[str] = []
    bob = browsers.open("about:blank")
    bob.on("websocket", lambda ws: ws.on("framesent", lambda payload: bob_frames.append(payload)))
    bob.goto(url)
    join_chat(alice, "alice", room)
    join_chat(bob, "bob", room)

    bob.locator("#composer").press_sequentially("hel")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.locator("#composer").fill("")
    expect(alice.locator("#typing")).to_have_text("")
    stops = [json.loads(f) for f in bob_frames if '"TYPING_STOPPED"' in f]
    assert stops == [{"type": "TYPING_STOPPED", "room": room, "user": "bob"}]
    bob.locator("#composer").press_sequentially("again")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")


def test_name_and_room_are_remembered_and_history_shown_on_entry(
    server: Any, browsers: Browsers
) -> None:
    for i in range(3):
        post_message(server.http, "remember", "dana", f"earlier {i}")
    page = browsers.open(f"{server.http}/chat")
    join_chat(page, "erin", "remember")
    expect(chat_texts(page)).to_have_text([f"earlier {i}" for i in range(3)])
    page.reload()
    expect(page.locator("#name")).to_have_value("erin")
    expect(page.locator("#room")).to_have_value("remember")
    expect_joined(page, "remember")
    expect(chat_texts(page)).to_have_text([f"earlier {i}" for i in range(3)])


def test_scrolling_to_the_top_loads_older_messages(server: Any, browsers: Browsers) -> None:
    texts = [f"old message {i:03d}" for i in range(120)]
    for text in texts:
        post_message(server.http, "paging", "frank", text)
    page = browsers.open(f"{server.http}/chat", name="gina", room="paging")
    expect_joined(page, "paging")
    expect(chat_texts(page)).to_have_count(50)  # the newest page
    expect(chat_texts(page).first).to_have_text(texts[70])
    expect(page.locator("#load-older")).to_be_visible()
    # Scroll to the top: the page fetches older ones (REST `before`), oldest on top.
    for expected in (100, 120):
        page.locator("#scroller").evaluate("el => el.scrollTo(0, 0)")
        expect(chat_texts(page)).to_have_count(expected)
    expect(chat_texts(page)).to_have_text(texts)
    expect(page.locator("#history-start")).to_be_visible()
    expect(page.locator("#load-older")).to_be_hidden()
    ids = [i for i, _ in shown_messages(page)]
    assert ids == sorted(set(ids))


def test_restart_loses_nothing_and_offline_text_is_sent_once(
    tmp_path: Path, browsers: Browsers
) -> None:
    db = tmp_path / "chat.db"
    first = start_server(db)
    second = None
    try:
        room = "resume"
        page = browsers.open(f"{first.http}/chat", name="alice", room=room)
        expect_joined(page, room)
        send_chat(page, "before the restart")
        expect(chat_texts(page)).to_have_text(["before the restart"])

        post = browsers.open(f"{first.http}/post/1")
        expect(post.locator("#comments-section")).to_have_attribute("data-live", "true")
        banner = page.locator("#offline-banner")
        expect(banner).to_be_hidden()

        first.stop()  # SIGTERM: graceful; the page sees its socket close
        conn = page.locator("#conn-state")
        expect(conn).not_to_have_attribute("data-state", "connected")
        expect(page.locator("#chat-app")).to_have_attribute("data-joined", "false")

        # Offline is obvious, on both pages: a banner, and the fields look it.
        expect(conn).to_have_attribute("data-state", "offline")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("You are offline.")
        expect(page.locator("#composer")).to_have_attribute(
            "placeholder", "Offline: messages send when you reconnect"
        )
        expect(post.locator("#offline-banner")).to_be_visible(timeout=TIMEOUT * 2000)

        # Written while there is no server: shown as pending, queued.
        send_chat(page, "typed while offline")
        pending = page.locator("#messages .message.pending")
        expect(pending).to_have_count(1)
        expect(pending.locator(".message__text")).to_have_text("typed while offline")
        expect(pending.locator(".message__status")).to_have_text("Queued: sends when back online")
        for offline in (page, post):
            expect_accessible(offline)

        second = start_server(db, port=first.port, ws_port=first.ws_port)
        missed = [f"missed {i}" for i in range(5)]
        for text in missed:
            post_message(second.http, room, "bob", text)

        expect(conn).to_have_attribute("data-state", "connected", timeout=TIMEOUT * 2000)
        expect(banner).to_be_hidden()
        expect(pending).to_have_count(0)
        stored = history(second.http, room)
        texts = [t for _, t in stored]
        assert texts.count("typed while offline") == 1, texts
        assert sorted(texts) == sorted(["before the restart", "typed while offline", *missed])
        # Exactly what the database holds, each once, in id order.
        expect(chat_texts(page)).to_have_text(texts)
        assert shown_messages(page) == stored

        # And it is live again.
        post_message(second.http, room, "bob", "after reconnecting")
        expect(chat_texts(page)).to_have_text([*texts, "after reconnecting"])
        assert [t for _, t in history(second.http, room)].count("typed while offline") == 1
    finally:
        if second is not None:
            second.kill()
        first.kill()


def test_a_message_written_while_the_history_loads_is_sent_after_the_join(
    server: Any, browsers: Browsers
) -> None:
    """The room's history is slow to come (held here); a message written meanwhile is
    pending, is not sent before the room is joined (it would be refused as not_joined), and
    is stored once when it is."""
    room = "slow-history"
    held: list[Any] = []
    frames: list[str] = []
    page = browsers.open("about:blank")
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    holding = True

    def hold(route: Any) -> None:
        if holding:
            held.append(route)
        else:
            route.continue_()

    page.route(f"**/api/v1/messages/{room}?*", hold)
    page.goto(f"{server.http}/chat")
    choose(page, "eager", room)
    poll(page, lambda: bool(held), "the page asked for the history")
    send_chat(page, "before the history")
    expect(page.locator("#messages .message.pending")).to_have_count(1)
    page.wait_for_timeout(300)
    assert not any('"CHAT_MESSAGE"' in f for f in frames), frames

    holding = False
    for route in held:
        route.continue_()
    expect_joined(page, room)
    expect(page.locator("#messages .message.pending")).to_have_count(0)
    expect(chat_texts(page)).to_have_text(["before the history"])
    assert [t for _, t in history(server.http, room)] == ["before the history"]
    expect(page.locator("#messages .message.refused")).to_have_count(0)


def test_a_message_queued_offline_goes_to_its_room_after_the_user_moved_on(
    tmp_path: Path, browsers: Browsers
) -> None:
    """Written in one room while the server is away, then the user switches rooms: when the
    server is back the message is stored in the room it was written in (once), the page
    shows the room it is in, and it is not left pending or refused."""
    db = tmp_path / "chat.db"
    first = start_server(db)
    second = None
    try:
        page = browsers.open(f"{first.http}/chat", name="mo", room="first-room")
        expect_joined(page, "first-room")
        first.stop()
        expect(page.locator("#chat-app")).to_have_attribute("data-joined", "false")
        send_chat(page, "written in the first room")
        expect(page.locator("#messages .message.pending")).to_have_count(1)
        page.fill("#room", "second-room")
        page.click("#join")
        expect(page.locator("#chat-app")).to_have_attribute("data-room", "second-room")
        expect(page.locator("#messages .message.pending")).to_have_count(0)  # not this room's

        second = start_server(db, port=first.port, ws_port=first.ws_port)
        expect_joined(page, "second-room")
        poll(page, lambda: bool(history(second.http, "first-room")), "the message stored")
        assert [t for _, t in history(second.http, "first-room")] == ["written in the first room"]
        send_chat(page, "and one here")
        expect(chat_texts(page)).to_have_text(["and one here"])
        assert [t for _, t in history(second.http, "second-room")] == ["and one here"]
        # Back in the first room: the message is there, stored, once.
        page.fill("#room", "first-room")
        page.click("#join")
        expect_joined(page, "first-room")
        expect(chat_texts(page)).to_have_text(["written in the first room"])
        expect(
            page.locator("#messages .message.pending, #messages .message.refused")
        ).to_have_count(0)
    finally:
        if second is not None:
            second.kill()
        first.kill()


def test_dropped_connection_resumes_from_the_last_id(server: Any, browsers: Browsers) -> None:
    """A network drop, made deterministic: the page's socket goes through Playwright, which
    cuts it and then holds the next one (open, but going nowhere) while messages are sent;
    when let through, the page rejoins with its last id and the server replays the gap."""
    room = "dropped"
    routes: list[tuple[Any, Any]] = []  # (page side, server side or None)
    allow = True

    def route(ws: Any) -> None:
        routes.append((ws, ws.connect_to_server() if allow else None))

    page = browsers.open("about:blank")
    page.route_web_socket(f"ws://127.0.0.1:{server.ws_port}/ws", route)
    page.goto(f"{server.http}/chat")
    join_chat(page, "hana", room)
    post_message(server.http, room, "ivan", "seen live")
    expect(chat_texts(page)).to_have_text(["seen live"])

    # Cut the line; the next connection opens but reaches no server.
    allow = False
    client, upstream = routes[-1]
    client.close()
    upstream.close()
    expect(page.locator("#chat-app")).to_have_attribute("data-joined", "false")
    # Its next connection opens, to nothing: it never rejoins, and the page does not claim
    # to be live.
    poll(page, lambda: routes[-1][1] is None, "a connection opened to nothing")
    expect(page.locator("#conn-state")).not_to_have_attribute("data-state", "connected")
    send_chat(page, "written during the outage")
    expect(page.locator("#messages .message.pending")).to_have_count(1)
    missed = [f"gap {i}" for i in range(4)]
    for text in missed:
        post_message(server.http, room, "ivan", text)

    # Let the next connection through: a resume from the last id seen.
    allow = True
    held = len(routes)
    routes[-1][0].close()
    expect_joined(page, room)
    assert len(routes) > held
    expect(page.locator("#chat-app")).to_have_attribute("data-replayed", str(len(missed)))
    expect(page.locator("#messages .message.pending")).to_have_count(0)
    stored = history(server.http, room)
    assert [t for _, t in stored] == ["seen live", *missed, "written during the outage"]
    expect(chat_texts(page)).to_have_text([t for _, t in stored])
    assert shown_messages(page) == stored


def test_a_message_written_before_the_join_is_answered_waits_for_it(
    server: Any, browsers: Browsers
) -> None:
    """The page's JOIN_ROOM is held on its way (a slow network); a message written
    meanwhile stays pending, is not sent ahead of the join (the server would refuse it as
    not_joined), and is stored once the join is through."""
    room = "held-join"
    held: list[Any] = []
    frames: list[str] = []
    upstreams: list[Any] = []
    hold_joins = True

    def route(ws: Any) -> None:
        upstream = ws.connect_to_server()

        def to_server(message: Any) -> None:
            frames.append(str(message))
            if hold_joins and '"JOIN_ROOM"' in str(message):
                held.append(message)
                return
            upstream.send(message)

        ws.on_message(to_server)
        upstream.on_message(lambda message: ws.send(message))
        upstreams.append(upstream)

    page = browsers.open("about:blank")
    page.route_web_socket(f"ws://127.0.0.1:{server.ws_port}/ws", route)
    page.goto(f"{server.http}/chat")
    choose(page, "quick", room)
    poll(page, lambda: bool(held), "the page sent its JOIN_ROOM")
    send_chat(page, "typed at once")
    pending = page.locator("#messages .message.pending")
    expect(pending).to_have_count(1)
    page.wait_for_timeout(300)
    assert not any('"CHAT_MESSAGE"' in f for f in frames), frames  # not ahead of its join

    # Let the join through: the message follows it.
    hold_joins = False
    for message in held:
        upstreams[-1].send(message)
    expect_joined(page, room)
    expect(pending).to_have_count(0)
    expect(chat_texts(page)).to_have_text(["typed at once"])
    assert [t for _, t in history(server.http, room)] == ["typed at once"]
    expect(page.locator("#messages .message.refused")).to_have_count(0)


def test_a_big_room_shows_the_server_s_count(tmp_path: Path, browsers: Browsers) -> None:
    """Over PRESENCE_LIST_MAX members the server sends counts only (PRESENCE without
    changes): the page shows that count, not the names it happens to know."""
    server = start_server(tmp_path / "big.db", env={"PRESENCE_LIST_MAX": "2"})
    try:
        page = browsers.open(f"{server.http}/chat")
        join_chat(page, "alice", "arena")
        expect_joined(page, "arena")
        with contextlib.ExitStack() as stack:
            for i in range(3):
                ws = stack.enter_context(connect(server.ws_fast, open_timeout=TIMEOUT))
                ws.send(json.dumps({"type": "JOIN_ROOM", "room": "arena", "user": f"fan{i}"}))
                while json.loads(ws.recv(timeout=TIMEOUT))["type"] != "ROOM_JOINED":
                    pass
            expect(page.locator("#member-count")).to_have_text("4 online")
        expect(page.locator("#member-count")).to_have_text("1 online")
    finally:
        server.stop()
