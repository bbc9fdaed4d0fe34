"""A 360 px phone gets every page without horizontal scrolling, long words included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    Browsers,
    api,
    chat_texts,
    expect,
    expect_joined,
    no_horizontal_scroll,
    send_chat,
)

pytestmark = pytest.mark.e2e

LONG = "x" * 300
URL = "https://example.com/" + "very-long-path-segment/" * 12


@pytest.fixture(scope="module")
def long_post(server: Any) -> int:
    r = api.post(
        f"{server.http}/api/v1/posts",
        json={"title": "T" * 200, "content": f"{LONG}\n{URL}", "author": "N" * 64},
    )
    assert r.status_code == 201, r.text
    post_id = int(r.json()["id"])
    r = api.post(
        f"{server.http}/api/v1/posts/{post_id}/comments",
        json={"user": "U" * 64, "comment": f"{LONG} {URL}"},
    )
    assert r.status_code == 201, r.text
    return post_id


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_no_horizontal_scroll(
    server: Any, browsers: Browsers, long_post: int, viewport: dict[str, int]
) -> None:
    name = "W" * 64
    room = "R" * 60 + str(viewport["width"])  # one room per case: same module server
    page = browsers.open(f"{server.http}/chat", name=name, room=room, viewport=viewport)
    expect_joined(page, room)
    send_chat(page, LONG)
    send_chat(page, URL)
    api.get(
        f"{server.http}/api/v1/test/message",
        params={"room": room, "user": "V" * 64, "message": f"{LONG}{URL}"},
    )
    expect(chat_texts(page)).to_have_count(3)
    width, inner = no_horizontal_scroll(page)
    assert width <= inner, f"/chat is {width}px wide in a {inner}px window"

    for path in ("/", f"/post/{long_post}", "/post/424242"):
        page.goto(f"{server.http}{path}")
        expect(page.locator("h1").first).to_be_visible()
        width, inner = no_horizontal_scroll(page)
        assert width <= inner, f"{path} is {width}px wide in a {inner}px window"
