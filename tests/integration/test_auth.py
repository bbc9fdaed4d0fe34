"""Tokens on a real server: both WebSocket URLs, REST, the room rules and the refusals, each
with its code; a token that expires closes its connection; tokens never reach the log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from fastchat.auth import mint
from tests.conftest import TIMEOUT, ServerProcess, start_server
from tests.integration.wsclient import Client

SECRET = "integration-secret-0123456789-abcdefghijklmnop"


def token(sub: str = "u1", **claims: object) -> str:
    return mint(SECRET, sub=sub, **claims)  # type: ignore[arg-type]


def room_name(prefix: str = "auth") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "RATE_LIMIT": "0",
        "AUTH_SECRET": SECRET,
        "PRIVATE_ROOMS": "team-*",
        "READ_ONLY_ROOMS": "news-*",
    }
    srv = start_server(tmp_path_factory.mktemp("auth") / "chat.db", env=env)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def required(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"AUTH_SECRET": SECRET, "AUTH_REQUIRED": "true"}
    srv = start_server(tmp_path_factory.mktemp("required") / "chat.db", env=env)
    yield srv
    srv.stop()


def urls(server: ServerProcess) -> list[str]:
    return [server.ws_fast, server.ws_http]


async def refused_handshake(url: str) -> tuple[int, dict[str, str]]:
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        await Client.connect(url)
    response = refused.value.response
    import json

    return response.status_code, json.loads(response.body)


# --------------------------------------------------------------------------- sockets


@pytest.mark.parametrize("which", ["fast", "http"])
async def test_a_token_on_the_handshake_names_the_connection(
    secured: ServerProcess, which: str
) -> None:
    url = secured.ws_fast if which == "fast" else secured.ws_http
    room = room_name()
    async with await Client.connect(f"{url}?token={token(name='Alice')}") as alice:
        await alice.send({"type": "JOIN_ROOM", "room": room})  # no user: the token's
        joined = await alice.expect("ROOM_JOINED")
        assert joined["user"] == "Alice"
        await alice.say(room, "Mallory", "pretending", client_id="c1")
        refusal = await alice.expect("ERROR")
        assert refusal["code"] == "name_mismatch" and refusal["client_id"] == "c1"
        assert "Alice" in refusal["message"]
        await alice.say(room, "Alice", "hello")
        stored = await alice.expect("CHAT_MESSAGE")
        assert stored["user"] == "Alice" and stored["message"] == "hello"


async def test_the_token_may_come_as_a_cookie(secured: ServerProcess) -> None:
    cookie = {"Cookie": f"other=1; fastchat_token={token(name='Cookie Monster')}"}
    async with await Client.connect(secured.ws_http, additional_headers=cookie) as c:
        await c.send({"type": "JOIN_ROOM", "room": room_name()})
        assert (await c.expect("ROOM_JOINED"))["user"] == "Cookie Monster"


@pytest.mark.parametrize(
    "bad, code",
    [
        (lambda: token(ttl=60, now=time.time() - 3600), "token_expired"),
        (lambda: mint("some-other-secret-0123456789abcdefghij", sub="u"), "token_invalid"),
        (lambda: token().rsplit(".", 1)[0] + ".", "token_invalid"),
        (lambda: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.", "token_algorithm"),
    ],
    ids=["expired", "other-secret", "no-signature", "alg-none"],
)
async def test_a_bad_token_is_refused_at_the_handshake_with_its_code(
    secured: ServerProcess, bad: object, code: str
) -> None:
    for url in urls(secured):
        status, body = await refused_handshake(f"{url}?token={bad()}")  # type: ignore[operator]
        assert (status, body["code"]) == (401, code), url


async def test_auth_event_identifies_and_refreshes(secured: ServerProcess) -> None:
    room = room_name()
    async with await Client.connect(secured.ws_fast) as c:
        await c.send({"type": "AUTH", "token": token("u7", name="Seven")})
        authenticated = await c.expect("AUTHENTICATED")
        assert authenticated["sub"] == "u7" and authenticated["user"] == "Seven"
        await c.send({"type": "JOIN_ROOM", "room": room, "user": "anonymous"})
        assert (await c.expect("ROOM_JOINED"))["user"] == "Seven"
        # A fresh token for the same user extends it; another user's is refused.
        await c.send({"type": "AUTH", "token": token("u7", name="Seven", ttl=7200)})
        assert (await c.expect("AUTHENTICATED"))["sub"] == "u7"
        await c.send({"type": "AUTH", "token": token("u8")})
        assert (await c.expect("ERROR"))["code"] == "token_claims"
        await c.send({"type": "AUTH", "token": "garbage"})
        assert (await c.expect("ERROR"))["code"] == "token_invalid"
        await c.say(room, "Seven", "still me")
        assert (await c.expect("CHAT_MESSAGE"))["user"] == "Seven"


async def test_a_connection_is_closed_with_4001_when_its_token_expires(
    secured: ServerProcess,
) -> None:
    async with await Client.connect(f"{secured.ws_fast}?token={token(ttl=2)}") as c:
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(c.ws.recv(), TIMEOUT + 2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
        assert "expired" in closed.value.rcvd.reason


async def test_private_rooms_need_a_matching_token(secured: ServerProcess) -> None:
    room = room_name("team")
    async with await Client.connect(secured.ws_http) as anonymous:
        await anonymous.send({"type": "JOIN_ROOM", "room": room, "user": "eve"})
        assert (await anonymous.expect("ERROR"))["code"] == "forbidden_room"
        await anonymous.send({"type": "HISTORY", "room": room})
        assert (await anonymous.expect("ERROR"))["code"] == "forbidden_room"
    outsider = token("u2", rooms=["other-*"])
    async with await Client.connect(f"{secured.ws_fast}?token={outsider}") as c:
        await c.send({"type": "JOIN_ROOM", "room": room})
        assert (await c.expect("ERROR"))["code"] == "forbidden_room"
    member = token("u3", name="Member", rooms=["team-*"])
    async with await Client.connect(f"{secured.ws_fast}?token={member}") as c:
        await c.send({"type": "JOIN_ROOM", "room": room})
        assert (await c.expect("ROOM_JOINED"))["user"] == "Member"


async def test_read_only_rooms_take_posts_from_moderators_and_publishers(
    secured: ServerProcess,
) -> None:
    room = room_name("news")
    reader = token("r1", name="Reader")
    moderator = token("m1", name="Mod", roles=["moderator"])
    async with (
        await Client.connect(f"{secured.ws_fast}?token={reader}") as r,
        await Client.connect(f"{secured.ws_http}?token={moderator}") as m,
    ):
        await r.send({"type": "JOIN_ROOM", "room": room})
        await r.expect("ROOM_JOINED")
        await r.say(room, "Reader", "may I?")
        assert (await r.expect("ERROR"))["code"] == "read_only_room"
        await m.send({"type": "JOIN_ROOM", "room": room})
        await m.expect("ROOM_JOINED")
        await m.say(room, "Mod", "announcement")
        got = await r.expect("CHAT_MESSAGE", skip=("USER_JOINED",))
        assert got["message"] == "announcement" and got["user"] == "Mod"


# --------------------------------------------------------------------------- REST


async def test_rest_takes_bearer_tokens_and_the_same_rules(secured: ServerProcess) -> None:
    room = room_name()
    bearer = {"Authorization": f"Bearer {token('u5', name='Rest User')}"}
    async with httpx.AsyncClient(base_url=secured.http, timeout=TIMEOUT) as http:
        ok = await http.post(
            f"/api/v1/messages/{room}", json={"user": "Rest User", "message": "hi"}, headers=bearer
        )
        assert ok.status_code == 201 and ok.json()["user"] == "Rest User"
        mismatch = await http.post(
            f"/api/v1/messages/{room}", json={"user": "Someone", "message": "hi"}, headers=bearer
        )
        assert (mismatch.status_code, mismatch.json()["code"]) == (403, "name_mismatch")
        bad = await http.post(
            f"/api/v1/messages/{room}",
            json={"user": "x", "message": "hi"},
            headers={"Authorization": "Bearer not-a-token"},
        )
        assert (bad.status_code, bad.json()["code"]) == (401, "token_invalid")
        private = room_name("team")
        refused = await http.get(f"/api/v1/messages/{private}")
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden_room")
        member = {"Authorization": f"Bearer {token('u6', rooms=['team-*'])}"}
        assert (await http.get(f"/api/v1/messages/{private}", headers=member)).status_code == 200
        readonly = await http.post(
            f"/api/v1/messages/{room_name('news')}",
            json={"user": "u6", "message": "x"},
            headers=member,
        )
        assert (readonly.status_code, readonly.json()["code"]) == (403, "forbidden_room")
        # Anonymous writes to public rooms work as in the original.
        anonymous = await http.post(
            f"/api/v1/messages/{room}", json={"user": "anon", "message": "x"}
        )
        assert anonymous.status_code == 201


async def test_auth_required_refuses_what_has_no_token(required: ServerProcess) -> None:
    for url in urls(required):
        status, body = await refused_handshake(url)
        assert (status, body["code"]) == (401, "unauthorized")
    async with await Client.connect(f"{required.ws_http}?token={token(name='In')}") as c:
        await c.send({"type": "JOIN_ROOM", "room": room_name()})
        assert (await c.expect("ROOM_JOINED"))["user"] == "In"
    async with httpx.AsyncClient(base_url=required.http, timeout=TIMEOUT) as http:
        history = await http.get("/api/v1/messages/general")
        assert (history.status_code, history.json()["code"]) == (401, "unauthorized")
        posts = await http.get("/api/v1/posts")
        assert posts.status_code == 401
        bearer = {"Authorization": f"Bearer {token()}"}
        assert (await http.get("/api/v1/messages/general", headers=bearer)).status_code == 200
        assert (await http.get("/api/v1/health")).status_code == 200  # probes stay open


def test_tokens_never_reach_the_log(secured: ServerProcess, required: ServerProcess) -> None:
    """Every test above sent tokens (good and bad) on both URLs and REST; the logs, at
    INFO, hold none of them (a JWT's header always starts with `eyJ`)."""
    for server in (secured, required):
        log = Path(server.log_path).read_text()
        assert "connection opened" in log  # the log was written
        assert "eyJ" not in log and SECRET not in log


async def test_the_rate_limit_is_per_user_as_well_as_per_connection(tmp_path: Path) -> None:
    """Ten tabs do not get ten budgets: two connections of one token user share one
    bucket (here 5 events, refilled at one per 10 s); another user's is its own."""
    env = {"AUTH_SECRET": SECRET, "RATE_LIMIT": "0.1", "RATE_BURST": "5"}
    server = start_server(tmp_path / "chat.db", env=env)
    try:
        ask = {"type": "HISTORY", "room": "general", "limit": 1}
        same = token("tabs", name="Tabs")
        async with (
            await Client.connect(f"{server.ws_fast}?token={same}") as tab1,
            await Client.connect(f"{server.ws_http}?token={same}") as tab2,
            await Client.connect(f"{server.ws_fast}?token={token('other')}") as other,
        ):
            for _ in range(5):
                await tab1.send(ask)
                await tab1.expect("HISTORY")
            await tab2.send(ask)  # its own connection's bucket is full, the user's empty
            refusal = await tab2.expect("ERROR")
            assert refusal["code"] == "rate_limited"
            await other.send(ask)
            await other.expect("HISTORY")
    finally:
        server.stop()


async def test_an_auth_after_the_join_applies_the_rooms_rules_for_the_new_identity(
    secured: ServerProcess,
) -> None:
    room = room_name("news")
    async with await Client.connect(secured.ws_http) as c:
        await c.join(room, "guest")
        await c.say(room, "guest", "first!")
        assert (await c.expect("ERROR"))["code"] == "read_only_room"
        await c.send({"type": "AUTH", "token": token("m9", name="guest", roles=["moderator"])})
        await c.expect("AUTHENTICATED")
        await c.say(room, "guest", "now I may")
        assert (await c.expect("CHAT_MESSAGE"))["message"] == "now I may"


# --------------------------------------------------------------------------- moderation


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_bans_and_mutes_take_effect_at_once_and_survive_a_restart(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    env = {"AUTH_SECRET": SECRET, "RATE_LIMIT": "0"}
    if store == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    server = start_server(tmp_path / "chat.db", env=env)
    room = room_name()
    moderator = {"Authorization": f"Bearer {token('mod', roles=['moderator'])}"}
    troll = token("troll", name="Troll")
    try:
        async with (
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http,
            await Client.connect(f"{server.ws_fast}?token={troll}") as t,
        ):
            await t.send({"type": "JOIN_ROOM", "room": room})
            await t.expect("ROOM_JOINED")
            # Not a moderator: refused.
            plain = {"Authorization": f"Bearer {token('someone')}"}
            r = await http.post("/api/v1/admin/bans", json={"sub": "troll"}, headers=plain)
            assert (r.status_code, r.json()["code"]) == (403, "forbidden")
            # A mute: sends refused, the socket stays in the room.
            r = await http.post(
                "/api/v1/admin/bans",
                json={"sub": "troll", "room": room, "kind": "mute", "reason": "spam"},
                headers=moderator,
            )
            assert r.status_code == 201 and r.json()["kind"] == "mute"
            await t.say(room, "Troll", "buy now")
            refusal = await t.expect("ERROR")
            assert refusal["code"] == "muted" and "spam" in refusal["message"]
            # A ban everywhere: out of the room at once, told why.
            r = await http.post(
                "/api/v1/admin/bans", json={"sub": "troll", "seconds": 3600}, headers=moderator
            )
            assert r.status_code == 201 and r.json()["until"] is not None
            assert (await t.expect("ERROR"))["code"] == "banned"
            assert (await t.expect("ROOM_LEFT"))["room"] == room
            await t.send({"type": "JOIN_ROOM", "room": room})
            assert (await t.expect("ERROR"))["code"] == "banned"
            # Nor over REST: no message, no comment, no edit of its own message.
            as_troll = {"Authorization": f"Bearer {troll}"}
            r = await http.post(
                f"/api/v1/messages/{room}",
                json={"user": "Troll", "message": "via REST"},
                headers=as_troll,
            )
            assert (r.status_code, r.json()["code"]) == (403, "banned")
            r = await http.post(
                "/api/v1/posts/1/comments",
                json={"user": "Troll", "comment": "via REST"},
                headers=as_troll,
            )
            assert (r.status_code, r.json()["code"]) == (403, "banned")
            r = await http.patch(
                f"/api/v1/messages/{room}/1", json={"message": "x"}, headers=as_troll
            )
            assert (r.status_code, r.json()["code"]) == (403, "banned")
            listed = (await http.get("/api/v1/admin/bans", headers=moderator)).json()
            assert {(b["sub"], b["kind"]) for b in listed["bans"]} == {
                ("troll", "mute"),
                ("troll", "ban"),
            }
        server.stop()
        server = start_server(tmp_path / "chat.db", env=env)
        async with (
            httpx.AsyncClient(base_url=server.http, timeout=TIMEOUT) as http,
            await Client.connect(f"{server.ws_http}?token={troll}") as t,
        ):
            await t.send({"type": "JOIN_ROOM", "room": room})
            assert (await t.expect("ERROR"))["code"] == "banned"  # the ban outlived the restart
            r = await http.delete("/api/v1/admin/bans/troll", headers=moderator)
            assert r.status_code == 200 and r.json()["kind"] == "ban"
            missing = await http.delete("/api/v1/admin/bans/troll", headers=moderator)
            assert missing.status_code == 404
            await t.send({"type": "JOIN_ROOM", "room": room})
            await t.expect("ROOM_JOINED")
            await t.say(room, "Troll", "still muted here")
            assert (await t.expect("ERROR"))["code"] == "muted"
    finally:
        server.stop()


async def test_the_python_client_and_fastchat_send_take_their_name_from_the_token(
    secured: ServerProcess,
) -> None:
    """With a token and no `user`, the client sends as the token's name (any other is
    refused with name_mismatch), in the library and in `fastchat send`."""
    import subprocess
    import sys

    from fastchat.client import connect

    room = room_name()
    async with connect(secured.ws_fast, token=token("t9", name="Nine")) as chat:
        assert chat.user == "Nine"
        await chat.join(room)
        sent = await chat.send(room, "from the library")
        assert sent.user == "Nine"
    out = subprocess.run(
        [
            *(sys.executable, "-m", "fastchat", "send", room, "from the command"),
            *("--url", secured.ws_http, "--token", token("t8")),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    page = httpx.get(f"{secured.http}/api/v1/messages/{room}", timeout=TIMEOUT).json()
    assert [(m["user"], m["message"]) for m in page["messages"]] == [
        ("Nine", "from the library"),
        ("t8", "from the command"),  # no name claim: the sub
    ]
