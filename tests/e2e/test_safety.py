"""Markup in names, messages, titles and comments is shown as text and never runs.

Every page here is watched for JavaScript dialogs by the `browsers` fixture: an `alert`
from injected markup fails the test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Browsers, api, chat_texts, expect, join_chat, send_chat

pytestmark = pytest.mark.e2e

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"


def assert_inert(page: Any, root: str) -> None:
    """No element was made from user text inside `root`."""
    assert page.locator(f"{root} img").count() == 0
    assert page.locator(f"{root} script").count() == 0
    assert page.locator(f"{root} iframe, {root} b, {root} i, {root} svg").count() == 0


def test_markup_in_chat_is_literal_text(server: Any, browsers: Browsers) -> None:
    url = f"{server.http}/chat"
    mallory = browsers.open(url)
    victim = browsers.open(url)
    join_chat(mallory, IMG, "xss")
    join_chat(victim, "victim", "xss")
    expect(victim.locator("#members .member__name")).to_contain_text([IMG])

    mallory.locator("#composer").press_sequentially("<i>")
    expect(victim.locator("#typing")).to_have_text(f"{IMG} is typing…")
    send_chat(mallory, SCRIPT)
    send_chat(mallory, f"{IMG} <b>bold?</b> <svg onload=alert(2)>")
    api.get(
        f"{server.http}/api/v1/test/message",
        params={"room": "xss", "user": SCRIPT, "message": "<iframe src=javascript:alert(3)>"},
    )
    expected = [
        SCRIPT,
        f"{IMG} <b>bold?</b> <svg onload=alert(2)>",
        "<iframe src=javascript:alert(3)>",
    ]
    for page in (mallory, victim):
        expect(chat_texts(page)).to_have_text(expected)
        expect(page.locator("#messages .message[data-id] .message__user")).to_have_text(
            [IMG, IMG, SCRIPT]
        )
        assert_inert(page, "#messages")
        assert_inert(page, "#members")

    # Reloaded: history comes over REST and is rendered the same way.
    victim.reload()
    expect(chat_texts(victim)).to_have_text(expected)
    assert_inert(victim, "#messages")


def test_markup_in_posts_and_comments_is_literal_text(server: Any, browsers: Browsers) -> None:
    author = browsers.open(f"{server.http}/")
    author.fill("#post-title", SCRIPT)
    author.fill("#post-author", IMG)
    author.fill("#post-content", f"{IMG}\n{SCRIPT}")
    author.click("#post-submit")
    card = author.locator("#posts .post").first
    expect(card.locator(".post__link")).to_have_text(SCRIPT)
    expect(card.locator(".post__author")).to_have_text(IMG)
    assert_inert(author, "#posts")

    # Server-rendered (Jinja autoescape) on reload.
    author.reload()
    card = author.locator("#posts .post").first
    expect(card.locator(".post__link")).to_have_text(SCRIPT)
    expect(card.locator(".post__excerpt")).to_have_text(f"{IMG}\n{SCRIPT}")
    assert_inert(author, "#posts")

    post_url = f"{server.http}{card.locator('.post__link').get_attribute('href')}"
    reader = browsers.open(post_url)
    author.goto(post_url)
    expect(author.locator("h1")).to_have_text(SCRIPT)
    expect(author.locator(".article__content")).to_have_text(f"{IMG}\n{SCRIPT}")
    for page in (author, reader):
        expect(page.locator("#comments-section")).to_have_attribute("data-live", "true")

    author.fill("#comment-user", SCRIPT)
    author.fill("#comment-text", IMG)
    author.click("#comment-submit")
    for page in (author, reader):
        expect(page.locator("#comments .comment[data-id] .comment__text")).to_have_text([IMG])
        expect(page.locator("#comments .comment[data-id] .comment__user")).to_have_text([SCRIPT])
        assert_inert(page, "#comments")
        assert_inert(page, "#post")
    reader.reload()
    expect(reader.locator("#comments .comment[data-id] .comment__text")).to_have_text([IMG])
    assert_inert(reader, "#comments")
