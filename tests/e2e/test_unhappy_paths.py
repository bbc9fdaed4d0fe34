"""What a person sees when sending goes wrong: a send the server refuses, text over the
limit, no connection. Each state is also checked with axe-core, light and dark."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TIMEOUT, start_server
from tests.e2e.conftest import (
    KEEP_SOCKETS,
    Browsers,
    api,
    chat_texts,
    drop_socket,
    expect,
    expect_accessible,
    expect_joined,
    send_chat,
)

pytestmark = pytest.mark.e2e

RECONNECT_MS = TIMEOUT * 2000  # a restart: the pages' backoff runs up to 5 s between tries


def open_recording(browsers: Browsers, url: str, frames: list[str], **prefs: str) -> Any:
    """A page whose sent WebSocket frames land in `frames` and whose socket can be dropped."""
    page = browsers.open("about:blank", **prefs)
    page.add_init_script(script=KEEP_SOCKETS)
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    page.goto(url)
    return page


def sends_of(frames: list[str], client_id: str) -> int:
    return sum(1 for f in frames if json.loads(f).get("client_id") == client_id)


def test_a_refused_send_is_final_shown_on_it_and_never_resent(
    tmp_path: Path, browsers: Browsers
) -> None:
    """The server's limit is lowered while the pages are open (they still count to 4,000):
    what they queued while it restarted is refused on arrival. Each refused item says why,
    offers Edit and Discard, and is not sent again, not even after a reconnection."""
    db = tmp_path / "chat.db"
    first = start_server(db)
    second = None
    room = "refused"
    try:
        chat_frames: list[str] = []
        post_frames: list[str] = []
        chat = open_recording(browsers, f"{first.http}/chat", chat_frames, name="ada", room=room)
        post = open_recording(browsers, f"{first.http}/post/1", post_frames, name="ada")
        expect_joined(chat, room)
        live = post.locator("#comments-section")
        expect(live).to_have_attribute("data-live", "true")

        first.stop()
        expect(chat.locator("#chat-app")).to_have_attribute("data-joined", "false")
        expect(live).to_have_attribute("data-live", "false")
        too_long = ["a" * 60, "b" * 70]
        for text in too_long:
            send_chat(chat, text)
        post.fill("#comment-text", "c" * 80)
        post.click("#comment-submit")
        expect(chat.locator("#messages .message.pending")).to_have_count(2)

        second = start_server(
            db, port=first.port, ws_port=first.ws_port, env={"MAX_MESSAGE_CHARS": "50"}
        )
        refused = chat.locator("#messages .message.refused")
        expect(refused).to_have_count(2, timeout=RECONNECT_MS)
        expect(chat.locator("#messages .message.pending")).to_have_count(0)
        expect(refused.locator(".message__status")).to_have_text(["Not sent", "Not sent"])
        expect(refused.locator(".refusal__reason")).to_have_text(
            [
                "Not sent: message is 60 characters, over the limit of 50.",
                "Not sent: message is 70 characters, over the limit of 50.",
            ]
        )
        expect(refused.first.get_by_role("button", name="Edit")).to_be_visible()
        expect(refused.first.get_by_role("button", name="Discard")).to_be_visible()
        refused_comment = post.locator("#comments .comment.refused")
        expect(refused_comment.locator(".refusal__reason")).to_have_text(
            "Not posted: comment is 80 characters, over the limit of 50.", timeout=RECONNECT_MS
        )
        expect(post.locator("#comments .comment.pending")).to_have_count(0)
        for page in (chat, post):
            expect_accessible(page)

        # Dropped and back: the outbox resends what is unconfirmed, and the refused are not.
        ids = refused.evaluate_all("els => els.map(e => e.dataset.clientId)")
        comment_id = refused_comment.get_attribute("data-client-id")
        drop_socket(chat)
        drop_socket(post)
        expect_joined(chat, room)
        expect(live).to_have_attribute("data-live", "true")
        send_chat(chat, "short enough")
        expect(chat_texts(chat)).to_have_text(["short enough"])
        post.fill("#comment-text", "also short")
        post.click("#comment-submit")
        expect(post.locator("#comments .comment[data-id] .comment__text").last).to_have_text(
            "also short"
        )
        assert [sends_of(chat_frames, i) for i in ids] == [1, 1]
        assert sends_of(post_frames, str(comment_id)) == 1
        # The refused stay last, below what was sent after them, until dealt with.
        expect(chat.locator("#messages .message").last).to_have_class(re.compile(r"\brefused\b"))

        # Edit puts the text back into the composer; Discard drops it.
        refused.first.get_by_role("button", name="Edit").click()
        expect(chat.locator("#composer")).to_have_value(too_long[0])
        expect(chat.locator("#composer")).to_be_focused()
        refused.first.get_by_role("button", name="Discard").click()
        expect(refused).to_have_count(0)
        refused_comment.get_by_role("button", name="Edit").click()
        expect(post.locator("#comment-text")).to_have_value("c" * 80)
        expect(refused_comment).to_have_count(0)

        stored = api.get(f"{second.http}/api/v1/messages/{room}").json()["messages"]
        assert [m["message"] for m in stored] == ["short enough"]
    finally:
        if second is not None:
            second.kill()
        first.kill()


def test_text_over_the_limit_is_counted_not_cut_and_not_sent(
    tmp_path: Path, browsers: Browsers
) -> None:
    """The count appears from 80% of the server's limit (MAX_MESSAGE_CHARS, here 120);
    over it, it is an error and sending waits. Pasted text is kept whole."""
    server = start_server(tmp_path / "chat.db", env={"MAX_MESSAGE_CHARS": "120"})
    room = "limits"
    try:
        chat = browsers.open(f"{server.http}/chat", name="ada", room=room)
        expect_joined(chat, room)
        composer = chat.locator("#composer")
        count = chat.locator("#composer-length")
        composer.fill("x" * 95)
        expect(count).to_be_hidden()
        composer.fill("x" * 100)
        expect(count).to_have_text("100 / 120")
        expect(count).not_to_have_class(re.compile(r"\bover\b"))
        composer.fill("😀" * 110)  # two UTF-16 units each; the server counts characters
        expect(count).to_have_text("110 / 120")
        expect(chat.locator("#send")).to_be_enabled()

        pasted = "y" * 1000 + "END"
        composer.fill(pasted)
        expect(composer).to_have_value(pasted)  # nothing cut
        expect(count).to_have_text("1,003 / 120: 883 over the limit")
        expect(count).to_have_class(re.compile(r"\bover\b"))
        expect(composer).to_have_attribute("aria-invalid", "true")
        expect(chat.locator("#send")).to_be_disabled()
        composer.press("Enter")
        expect(composer).to_have_value(pasted)
        assert chat.locator("#messages .message").count() == 0
        expect_accessible(chat)

        composer.fill("z" * 120)
        expect(chat.locator("#send")).to_be_enabled()
        composer.press("Enter")
        expect(chat_texts(chat)).to_have_text(["z" * 120])
        expect(count).to_be_hidden()

        post = browsers.open(f"{server.http}/post/1", name="ada")
        expect(post.locator("#comments-section")).to_have_attribute("data-live", "true")
        post.fill("#comment-text", pasted)
        expect(post.locator("#comment-length")).to_have_text("1,003 / 120: 883 over the limit")
        expect(post.locator("#comment-submit")).to_be_disabled()
        post.press("#comment-text", "Control+Enter")
        expect(post.locator("#comment-status")).to_have_text(
            "Your comment is over the limit: shorten it first."
        )
        assert post.locator("#comments .comment:not([data-id])").count() == 0
        expect(post.locator("#comment-text")).to_have_value(pasted)

        # A post's own limits (title 200, text 20,000) work the same way.
        index = browsers.open(f"{server.http}/")
        index.fill("#post-content", "w" * 20001)
        expect(index.locator("#post-content-length")).to_have_text(
            "20,001 / 20,000: 1 over the limit"
        )
        expect(index.locator("#post-submit")).to_be_disabled()
        index.fill("#post-content", "w" * 20000)
        expect(index.locator("#post-submit")).to_be_enabled()
        index.fill("#post-title", "t" * 201)
        expect(index.locator("#post-title-length")).to_have_text("201 / 200: 1 over the limit")
        expect(index.locator("#post-submit")).to_be_disabled()
    finally:
        server.kill()
