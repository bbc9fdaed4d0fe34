"""/ and /post/{id} in real Chromium: writing posts, live comments, the 404 page."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Browsers, api, expect

pytestmark = pytest.mark.e2e


def create_post(http: str, title: str, content: str = "Some text.", author: str = "ops") -> int:
    r = api.post(
        f"{http}/api/v1/posts", json={"title": title, "content": content, "author": author}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def add_comment(http: str, post_id: int, user: str, text: str) -> None:
    r = api.post(f"{http}/api/v1/posts/{post_id}/comments", json={"user": user, "comment": text})
    assert r.status_code == 201, r.text


def write_comment(page: Any, name: str, text: str) -> None:
    page.fill("#comment-user", name)
    page.fill("#comment-text", text)
    page.click("#comment-submit")


def comment_texts(page: Any) -> Any:
    return page.locator("#comments .comment[data-id] .comment__text")


def test_a_comment_appears_live_in_every_browser_viewing_the_post(
    server: Any, browsers: Browsers
) -> None:
    post_id = create_post(server.http, "Live comments")
    add_comment(server.http, post_id, "early", "first!")
    url = f"{server.http}/post/{post_id}"
    reader = browsers.open(url)
    writer = browsers.open(url)
    for page in (reader, writer):
        expect(page.locator("#comments-section")).to_have_attribute("data-live", "true")
        expect(comment_texts(page)).to_have_text(["first!"])

    write_comment(writer, "wren", "what a post")
    for page in (reader, writer):
        expect(comment_texts(page)).to_have_text(["first!", "what a post"])
        expect(page.locator("#comment-count")).to_have_text("2")
    expect(writer.locator("#comments .comment.pending")).to_have_count(0)
    expect(writer.locator("#comment-text")).to_have_value("")

    # Comments from elsewhere (REST) arrive too, in order; the other post's do not.
    other = create_post(server.http, "Another post")
    add_comment(server.http, other, "x", "not for this post")
    add_comment(server.http, post_id, "rest", "via REST")
    for page in (reader, writer):
        expect(comment_texts(page)).to_have_text(["first!", "what a post", "via REST"])

    # The page as the server renders it agrees, and the name was remembered.
    writer.reload()
    expect(comment_texts(writer)).to_have_text(["first!", "what a post", "via REST"])
    expect(writer.locator("#comment-user")).to_have_value("wren")


def test_writing_a_post_shows_it_first(server: Any, browsers: Browsers) -> None:
    page = browsers.open(f"{server.http}/")
    page.fill("#post-title", "Fresh from the form")
    page.fill("#post-author", "quinn")
    page.fill("#post-content", "Line one\nLine two")
    page.click("#post-submit")
    first = page.locator("#posts .post").first
    expect(first.locator(".post__link")).to_have_text("Fresh from the form")
    expect(page.locator("#post-status")).to_have_text("Published.")
    expect(page.locator("#post-title")).to_have_value("")
    first.locator(".post__link").click()
    expect(page.locator("h1")).to_have_text("Fresh from the form")
    expect(page.locator(".article__content")).to_have_text("Line one\nLine two")
    page.go_back()
    expect(page.locator("#posts .post").first.locator(".post__link")).to_have_text(
        "Fresh from the form"
    )

    # Refused input says why and keeps the text.
    page.fill("#post-title", "")
    page.fill("#post-content", "kept")
    page.click("#post-submit")
    expect(page.locator("#post-status")).to_contain_text("title")
    expect(page.locator("#post-content")).to_have_value("kept")


def test_unknown_post_is_a_readable_404(server: Any, browsers: Browsers) -> None:
    page = browsers.open("about:blank")
    response = page.goto(f"{server.http}/post/987654")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    expect(page.locator(".not-found__message")).to_contain_text("987654")
    page.click("text=See all posts")
    expect(page.locator("h1")).to_have_text("Posts")


def test_earlier_comments_load_on_demand(server: Any, browsers: Browsers) -> None:
    post_id = create_post(server.http, "A busy post")
    texts = [f"comment {i:03d}" for i in range(205)]
    for text in texts:
        add_comment(server.http, post_id, "crowd", text)
    page = browsers.open(f"{server.http}/post/{post_id}")
    expect(comment_texts(page)).to_have_count(200)  # the newest, as the server renders them
    expect(page.locator("#comment-count")).to_have_text("205")
    page.click("#load-older")
    expect(comment_texts(page)).to_have_text(texts)
    expect(page.locator("#load-older")).to_be_hidden()
