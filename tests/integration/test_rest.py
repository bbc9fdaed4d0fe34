"""REST and pages against the real server."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import datetime

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.integration.wsclient import Client


@pytest.fixture
def http(server: ServerProcess):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


def room_name() -> str:
    return "rest-" + uuid.uuid4().hex[:8]


def test_health_checks_the_database(http: httpx.Client) -> None:
    r = http.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))


def test_history_is_newest_50_in_chronological_order(http: httpx.Client) -> None:
    room = room_name()
    for i in range(60):
        r = http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": f"m{i}"})
        assert r.status_code == 201, r.text
    body = http.get(f"/api/v1/messages/{room}").json()
    assert body["count"] == 50 and body["has_more"] is True
    assert [m["message"] for m in body["messages"]] == [f"m{i}" for i in range(10, 60)]
    body = http.get(f"/api/v1/messages/{room}", params={"limit": 5}).json()
    assert [m["message"] for m in body["messages"]] == [f"m{i}" for i in range(55, 60)]
    first = body["messages"][0]["id"]
    older = http.get(f"/api/v1/messages/{room}", params={"limit": 5, "before": first}).json()
    assert [m["message"] for m in older["messages"]] == [f"m{i}" for i in range(50, 55)]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "-1"),
        ("limit", "1001"),
        ("limit", "abc"),
        ("limit", "1.5"),
        ("limit", "99999999999999999999"),
        ("before", "9223372036854775808"),  # past SQLite's 64-bit integers
        ("after", "-1"),
    ],
)
def test_history_parameter_nonsense_is_a_400(http: httpx.Client, param: str, value: str) -> None:
    r = http.get("/api/v1/messages/general", params={param: value})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid_field" and param in body["message"]


def test_unknown_room_has_empty_history(http: httpx.Client) -> None:
    body = http.get(f"/api/v1/messages/{room_name()}").json()
    assert body["messages"] == [] and body["count"] == 0 and body["has_more"] is False


def test_original_test_endpoints(http: httpx.Client) -> None:
    room = room_name()
    r = http.get(
        "/api/v1/test/message", params={"room": room, "message": "Hello", "user": "testuser"}
    )
    assert r.status_code == 200
    msg = r.json()["message"]
    assert msg["room"] == room and msg["user"] == "testuser" and msg["message"] == "Hello"
    history = http.get(f"/api/v1/messages/{room}", params={"limit": 50}).json()["messages"]
    assert history == [msg]

    r = http.get(
        "/api/v1/test/comment",
        params={"post_id": "1", "comment": "Great post", "user": "commenter"},
    )
    assert r.status_code == 200
    comment = r.json()["comment"]
    assert comment["post_id"] == 1 and comment["comment"] == "Great post"
    post = http.get("/api/v1/posts/1").json()
    assert comment in post["comments"]

    r = http.get("/api/v1/test/comment", params={"post_id": "424242", "comment": "x", "user": "u"})
    assert r.status_code == 404 and r.json()["code"] == "post_not_found"
    r = http.get("/api/v1/test/comment", params={"post_id": "one", "comment": "x", "user": "u"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field"
    r = http.get("/api/v1/test/message", params={"room": room, "message": " ", "user": "u"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_field"
    r = http.get("/api/v1/test/message", params={"room": room, "message": "m" * 4001, "user": "u"})
    assert r.status_code == 413 and r.json()["code"] == "too_large"


def test_original_readme_curl_examples(server: ServerProcess) -> None:
    """The original README's curl lines, run by curl itself."""
    base = server.http
    cases = [
        f"{base}/api/v1/test/message?room=general&message=Hello&user=testuser",
        # The original writes `comment=Great post` with a raw space, which curl 7.88 refuses
        # before sending anything (exit 3, on any server); the encoded form is what works.
        f"{base}/api/v1/test/comment?post_id=1&comment=Great%20post&user=commenter",
        f"{base}/api/v1/messages/general?limit=50",
        f"{base}/api/v1/health",
        f"{base}/api/v1/stats",
    ]
    for url in cases:
        out = subprocess.run(
            ["curl", "-sS", "-f", url], capture_output=True, text=True, timeout=10, check=False
        )
        assert out.returncode == 0, (url, out.stderr)
        assert out.stdout.startswith("{"), out.stdout


def test_stats_counts_connections_rooms_and_storage(http: httpx.Client) -> None:
    body = http.get("/api/v1/stats").json()
    for key in (
        "connections",
        "rooms",
        "members",
        "messages_stored",
        "comments_stored",
        "uptime_seconds",
    ):
        assert key in body
    assert set(body["connections"]) >= {"ws_fast", "ws_http", "total"}
    before = body["messages_stored"]
    http.get("/api/v1/test/message", params={"room": room_name(), "message": "x", "user": "u"})
    assert http.get("/api/v1/stats").json()["messages_stored"] == before + 1


