"""What a page on another site can make its visitor's browser do here: nothing that stores.

Cross-site request forgery over REST: browsers send "simple" requests (GET, or POST with a
text/plain, form or multipart body) from any page without asking. Each case is what such a
page would send; none may store anything. Programs without an Origin (curl) keep working.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, start_server
from tests.integration.wsclient import Client

EVIL = "http://evil.example"
BLOG = "https://blog.example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with the default origin rule: only pages of its own host may write."""
    srv = start_server(tmp_path_factory.mktemp("csrf") / "chat.db")
    yield srv
    srv.stop()


@pytest.fixture
def http(site: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.http, timeout=10) as client:
        yield client


def room_name() -> str:
    return "csrf-" + uuid.uuid4().hex[:8]


def stored(http: httpx.Client, room: str) -> list[str]:
    return [m["message"] for m in http.get(f"/api/v1/messages/{room}").json()["messages"]]


def post_titles(http: httpx.Client) -> list[str]:
    return [p["title"] for p in http.get("/api/v1/posts").json()["posts"]]


BODY = json.dumps({"user": "mallory", "message": "forged", "title": "forged", "content": "x"})


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        None,
    ],
)
@pytest.mark.parametrize("origin", [EVIL, None])
def test_a_write_that_is_not_json_is_refused_with_415_and_stores_nothing(
    http: httpx.Client, content_type: str | None, origin: str | None
) -> None:
    room = room_name()
    headers = {k: v for k, v in (("Content-Type", content_type), ("Origin", origin)) if v}
    for path in (f"/api/v1/messages/{room}", "/api/v1/posts"):
        r = http.post(path, content=BODY.encode(), headers=headers)
        expected = (403, "origin_refused") if origin else (415, "unsupported_media_type")
        assert (r.status_code, r.json()["code"]) == expected, r.text
        assert r.json()["message"]
    assert stored(http, room) == []
    assert "forged" not in post_titles(http)


