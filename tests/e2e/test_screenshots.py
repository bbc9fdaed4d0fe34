"""Screenshots of the three pages, desktop (1280x800) and phone (360x740), written to
build/screenshots/ on every run, from a server filled with a small, realistic conversation;
`make screenshots` copies them to docs/screenshots/, the README's tracked copies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    Browsers,
    api,
    chat_texts,
    expect,
    expect_joined,
)

pytestmark = pytest.mark.e2e

ROOM = "general"
ME = "maya"
CHAT = [
    ("sam", "Morning all! Is everyone coming to the meetup?"),
    ("li", "Yes, I booked my train yesterday."),
    ("li", "Still working on my slides though."),
    (ME, "I can review them this afternoon if you like."),
    ("jordan", "Does anyone know whether the venue has a projector and a spare microphone?"),
    (ME, "It does, I checked last week."),
    (ME, "Agenda draft: https://example.com/meetup/spring/agenda"),
    ("sam", "Perfect, thanks!"),
]
POST = {
    "title": "Planning the spring meetup",
    "content": "We are picking a date for the spring meetup. Add your ideas for talks below, "
    "and come to #general to talk it over live.\n\nVenue suggestions are welcome too.",
    "author": "jordan",
}
COMMENTS = [
    ("li", "I could give a short talk on accessibility testing."),
    ("jordan", "Great, I'll put you down for the afternoon slot."),
    ("sam", "Could we stream it for people who can't travel?"),
]


@pytest.fixture(scope="module")
def filled(server: Any) -> int:
    http = server.http
    r = api.post(f"{http}/api/v1/posts", json=POST)
    assert r.status_code == 201, r.text
    post_id = int(r.json()["id"])
    for user, comment in COMMENTS:
        r = api.post(
            f"{http}/api/v1/posts/{post_id}/comments", json={"user": user, "comment": comment}
        )
        assert r.status_code == 201, r.text
    for user, message in CHAT:
        r = api.post(f"{http}/api/v1/messages/{ROOM}", json={"user": user, "message": message})
        assert r.status_code == 201, r.text
    return post_id


def shoot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), animations="disabled")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_screenshots(
    server: Any, browsers: Browsers, filled: int, viewport: dict[str, int]
) -> None:
    kind = "desktop" if viewport == DESKTOP else "phone"
    page = browsers.open(f"{server.http}/", name=ME, room=ROOM, viewport=viewport)
    expect(page.locator("#posts .post")).not_to_have_count(0)
    expect(page.locator("#post-author")).to_have_value(ME)
    shoot(page, f"index-{kind}")

    page.goto(f"{server.http}/post/{filled}")
    expect(page.locator("#comments-section")).to_have_attribute("data-live", "true")
    expect(page.locator("#comments .comment[data-id]")).to_have_count(len(COMMENTS))
    shoot(page, f"post-{kind}")

    # The chat with company: sam is in the room and typing.
    sam = browsers.open(f"{server.http}/chat", name="sam", room=ROOM)
    expect_joined(sam, ROOM)
    page.goto(f"{server.http}/chat")
    expect_joined(page, ROOM)
    expect(chat_texts(page)).to_have_count(len(CHAT))
    expect(page.locator("#members li[data-user]")).to_have_count(2)
    sam.locator("#composer").press_sequentially("On it")
    expect(page.locator("#typing")).to_have_text("sam is typing…")
    shoot(page, f"chat-{kind}")

    # The search box: this room's messages with a word.
    page.fill("#search-q", "slides")
    page.press("#search-q", "Enter")
    expect(page.locator("#search-results .search-hit mark")).to_have_text(["slides"])
    if kind == "phone":  # below the chat: scroll to the hits
        page.locator("#search-more").evaluate("e => e.parentElement.scrollIntoView(false)")
    shoot(page, f"search-{kind}")
