"""Property tests against the real server: whatever the REST parameters and WebSocket frames
are, the answer is a success or a documented error, never a crash."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ServerProcess

DOCUMENTED = {
    "invalid_json",
    "invalid_field",
    "invalid_time",
    "too_large",
    "not_found",
    "post_not_found",
    "method_not_allowed",
}
PROPS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

junk = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "0", "-0", "1e999", "NaN", "2026-11-25T22:07:14Z", "1764108434"]),
)


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        body = r.json()
        assert body["code"] in DOCUMENTED, body
        assert isinstance(body["message"], str) and body["message"]


@pytest.fixture(scope="module")
def http(server: ServerProcess):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.http, timeout=10) as client:
        yield client


@PROPS
@given(
    room=st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")),
    params=st.dictionaries(
        st.sampled_from(["limit", "before", "after", "since", "until", "x"]), junk, max_size=4
    ),
)
def test_history_parameters_never_crash(http: httpx.Client, room: str, params: dict) -> None:
    check(http.get(f"/api/v1/messages/{quote(room, safe='')}", params=params))


@PROPS
@given(post_id=junk, params=st.dictionaries(st.sampled_from(["limit", "before", "since"]), junk))
def test_post_parameters_never_crash(http: httpx.Client, post_id: str, params: dict) -> None:
    check(http.get(f"/api/v1/posts/{quote(post_id, safe='')}/comments", params=params))
    check(http.get("/api/v1/test/comment", params={"post_id": post_id, "comment": "c"}))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@PROPS
@given(body=json_values)
def test_post_bodies_never_crash(http: httpx.Client, body: object) -> None:
    for path in ("/api/v1/messages/props", "/api/v1/posts", "/api/v1/posts/1/comments"):
        check(
            http.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        )


@PROPS
@given(raw=st.binary(max_size=200))
def test_raw_bodies_never_crash(http: httpx.Client, raw: bytes) -> None:
    check(
        http.post(
            "/api/v1/messages/props", content=raw, headers={"content-type": "application/json"}
        )
    )


WS_CODES = {
    "invalid_json",
    "invalid_field",
    "unknown_type",
    "too_large",
    "not_joined",
    "post_not_found",
    "invalid_time",
    "unsupported_data",
    "too_many_rooms",
}
event_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "JOIN_ROOM",
                "LEAVE_ROOM",
                "CHAT_MESSAGE",
                "POST_COMMENT",
                "TYPING",
                "HISTORY",
                "JOIN_POST",
                "LEAVE_POST",
                "NOPE",
            ]
        )
    },
    optional={
        "room": json_values,
        "user": json_values,
        "message": json_values,
        "post_id": json_values,
        "last_id": json_values,
        "limit": json_values,
        "since": json_values,
    },
)


@pytest.fixture(scope="module")
def ws(server: ServerProcess):  # type: ignore[no-untyped-def]
    from websockets.sync.client import connect

    with connect(server.ws_fast, max_size=None) as conn:
        yield conn


@PROPS
@given(
    frame=st.one_of(
        st.binary(max_size=300), json_values.map(json.dumps), event_like.map(json.dumps)
    )
)
def test_any_frame_gets_a_documented_answer(ws, frame: bytes | str) -> None:  # type: ignore[no-untyped-def]
    ws.send(frame)
    # Every frame gets exactly one direct answer (an ERROR or the event's reply), except a
    # stored message or a TYPING, which may have none: a HISTORY marks the end of the answers.
    ws.send(
        json.dumps({"type": "HISTORY", "room": "props-marker", "limit": 1, "request_id": "end"})
    )
    while True:
        event = json.loads(ws.recv(timeout=10))
        if event["type"] == "ERROR":
            assert event["code"] in WS_CODES, event
        if event.get("request_id") == "end":
            break