def test_a_json_write_from_another_site_is_refused_with_403(
    http: httpx.Client, site: ServerProcess
) -> None:
    room = room_name()
    headers = {"Origin": EVIL, "Content-Type": "application/json"}
    r = http.post(f"/api/v1/messages/{room}", content=BODY, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "origin_refused"
    r = http.post("/api/v1/posts/1/comments", content=BODY, headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "origin_refused"
    assert stored(http, room) == []
    # The server's own pages (same host, any port) and programs (no Origin) may write.
    own = {"Origin": site.http, "Content-Type": "application/json"}
    assert http.post(f"/api/v1/messages/{room}", content=BODY, headers=own).status_code == 201
    assert http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": "curl"}).is_success
    assert stored(http, room) == ["forged", "curl"]
    # Reads stay open to everyone: history is public, as in the original.
    assert http.get(f"/api/v1/messages/{room}", headers={"Origin": EVIL}).status_code == 200


def test_the_original_get_test_endpoints_refuse_other_sites(http: httpx.Client) -> None:
    """An `<img src=".../api/v1/test/message">` on another site: the browser sends no Origin,
    but says where the request comes from in Sec-Fetch-Site."""
    room = room_name()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": EVIL}):
        r = http.get("/api/v1/test/message", params={"room": room}, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "origin_refused"
        r = http.get("/api/v1/test/comment", params={"post_id": 1}, headers=headers)
        assert r.status_code == 403
    assert stored(http, room) == []
    # Typed in the address bar, or curl: as the original.
    r = http.get("/api/v1/test/message", params={"room": room}, headers={"Sec-Fetch-Site": "none"})
    assert r.status_code == 200
    assert len(stored(http, room)) == 1


def test_json_nested_too_deeply_is_a_400_on_every_write(http: httpx.Client) -> None:
    for path in ("/api/v1/messages/deep", "/api/v1/posts", "/api/v1/posts/1/comments"):
        for body in ("[" * 1000, '{"user":' * 1000):
            r = http.post(path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert r.json()["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("client_id", "status"),
    [("", 400), ("a\x00b", 400), ("x" * 65, 400), ("\u200b", 400), ("x" * (5 << 20), 400)],
)
def test_rest_refuses_the_client_ids_the_socket_refuses(
    http: httpx.Client, client_id: str, status: int
) -> None:
    room = room_name()
    for path in (f"/api/v1/messages/{room}", "/api/v1/posts/1/comments"):
        r = http.post(
            path, json={"user": "u", "message": "m", "comment": "c", "client_id": client_id}
        )
        assert r.status_code == status, (path, r.status_code, r.text[:200])
        assert r.json()["code"] in ("invalid_field", "too_large")
    assert stored(http, room) == []


async def test_room_names_with_a_slash_are_refused_on_the_socket(site: ServerProcess) -> None:
    """REST addresses a room as one path segment: a room named `a/b` would be stored and never
    readable there, so no room may have one."""
    for url in site.ws_urls():
        async with await Client.connect(url) as c:
            for room in ("a/b", "../../etc/passwd", "/"):
                await c.send({"type": "JOIN_ROOM", "room": room, "user": "u"})
                error = await c.expect("ERROR")
                assert error["code"] == "invalid_field" and "/" in error["message"]
                await c.send({"type": "CHAT_MESSAGE", "room": room, "user": "u", "message": "m"})
                assert (await c.expect("ERROR"))["code"] == "invalid_field"


def test_allowed_origins_get_cors_and_may_write(tmp_path: Path) -> None:
    """A site that embeds fastchat lists itself in ALLOWED_ORIGINS: its pages may then call
    the API (CORS preflight answered) and write; other sites still may not."""
    srv = start_server(tmp_path / "cors.db", env={"ALLOWED_ORIGINS": BLOG})
    try:
        with httpx.Client(base_url=srv.http, timeout=10) as http:
            preflight = http.options(
                "/api/v1/messages/embed",
                headers={
                    "Origin": BLOG,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert preflight.status_code in (200, 204)
            assert preflight.headers["access-control-allow-origin"] == BLOG
            headers = {"Origin": BLOG, "Content-Type": "application/json"}
            r = http.post("/api/v1/messages/embed", content=BODY, headers=headers)
            assert r.status_code == 201 and r.headers["access-control-allow-origin"] == BLOG
            evil = {"Origin": EVIL, "Content-Type": "application/json"}
            r = http.post("/api/v1/messages/embed", content=BODY, headers=evil)
            assert r.status_code == 403
            assert "access-control-allow-origin" not in r.headers
    finally:
        srv.stop()


def test_test_endpoints_can_be_turned_off(tmp_path: Path) -> None:
    srv = start_server(tmp_path / "off.db", env={"TEST_ENDPOINTS": "false"})
    try:
        with httpx.Client(base_url=srv.http, timeout=10) as http:
            for path in ("/api/v1/test/message", "/api/v1/test/comment"):
                r = http.get(path)
                assert r.status_code == 404 and r.json()["code"] == "not_found"
            assert http.get("/api/v1/messages/general").json()["messages"] == []
    finally:
        srv.stop()


def test_a_refused_write_keeps_the_connection_usable(site: ServerProcess) -> None:
    """The refusal reads the body first: answered with its body unread, the connection would
    have to close, and a client reusing it meanwhile would see it drop without an answer
    (the body of a small POST often comes in a TCP segment of its own)."""
    body = BODY.encode()
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        reader = sock.makefile("rb")
        for content_type in (b"text/plain", b"application/json"):
            sock.sendall(
                b"POST /api/v1/posts HTTP/1.1\r\nHost: x\r\nOrigin: "
                + EVIL.encode()
                + b"\r\nContent-Type: "
                + content_type
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
            )
            # Not a wait for anything: a gap, so that the server has read the head (and
            # could answer) before the body arrives, the case this test is about.
            time.sleep(0.05)
            sock.sendall(body)
            assert reader.readline().startswith(b"HTTP/1.1 403")
            length = 0
            while (line := reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            reader.read(length)
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.readline().startswith(b"HTTP/1.1 200")
