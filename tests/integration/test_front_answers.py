"""PORT's front answers health and the newest history pages itself (answers.py), the rest is
Granian's: on one kept-alive connection, pipelined or not, both must look like one server."""

from __future__ import annotations

import json
import socket
import uuid

import httpx
import pytest

from tests.conftest import ServerProcess

TIMEOUT = 10


def room_name() -> str:
    return "front-" + uuid.uuid4().hex[:8]


class Raw:
    """An HTTP/1.1 client on one socket, reading responses by their Content-Length."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        self.pending = b""

    def send(self, *requests: bytes) -> None:
        self.sock.sendall(b"".join(requests))

    def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.pending:
            self._more()
        top, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = top.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        size = 0 if head_only else int(headers["content-length"])
        while len(self.pending) < size:
            self._more()
        body, self.pending = self.pending[:size], self.pending[size:]
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        self.sock.settimeout(TIMEOUT)
        return self.sock.recv(1) == b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        assert data, f"the server closed the connection; left: {self.pending!r}"
        self.pending += data

    def close(self) -> None:
        self.sock.close()


def get(path: str, extra: str = "", method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def post(path: str, body: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


@pytest.fixture
def raw(server: ServerProcess):  # type: ignore[no-untyped-def]
    client = Raw(server)
    yield client
    client.close()


def store(server: ServerProcess, room: str, *texts: str) -> None:
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
        for text in texts:
            r = http.post(f"/api/v1/messages/{room}", json={"user": "u", "message": text})
            assert r.status_code == 201, r.text


def test_a_kept_alive_connection_sees_each_committed_message_in_the_next_page(
    raw: Raw, server: ServerProcess
) -> None:
    room = room_name()
    for n in range(1, 4):
        store(server, room, f"m{n}")  # committed and acknowledged on another connection
        raw.send(get(f"/api/v1/messages/{room}?limit=2"))
        status, headers, body = raw.response()
        assert status == 200 and headers["content-type"] == "application/json"
        page = httpx.Response(200, content=body).json()
        assert [m["message"] for m in page["messages"]] == [f"m{i}" for i in range(1, n + 1)][-2:]
        assert page["count"] == min(n, 2) and page["has_more"] is (n > 2)


def test_pipelined_requests_are_answered_in_order_across_both_paths(
    raw: Raw, server: ServerProcess
) -> None:
    """Health and a page (the front's), stats (Granian's: from there on the connection is a
    relay), health again: four answers, in the order asked."""
    room = room_name()
    store(server, room, "hello")
    raw.send(
        get("/api/v1/health"),
        get(f"/api/v1/messages/{room}"),
        get("/api/v1/stats"),
        get("/api/v1/health"),
    )
    answers = [raw.response() for _ in range(4)]
    assert [a[0] for a in answers] == [200, 200, 200, 200]
    bodies = [json.loads(a[2]) for a in answers]
    assert bodies[0]["status"] == "ok" and bodies[3]["status"] == "ok"
    assert [m["message"] for m in bodies[1]["messages"]] == ["hello"]
    assert "connections" in bodies[2]


def test_a_write_on_the_connection_then_reads_on_it_see_the_write(
    raw: Raw, server: ServerProcess
) -> None:
    room = room_name()
    raw.send(get(f"/api/v1/messages/{room}"))
    status, _, body = raw.response()
    assert status == 200 and b'"count":0' in body
    raw.send(post(f"/api/v1/messages/{room}", '{"user":"u","message":"mine"}'))
    status, _, body = raw.response()
    assert status == 201, body
    raw.send(get(f"/api/v1/messages/{room}"))
    status, _, body = raw.response()
    assert status == 200 and b'"message":"mine"' in body


def test_head_has_the_get_headers_and_no_body(raw: Raw, server: ServerProcess) -> None:
    room = room_name()
    store(server, room, "x" * 300)
    for path in ("/api/v1/health", f"/api/v1/messages/{room}"):
        raw.send(get(path))
        status, got, body = raw.response()
        raw.send(get(path, method="HEAD"))
        head_status, head, nothing = raw.response(head_only=True)
        assert status == head_status == 200 and nothing == b""
        assert head["content-length"] == got["content-length"] == str(len(body))
        assert head["content-type"] == got["content-type"] == "application/json"
        assert "date" in head
    raw.send(get("/api/v1/health"))  # the connection is still in step
    assert raw.response()[0] == 200


def test_connection_close_is_honoured(raw: Raw) -> None:
    raw.send(get("/api/v1/health", "Connection: close\r\n"))
    status, headers, _ = raw.response()
    assert status == 200 and headers["connection"] == "close"
    assert raw.closed_by_server()


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/messages/general?limit=0", 400, "invalid_field"),
        ("/api/v1/messages/general?limit=99999", 400, "invalid_field"),
        ("/api/v1/posts/999999/comments", 404, "post_not_found"),
        ("/api/v1/posts/abc/comments", 400, "invalid_field"),
    ],
)
def test_what_the_front_does_not_answer_keeps_litestars_errors(
    raw: Raw, path: str, status: int, code: str
) -> None:
    raw.send(get(path))
    got, _, body = raw.response()
    assert got == status and f'"code":"{code}"'.encode() in body, body


def test_percent_encoded_rooms_and_other_parameters_still_answer(
    raw: Raw, server: ServerProcess
) -> None:
    room = "front ü " + uuid.uuid4().hex[:6]
    store(server, room, "a", "b", "c")
    encoded = httpx.URL(f"/api/v1/messages/{room}").raw_path.decode()
    raw.send(get(encoded))
    status, _, body = raw.response()
    assert status == 200 and body.count(b'"message"') == 3
    raw.send(get(encoded + "?limit=2&before=999999999"))
    status, _, body = raw.response()
    assert status == 200 and body.count(b'"message"') == 2


def test_cors_still_answers_a_listed_origin(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import start_server

    db = tmp_path_factory.mktemp("cors") / "chat.db"
    server = start_server(db, env={"ALLOWED_ORIGINS": "https://app.example"})
    try:
        r = httpx.get(
            f"{server.http}/api/v1/health",
            headers={"Origin": "https://app.example"},
            timeout=TIMEOUT,
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
    finally:
        server.stop()
