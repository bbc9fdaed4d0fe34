"""static/js/fastchat-client.js in real Chromium against a real server: the module is imported
into a page served by the server and driven with page.evaluate. Sends acknowledged, two
clients (one per URL) seeing each other, typing and presence, history and members paging,
and a dropped connection with messages on both sides of the gap: every message once, in order,
the dropped client's own sends stored once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastchat.auth import mint
from tests.conftest import ServerProcess, start_server
from tests.e2e.conftest import Browsers, api

pytestmark = pytest.mark.e2e

MODULE = "/static/js/fastchat-client.js"

# Imports the module and opens a client in `window.chat`; every event it emits is kept in
# `window.events`, in order, and its states in `window.states`.
OPEN = """async ([url, user]) => {
  const { FastchatClient } = await import('/static/js/fastchat-client.js');
  window.events = [];
  window.states = [];
  window.chat = new FastchatClient(url, { user, backoffBase: 50, backoffCap: 250, timeout: 5000 });
  chat.on('event', (e) => events.push(e));
  chat.on('state', (s) => states.push(s.state));
  await chat.connect();
  return chat.state;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # SQLite only: the module speaks the protocol, which the integration suite checks on both
    # stores; what is under test here is the browser side.
    srv = start_server(tmp_path_factory.mktemp("db") / "chat.db", env={"RATE_LIMIT": "0"})
    yield srv
    srv.stop()


def open_client(browsers: Browsers, server: ServerProcess, user: str, url: str) -> Any:
    page = browsers.open(f"{server.http}{MODULE}")
    assert page.evaluate(OPEN, [url, user]) == "connected"
    return page


def messages(page: Any, room: str) -> list[tuple[int, str, str]]:
    """(id, user, text) of every CHAT_MESSAGE the client emitted for `room`, in order."""
    rows = page.evaluate(
        "(room) => events.filter(e => e.type === 'CHAT_MESSAGE' && e.room === room)"
        ".map(e => [e.id, e.user, e.message])",
        room,
    )
    return [(int(i), str(u), str(t)) for i, u, t in rows]


def wait_messages(page: Any, room: str, count: int) -> list[tuple[int, str, str]]:
    page.wait_for_function(
        "([room, n]) => events.filter(e => e.type === 'CHAT_MESSAGE' && e.room === room)"
        ".length >= n",
        arg=[room, count],
    )
    return messages(page, room)


def stored(server: ServerProcess, room: str) -> list[tuple[int, str, str]]:
    r = api.get(f"{server.http}/api/v1/messages/{room}", params={"limit": 1000})
    r.raise_for_status()
    return [(m["id"], m["user"], m["message"]) for m in r.json()["messages"]]


def test_the_module_is_served_as_javascript(server: ServerProcess) -> None:
    r = api.get(f"{server.http}{MODULE}")
    assert r.status_code == 200
    assert "javascript" in r.headers["content-type"]
    assert "export class FastchatClient" in r.text


def test_send_is_acknowledged_and_two_clients_see_each_other(
    server: ServerProcess, browsers: Browsers
) -> None:
    room = "js-both"
    # One client per URL: the fast port and the original /ws on the HTTP port share rooms.
    alice = open_client(browsers, server, "alice", server.ws_fast)
    bob = open_client(browsers, server, "bob", server.ws_http)
    joined = alice.evaluate("(room) => chat.join(room)", room)
    assert (joined["type"], joined["room"], joined["user"]) == ("ROOM_JOINED", room, "alice")
    bob.evaluate("(room) => chat.join(room)", room)

    sent = alice.evaluate("(room) => chat.send(room, 'hello bob')", room)
    assert sent["type"] == "CHAT_MESSAGE" and sent["id"] > 0 and sent["user"] == "alice"
    assert sent["timestamp"].endswith("Z") and sent["client_id"]
    answer = bob.evaluate("(room) => chat.send(room, 'hi alice')", room)

    expected = [(sent["id"], "alice", "hello bob"), (answer["id"], "bob", "hi alice")]
    assert expected == stored(server, room)
    for page in (alice, bob):
        # Each has both messages once, its own echo (the acknowledgement) included.
        assert wait_messages(page, room, 2) == expected
    assert alice.evaluate("() => chat.pending.length") == 0

    # The same client_id twice: stored once, answered with the original.
    first = alice.evaluate("(room) => chat.send(room, 'once', { clientId: 'js-once' })", room)
    again = alice.evaluate("(room) => chat.send(room, 'once', { clientId: 'js-once' })", room)
    assert again["id"] == first["id"]
    assert [t for _, _, t in stored(server, room)].count("once") == 1

    # A refusal rejects with the server's code, and the connection stays usable.
    code = alice.evaluate(
        "(room) => chat.send(room, 'x'.repeat(4001)).then(() => 'sent', (e) => e.code)", room
    )
    assert code == "too_large"
    code = alice.evaluate("() => chat.send('not-joined-here', 'hi').catch((e) => e.code)")
    assert code == "not_joined"


def test_typing_presence_and_members(server: ServerProcess, browsers: Browsers) -> None:
    room = "js-typing"
    alice = open_client(browsers, server, "alice", server.ws_fast)
    bob = open_client(browsers, server, "bob", server.ws_fast)
    alice.evaluate("(room) => chat.join(room)", room)
    bob.evaluate("(room) => chat.join(room)", room)
    alice.wait_for_function(
        "(room) => events.some(e => e.type === 'USER_JOINED' && e.room === room "
        "&& e.user === 'bob')",
        arg=room,
    )

    # A typing notice through an on(type, fn) listener: only the others hear it.
    alice.evaluate("() => { window.typing = []; chat.on('TYPING', (e) => typing.push(e.user)); }")
    bob.evaluate("(room) => chat.typing(room)", room)
    alice.wait_for_function("() => typing.length === 1")
    assert alice.evaluate("() => typing") == ["bob"]
    alice.evaluate("() => { chat.on('TYPING_STOPPED', (e) => typing.push(`${e.user} stopped`)); }")
    bob.evaluate("(room) => chat.stopTyping(room)", room)
    alice.wait_for_function("() => typing.length === 2")
    assert alice.evaluate("() => typing") == ["bob", "bob stopped"]
    assert not bob.evaluate("() => events.some(e => e.type === 'TYPING')")

    names = alice.evaluate(
        "async (room) => { const all = []; "
        "for await (const n of chat.members(room, { pageSize: 1 })) all.push(n); return all; }",
        room,
    )
    assert names == ["alice", "bob"]

    bob.evaluate("(room) => chat.leave(room)", room)
    alice.wait_for_function(
        "(room) => events.some(e => e.type === 'USER_LEFT' && e.user === 'bob' "
        "&& e.sessions === 0)",
        arg=room,
    )


def test_history_pages_back_to_the_first_message(server: ServerProcess, browsers: Browsers) -> None:
    room = "js-history"
    for i in range(7):
        r = api.post(
            f"{server.http}/api/v1/messages/{room}", json={"user": "seed", "message": f"m{i}"}
        )
        assert r.status_code == 201, r.text
    page = open_client(browsers, server, "reader", server.ws_fast)
    page.evaluate("(room) => chat.join(room)", room)
    pages = page.evaluate(
        """async (room) => {
          const pages = [];
          let cursor = {};
          for (;;) {
            const page = await chat.history({ room, limit: 3, ...cursor });
            pages.push(page.messages.map((m) => m.message));
            if (page.next === null) return pages;
            cursor = page.next;
          }
        }""",
        room,
    )
    assert pages == [["m4", "m5", "m6"], ["m1", "m2", "m3"], ["m0"]]
    first = stored(server, room)[0][0]
    newer = page.evaluate(
        "([room, after]) => chat.history({ room, after, limit: 2 })", [room, first]
    )
    assert [m["message"] for m in newer["messages"]] == ["m1", "m2"]
    assert newer["next"] == {"after": newer["messages"][-1]["id"]}


def test_a_refused_request_rejects_that_request_alone(
    server: ServerProcess, browsers: Browsers
) -> None:
    """Requests in flight together, one refused: the ERROR names it (request_id, post), so
    that promise rejects with the server's code and the others resolve."""
    room = "js-refused"
    r = api.post(f"{server.http}/api/v1/messages/{room}", json={"user": "seed", "message": "hi"})
    assert r.status_code == 201, r.text
    page = open_client(browsers, server, "asker", server.ws_http)
    page.evaluate("(room) => chat.join(room)", room)
    outcome = page.evaluate(
        """async (room) => {
          const settle = (p) => p.then((v) => ["ok", v.type], (e) => ["refused", e.code]);
          // The first page is answered after a read, the bad one refused at once: the
          // answers come out of order.
          return Promise.all([
            settle(chat.history({ room, before: 1e12 })),
            settle(chat.history({ room, since: "not a time" })),
            settle(chat.joinPost(987654)),
          ]);
        }""",
        room,
    )
    assert outcome == [
        ["ok", "HISTORY"],
        ["refused", "invalid_time"],
        ["refused", "post_not_found"],
    ]


def test_a_dropped_connection_loses_nothing_and_repeats_nothing(
    server: ServerProcess, browsers: Browsers
) -> None:
    """Alice's socket goes through Playwright. First her acknowledgements are swallowed (her
    send is stored, its echo never reaches her); then the line is cut on both ends and the
    next connection held open to nowhere while both sides write; then it is let through. She
    resumes from her last id: every message once, in id order, each of her sends stored once
    (the one whose echo was lost included, answered again by its client_id)."""
    room = "js-dropped"
    mode = "through"  # "through" | "deaf" (nothing reaches the page) | "hold" (no server)
    routes: list[tuple[Any, Any]] = []  # (page side, server side or None)

    def route(ws: Any) -> None:
        if mode == "hold":
            routes.append((ws, None))
            return
        upstream = ws.connect_to_server()

        def to_page(message: Any) -> None:
            if mode == "through":
                ws.send(message)

        upstream.on_message(to_page)
        routes.append((ws, upstream))

    alice = browsers.open("about:blank")
    alice.route_web_socket(server.ws_fast, route)
    alice.goto(f"{server.http}{MODULE}")
    assert alice.evaluate(OPEN, [server.ws_fast, "alice"]) == "connected"
    bob = open_client(browsers, server, "bob", server.ws_http)
    alice.evaluate("(room) => chat.join(room)", room)
    bob.evaluate("(room) => chat.join(room)", room)
    bob.evaluate("(room) => chat.send(room, 'seen live')", room)
    assert [t for _, _, t in wait_messages(alice, room, 1)] == ["seen live"]

    # Deaf: her send reaches the server (bob gets it), its acknowledgement does not reach her.
    mode = "deaf"
    alice.evaluate("(room) => { window.unacked = chat.send(room, 'echo lost'); }", room)
    assert [t for _, _, t in wait_messages(bob, room, 2)][-1] == "echo lost"
    assert alice.evaluate("() => chat.pending.map(p => p.event.message)") == ["echo lost"]

    # Cut both ends; the next connection opens to nowhere (so it never rejoins).
    mode = "hold"
    page_side, server_side = routes[-1]
    page_side.close()
    server_side.close()
    alice.wait_for_function("() => chat._ws?.readyState === 1 && !chat.connected")
    assert routes[-1][1] is None
    # Both sides write during the gap: hers wait in the queue, his are stored.
    alice.evaluate(
        "(room) => { window.queued = [chat.send(room, 'queued 1'), chat.send(room, 'queued 2')]; }",
        room,
    )
    for i in range(3):
        bob.evaluate("([room, text]) => chat.send(room, text)", [room, f"gap {i}"])
    assert alice.evaluate("() => chat.pending.length") == 3

    # Let the next attempt through: rejoin from the last id, replay, resend the queue.
    mode = "through"
    held = len(routes)
    routes[-1][0].close()
    acked = alice.evaluate("() => Promise.all([window.unacked, ...window.queued])")
    assert len(routes) > held
    assert [m["message"] for m in acked] == ["echo lost", "queued 1", "queued 2"]
    assert alice.evaluate("() => chat.reconnects") >= 1
    assert alice.evaluate("() => chat.pending.length") == 0

    everything = stored(server, room)
    texts = [t for _, _, t in everything]
    assert sorted(texts) == sorted(
        ["seen live", "echo lost", "gap 0", "gap 1", "gap 2", "queued 1", "queued 2"]
    )
    assert {m["id"] for m in acked} <= {i for i, _, _ in everything}
    for page in (alice, bob):
        assert wait_messages(page, room, len(everything)) == everything
    # Live again, and still nothing twice.
    bob.evaluate("(room) => chat.send(room, 'after')", room)
    assert wait_messages(alice, room, len(everything) + 1) == stored(server, room)
    assert alice.evaluate("() => states").count("reconnecting") >= 1


def test_a_connection_dead_without_a_close_is_noticed_and_replaced(
    server: ServerProcess, browsers: Browsers
) -> None:
    """A quiet live connection is kept: the client's PINGs are answered. Then the line goes
    dead without a close (frames vanish both ways, the socket stays open, as after a laptop
    sleeps): the unanswered PING gives it up, the client reconnects by itself and resumes,
    and what was said meanwhile arrives."""
    room = "js-dead-line"
    alive = True
    routes: list[Any] = []

    def route(ws: Any) -> None:
        upstream = ws.connect_to_server()
        routes.append(ws)
        mine = len(routes)

        def to_page(message: Any) -> None:
            if alive or mine > 1:
                ws.send(message)

        def to_server(message: Any) -> None:
            if alive or mine > 1:
                upstream.send(message)

        upstream.on_message(to_page)
        ws.on_message(to_server)

    alice = browsers.open("about:blank")
    alice.route_web_socket(server.ws_fast, route)
    alice.goto(f"{server.http}{MODULE}")
    opened = alice.evaluate(
        """async (url) => {
          const { FastchatClient } = await import('/static/js/fastchat-client.js');
          window.events = [];
          window.disconnects = [];
          window.chat = new FastchatClient(url, {
            user: "alice", backoffBase: 50, backoffCap: 250, timeout: 800, pingInterval: 200,
          });
          chat.on('event', (e) => events.push(e));
          chat.on('disconnect', (e) => disconnects.push(e.code));
          await chat.connect();
          return chat.state;
        }""",
        server.ws_fast,
    )
    assert opened == "connected"
    alice.evaluate("(room) => chat.join(room)", room)
    # Quiet for several ping intervals: PINGs answered, the connection kept.
    alice.wait_for_function("() => events.filter(e => e.type === 'PONG').length >= 3")
    assert alice.evaluate("() => [chat.reconnects, disconnects.length]") == [0, 0]

    alive = False
    bob = open_client(browsers, server, "bob", server.ws_http)
    bob.evaluate("(room) => chat.join(room)", room)
    bob.evaluate("(room) => chat.send(room, 'said while her line was dead')", room)
    alice.wait_for_function("() => chat.reconnects >= 1 && chat.connected")
    assert alice.evaluate("() => disconnects") == [4000]
    assert len(routes) >= 2
    assert [t for _, _, t in wait_messages(alice, room, 1)] == ["said while her line was dead"]


def test_resume_across_a_server_restart(tmp_path: Path, browsers: Browsers) -> None:
    """SIGKILL and restart on the same database and ports: the client reconnects by itself,
    its send made while the server was down is stored once, and what others wrote meanwhile
    arrives once, in order."""
    db = tmp_path / "chat.db"
    first = start_server(db)
    second = None
    room = "js-restart"
    try:
        page = open_client(browsers, first, "reader", first.ws_fast)
        page.evaluate("(room) => chat.join(room)", room)
        page.evaluate("(room) => chat.send(room, 'before')", room)
        first.kill()
        page.wait_for_function("() => !chat.connected")
        page.evaluate("(room) => { window.offline = chat.send(room, 'while down'); }", room)
        second = start_server(db, port=first.port, ws_port=first.ws_port)
        for i in range(3):
            r = api.post(
                f"{second.http}/api/v1/messages/{room}", json={"user": "w", "message": f"a{i}"}
            )
            assert r.status_code == 201, r.text
        mine = page.evaluate("() => window.offline")
        everything = stored(second, room)
        assert [t for _, _, t in everything].count("while down") == 1
        assert mine["id"] in {i for i, _, _ in everything}
        assert wait_messages(page, room, len(everything)) == everything
    finally:
        if second is not None:
            second.kill()
        first.kill()


def test_a_token_on_the_handshake_names_the_user(tmp_path: Path, browsers: Browsers) -> None:
    """With AUTH_REQUIRED, a client without a token is refused at the handshake (its connect
    rejects); with one (`?token=`) it acts under the token's name, and may edit its own
    message."""
    secret = "js-client-secret-0123456789-abcdefghijklmnop"
    srv = start_server(tmp_path / "chat.db", env={"AUTH_SECRET": secret, "AUTH_REQUIRED": "true"})
    try:
        page = browsers.open(f"{srv.http}{MODULE}")
        refused = page.evaluate(
            """async (url) => {
              const { FastchatClient } = await import('/static/js/fastchat-client.js');
              return new FastchatClient(url).connect().then(() => 'connected', (e) => e.name);
            }""",
            srv.ws_fast,
        )
        assert refused == "ClientClosedError"
        token = mint(secret, sub="u-zoe", name="Zoe")
        opened = page.evaluate(
            """async ([url, token]) => {
              const { FastchatClient } = await import('/static/js/fastchat-client.js');
              window.chat = await new FastchatClient(url, { token }).connect();
              return chat.url;
            }""",
            [srv.ws_fast, token],
        )
        assert opened.endswith(f"/ws?token={token}")
        assert page.evaluate("() => chat.user") == "Zoe"  # asked with AUTH on connect
        page.evaluate("() => chat.join('js-auth')")
        sent = page.evaluate("() => chat.send('js-auth', 'signed')")
        assert sent["user"] == "Zoe"
        edited = page.evaluate("(id) => chat.editMessage(id, 'signed, edited')", sent["id"])
        assert (edited["type"], edited["message"]) == ("MESSAGE_EDITED", "signed, edited")
        code = page.evaluate("() => chat.send('js-auth', 'x', { user: 'Eve' }).catch(e => e.code)")
        assert code == "name_mismatch"
    finally:
        srv.kill()
