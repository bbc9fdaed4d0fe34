"""Usable with a keyboard and a screen reader: names for every control, live regions, a
chat that can be joined and used without a mouse, and no axe-core finding (contrast
included) in the light or the dark color scheme."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import (
    Browsers,
    api,
    chat_texts,
    expect,
    expect_accessible,
    expect_joined,
    send_chat,
)

pytestmark = pytest.mark.e2e

UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, textarea, select, button')]
  .filter(el => !el.hidden && el.type !== 'hidden')
  .filter(el => !((el.labels && el.labels.length) || el.getAttribute('aria-label')
                  || el.getAttribute('aria-labelledby') || (el.textContent || '').trim()))
  .map(el => el.outerHTML.slice(0, 120))"""


def focused_id(page: Any) -> str:
    return str(page.evaluate("() => document.activeElement && document.activeElement.id"))


def tab_to(page: Any, element_id: str, limit: int = 25) -> None:
    for _ in range(limit):
        if focused_id(page) == element_id:
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id} (stuck at #{focused_id(page)})")


def test_every_control_has_a_name_and_updates_are_announced(
    server: Any, browsers: Browsers
) -> None:
    for path, live in (("/chat", "#messages"), ("/post/1", "#comments"), ("/", None)):
        page = browsers.open(server.http + path)
        assert page.evaluate(UNNAMED_CONTROLS) == [], path
        assert page.evaluate("() => document.documentElement.lang") == "en"
        if live is not None:
            expect(page.locator(live)).to_have_attribute("aria-live", "polite")


def test_chat_works_with_the_keyboard_alone(server: Any, browsers: Browsers) -> None:
    room = "kbd-" + uuid.uuid4().hex[:6]
    page = browsers.open(server.http + "/chat")
    tab_to(page, "name")
    page.keyboard.type("keyboard user")
    page.keyboard.press("Tab")
    assert focused_id(page) == "room"
    page.keyboard.type(room)
    page.keyboard.press("Tab")
    assert focused_id(page) == "join"
    page.keyboard.press("Enter")
    expect_joined(page, room)
    tab_to(page, "composer")
    page.keyboard.type("typed without a mouse")
    page.keyboard.press("Enter")
    expect(page.locator("#messages .message").last).to_contain_text("typed without a mouse")


def test_axe_finds_nothing_in_light_or_dark(server: Any, browsers: Browsers) -> None:
    """Each page in the states people see most: the post live ("Connected"), the chat with
    someone else's message and one's own (its timestamp on the accent), the current page's
    nav link. The unhappy states have axe checks in test_unhappy_paths.py."""
    room = "axe-" + uuid.uuid4().hex[:6]
    page = browsers.open(server.http + "/")
    expect(page.locator("#posts .post")).not_to_have_count(0)
    expect_accessible(page)

    page.goto(server.http + "/post/1")
    expect(page.locator("#comments-section")).to_have_attribute("data-live", "true")
    expect_accessible(page)

    r = api.post(f"{server.http}/api/v1/messages/{room}", json={"user": "bo", "message": "hi"})
    assert r.status_code == 201, r.text
    page = browsers.open(server.http + "/chat", name="ada", room=room)
    expect_joined(page, room)
    send_chat(page, "hello bo")
    expect(chat_texts(page)).to_have_text(["hi", "hello bo"])
    expect(page.locator("#messages .message.own time")).to_have_count(1)
    expect_accessible(page)
