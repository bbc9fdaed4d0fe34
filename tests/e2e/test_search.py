"""The chat page's search box in real Chromium: hits with their words marked, hostile text
shown as text, a hit in the room you are in shown in place, more pages on request."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.e2e.conftest import (
    Browsers,
    api,
    chat_texts,
    expect,
    expect_accessible,
    join_chat,
    send_chat,
)

pytestmark = pytest.mark.e2e


def post(http: str, room: str, text: str) -> int:
    r = api.post(f"{http}/api/v1/messages/{room}", json={"user": "Ana", "message": text})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_the_search_box_finds_and_marks_and_shows_hostile_text_as_text(
    server: Any, browsers: Browsers
) -> None:
    room = "find-" + uuid.uuid4().hex[:6]
    w = "zq" + uuid.uuid4().hex[:8]
    first = post(server.http, room, f"the {w} went fine")
    post(server.http, room, f'<img src=x onerror="document.title=1"> {w} <b>bold</b>')
    post(server.http, "elsewhere-" + room, f"{w} in another room")
    page = browsers.open(f"{server.http}/chat")
    join_chat(page, "Sam", room)
    page.fill("#search-q", w)
    page.press("#search-q", "Enter")
    hits = page.locator("#search-results .search-hit")
    expect(hits).to_have_count(2)  # this room's only, once joined
    expect(page.locator("#search-status")).to_have_text("2 results")
    expect(hits.locator("mark")).to_have_text([w, w])
    hostile = hits.filter(has_text="onerror")
    expect(hostile.locator(".search-hit__text")).to_contain_text('<img src=x onerror="')
    expect(hostile.locator("img, b")).to_have_count(0)  # no markup came to life
    assert page.title() != "1"
    # A hit of this room shows its message in place.
    hits.filter(has_text="went fine").click()
    expect(page.locator(f'.message[data-id="{first}"]')).to_have_class("message found")
    expect_accessible(page)


def test_more_results_page_in_and_nothing_found_says_so(server: Any, browsers: Browsers) -> None:
    room = "find-" + uuid.uuid4().hex[:6]
    w = "zp" + uuid.uuid4().hex[:8]
    for i in range(23):
        post(server.http, room, f"{w} number {i}")
    page = browsers.open(f"{server.http}/chat")
    join_chat(page, "Sam", room)
    page.fill("#search-q", w)
    page.click("#search-go")
    hits = page.locator("#search-results .search-hit")
    expect(hits).to_have_count(20)
    expect(page.locator("#search-status")).to_have_text("20+ results")
    page.click("#search-more")
    expect(hits).to_have_count(23)
    expect(page.locator("#search-more")).to_be_hidden()
    page.fill("#search-q", "nothingatall" + w)
    page.press("#search-q", "Enter")
    expect(page.locator("#search-status")).to_contain_text("No messages with")
    expect(hits).to_have_count(0)


def test_without_search_the_chat_page_has_no_search_box_and_chats_all_the_same(
    tmp_path: Path, browsers: Browsers
) -> None:
    """SEARCH=false: no search card, and the page's script runs on without it (the
    `browsers` fixture fails the test on any uncaught error in the page)."""
    server = start_server(tmp_path / "chat.db", env={"SEARCH": "false"})
    try:
        page = browsers.open(f"{server.http}/chat")
        join_chat(page, "Sam", "quiet")
        expect(page.locator(".search")).to_have_count(0)
        send_chat(page, "no search here")
        expect(chat_texts(page)).to_have_text(["no search here"])
        expect_accessible(page)
    finally:
        server.stop()
