"""The pages with tokens, in real Chromium: the site's token names the visitor (no name
field), messages carry that name to the other browsers, a private room says no, a refused
token says why."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fastchat.auth import mint
from tests.conftest import ServerProcess, start_server
from tests.e2e.conftest import Browsers, api, expect, expect_joined, send_chat

pytestmark = pytest.mark.e2e

SECRET = "e2e-secret-0123456789-abcdefghijklmnopqrstuv"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"AUTH_SECRET": SECRET, "PRIVATE_ROOMS": "team-*"}
    srv = start_server(tmp_path_factory.mktemp("e2e-auth") / "chat.db", env=env)
    yield srv
    srv.stop()


def enter_room(page: Any, room: str) -> None:
    page.fill("#room", room)
    page.click("#join")


def test_a_token_names_the_visitor_and_the_others_see_that_name(
    secured: ServerProcess, browsers: Browsers
) -> None:
    room = "lobby-" + uuid.uuid4().hex[:6]
    alice = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='a1', name='Alice')}")
    bob = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='b1', name='Bob')}")
    for page, name in ((alice, "Alice"), (bob, "Bob")):
        expect(page.locator(".whoami")).to_contain_text(f"Signed in as {name}")
        expect(page.locator("#name")).to_be_hidden()  # not the visitor's to choose
        enter_room(page, room)
        expect_joined(page, room)
    expect(alice.locator('#members li[data-user="Bob"]')).to_have_count(1)
    send_chat(alice, "hello as myself")
    seen = bob.locator(".message", has_text="hello as myself")
    expect(seen).to_have_count(1)
    expect(seen).to_have_attribute("data-user", "Alice")


def test_a_private_room_says_so_and_its_member_gets_in(
    secured: ServerProcess, browsers: Browsers
) -> None:
    room = "team-" + uuid.uuid4().hex[:6]
    outsider = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='o1', name='Out')}")
    enter_room(outsider, room)
    expect(outsider.locator("#chat-empty")).to_contain_text("does not let you into")
    expect(outsider.locator("#chat-app")).to_have_attribute("data-joined", "false")
    expect(outsider.locator("#send")).to_be_disabled()
    member_token = mint(SECRET, sub="m1", name="Member", rooms=["team-*"])
    member = browsers.open(f"{secured.http}/chat?token={member_token}")
    enter_room(member, room)
    expect_joined(member, room)


def test_a_refused_token_is_explained(
    secured: ServerProcess, browsers: Browsers, tmp_path: Path
) -> None:
    expired = mint(SECRET, sub="x", name="X", ttl=60, now=time.time() - 3600)
    page = browsers.open(f"{secured.http}/chat?token={expired}")
    expect(page.locator("#auth-error")).to_contain_text("token_expired")
    expect(page.locator("#name")).to_be_visible()  # anonymous, as on a server without tokens


def test_a_banned_users_page_shows_the_refusal(secured: ServerProcess, browsers: Browsers) -> None:
    room = "lobby-" + uuid.uuid4().hex[:6]
    page = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='t1', name='Troll')}")
    enter_room(page, room)
    expect_joined(page, room)
    moderator = mint(SECRET, sub="mod", roles=["moderator"])
    r = api.post(
        f"{secured.http}/api/v1/admin/bans",
        json={"sub": "t1", "room": room, "reason": "flooding"},
        headers={"Authorization": f"Bearer {moderator}"},
    )
    assert r.status_code == 201, r.text
    expect(page.locator("#chat-app")).to_have_attribute("data-joined", "false")
    expect(page.locator("#notice")).to_contain_text("banned")
    expect(page.locator("#chat-empty")).to_contain_text("flooding")
    expect(page.locator("#composer")).to_be_disabled()
    expect(page.locator("#send")).to_be_disabled()


# --------------------------------------------------------------------------- edits


def test_an_author_edits_and_deletes_and_the_other_browser_sees_both_live(
    secured: ServerProcess, browsers: Browsers
) -> None:
    room = "lobby-" + uuid.uuid4().hex[:6]
    alice = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='e1', name='Edith')}")
    bob = browsers.open(f"{secured.http}/chat?token={mint(SECRET, sub='e2', name='Bert')}")
    for page in (alice, bob):
        enter_room(page, room)
        expect_joined(page, room)
    send_chat(alice, "teh typo")
    send_chat(bob, "not yours to change")
    typo = alice.locator(".message[data-id]", has_text="teh typo")
    theirs = alice.locator(".message[data-id]", has_text="not yours to change")
    expect(typo).to_have_count(1)
    expect(theirs).to_have_count(1)
    message_id = typo.get_attribute("data-id")
    mine = alice.locator(f'.message[data-id="{message_id}"]')
    # Only your own messages have the actions.
    expect(theirs.locator(".item-action")).to_have_count(0)
    mine.hover()
    mine.get_by_role("button", name=re.compile("^Edit ")).click()
    editor = mine.locator(".item-editor__field")
    expect(editor).to_be_focused()
    editor.fill("the typo, fixed")
    editor.press("Enter")
    seen = bob.locator(".message[data-id]", has_text="the typo, fixed")
    expect(seen).to_have_count(1)
    expect(seen.locator(".edited")).to_have_text("(edited)")
    expect(bob.locator(".message", has_text="teh typo")).to_have_count(0)
    mine.hover()
    delete = mine.get_by_role("button", name=re.compile("^Delete "))
    delete.click()
    expect(delete).to_have_text("Delete for everyone?")
    delete.click()
    gone = bob.locator(f'.message[data-id="{message_id}"]')
    expect(gone.locator(".message__text")).to_have_text("This was deleted.")
    expect(gone).to_have_attribute("data-deleted", "true")
    expect(mine.locator(".item-action")).to_have_count(0)
    # A reload shows the same: the edit and the tombstone are stored.
    bob.reload()
    expect_joined(bob, room)
    expect(bob.locator(".message[data-deleted='true'] .message__text")).to_have_text(
        "This was deleted."
    )


def test_a_moderator_deletes_someone_elses_comment(
    secured: ServerProcess, browsers: Browsers
) -> None:
    post = api.post(f"{secured.http}/api/v1/posts", json={"title": "Moderated", "content": "x"})
    post_id = post.json()["id"]
    author = mint(SECRET, sub="w1", name="Writer")
    r = api.post(
        f"{secured.http}/api/v1/posts/{post_id}/comments",
        json={"user": "Writer", "comment": "spam spam spam"},
        headers={"Authorization": f"Bearer {author}"},
    )
    assert r.status_code == 201, r.text
    url = f"{secured.http}/post/{post_id}"
    moderator = browsers.open(
        f"{url}?token={mint(SECRET, sub='m9', name='Mo', roles=['moderator'])}"
    )
    reader = browsers.open(f"{url}?token={mint(SECRET, sub='r9', name='Reader')}")
    for page in (moderator, reader):
        expect(page.locator("#comments-section")).to_have_attribute("data-live", "true")
    # The reader may not; the moderator may.
    expect(reader.locator(".comment .item-action")).to_have_count(0)
    comment = moderator.locator(".comment", has_text="spam spam spam")
    comment.hover()
    # Not its author: no Edit.
    expect(comment.get_by_role("button", name=re.compile("^Edit "))).to_have_count(0)
    delete = comment.get_by_role("button", name=re.compile("^Delete "))
    delete.click()
    delete.click()
    expect(reader.locator(".comment .comment__text")).to_have_text(["This was deleted."])
    expect(moderator.locator(".comment .comment__text")).to_have_text(["This was deleted."])