def test_posts_create_list_get_and_comment(http: httpx.Client) -> None:
    r = http.post("/api/v1/posts", json={"title": "Hi", "content": "Body", "author": "me"})
    assert r.status_code == 201
    post = r.json()
    assert post["title"] == "Hi" and post["comment_count"] == 0
    listed = http.get("/api/v1/posts").json()["posts"]
    assert listed[0]["id"] == post["id"]  # newest first
    r = http.post(f"/api/v1/posts/{post['id']}/comments", json={"user": "u", "comment": "first"})
    assert r.status_code == 201 and r.json()["comment"] == "first"
    got = http.get(f"/api/v1/posts/{post['id']}").json()
    assert got["post"]["comment_count"] == 1 and got["comments"][0]["comment"] == "first"
    assert (
        http.get(f"/api/v1/posts/{post['id']}/comments").json()["comments"][0]["comment"] == "first"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/api/v1/posts", {"title": "", "content": "c"}, 400, "invalid_field"),
        ("post", "/api/v1/posts", {"title": "t"}, 400, "invalid_field"),
        (
            "post",
            "/api/v1/posts",
            {"title": "t", "content": "c", "author": "\x01"},
            400,
            "invalid_field",
        ),
        ("get", "/api/v1/posts/999999", None, 404, "post_not_found"),
        ("get", "/api/v1/posts/abc", None, 400, "invalid_field"),
        (
            "post",
            "/api/v1/posts/999999/comments",
            {"user": "u", "comment": "c"},
            404,
            "post_not_found",
        ),
        ("post", "/api/v1/messages/general", {"user": "u"}, 400, "invalid_field"),
        ("post", "/api/v1/messages/general", {"user": "", "message": "m"}, 400, "invalid_field"),
        ("get", "/api/v1/nothing-here", None, 404, "not_found"),
    ],
)
def test_rest_errors_have_a_code_and_a_message(
    http: httpx.Client, method: str, path: str, body: object, status: int, code: str
) -> None:
    r = http.request(method.upper(), path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and r.json()["message"]


def test_invalid_json_body_is_a_400(http: httpx.Client) -> None:
    r = http.post(
        "/api/v1/messages/general", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_json", r.text


def test_pages_render_and_escape(http: httpx.Client) -> None:
    hostile = "<script>alert(1)</script>"
    post = http.post(
        "/api/v1/posts", json={"title": hostile, "content": hostile, "author": "x"}
    ).json()
    http.post(f"/api/v1/posts/{post['id']}/comments", json={"user": hostile, "comment": hostile})
    for path in ("/", "/chat", f"/post/{post['id']}"):
        r = http.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert hostile not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in http.get(f"/post/{post['id']}").text
    assert "&lt;script&gt;" in http.get("/").text


@pytest.mark.parametrize("path", ["/post/999999", "/post/abc", "/no-such-page"])
def test_missing_pages_get_a_readable_404(http: httpx.Client, path: str) -> None:
    r = http.get(path)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "not" in r.text.lower()


def test_static_files_are_served(http: httpx.Client) -> None:
    r = http.get("/static/css/app.css")
    assert r.status_code == 200 and "text/css" in r.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    ["/", "/chat", "/post/1", "/api/v1/health", "/api/v1/messages/general", "/static/js/chat.js"],
)
def test_head_answers_where_get_does(http: httpx.Client, path: str) -> None:
    got = http.get(path)
    head = http.head(path)
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))


def test_head_never_stores_through_a_test_endpoint(http: httpx.Client) -> None:
    room = room_name()
    r = http.head("/api/v1/test/message", params={"room": room})
    assert r.status_code == 405
    assert http.get(f"/api/v1/messages/{room}").json()["messages"] == []


async def test_the_newest_page_never_misses_a_committed_message(
    http: httpx.Client, server: ServerProcess
) -> None:
    """History's newest page is kept as encoded bytes between commits: every message
    acknowledged (on the socket or over REST) is in the next page read, while other readers
    keep asking for the same page, so that copies are made all along."""
    room = room_name()
    stop = asyncio.Event()

    async def reader() -> None:
        async with httpx.AsyncClient(base_url=server.http) as client:
            while not stop.is_set():
                await client.get(f"/api/v1/messages/{room}", params={"limit": 5})

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join(room, "u")
            for i in range(60):
                if i % 2:
                    await c.say(room, "u", f"m{i}")
                    acked = (await c.expect("CHAT_MESSAGE"))["id"]
                else:
                    r = http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": "r"})
                    acked = r.json()["id"]
                    await c.expect("CHAT_MESSAGE")
                for limit in (5, 50):
                    page = http.get(f"/api/v1/messages/{room}", params={"limit": limit}).json()
                    assert page["messages"][-1]["id"] == acked, (i, limit)
    finally:
        stop.set()
        await asyncio.gather(*readers)
