"""static/embed.js, the comments widget, on a page of another origin (a second local HTTP
server, listed in ALLOWED_ORIGINS): two visitors, one comments, the other sees it live; the
thread is made from the slug with the page's title and URL; the box inherits the page's font
and takes its CSS variables."""

from __future__ import annotations

import functools
import gzip
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, start_server
from tests.e2e.conftest import SCREENSHOTS, Browsers, api, expect, expect_accessible

pytestmark = pytest.mark.e2e

STATIC = Path(__file__).resolve().parents[2] / "static"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>My Article</title></head>
<body style="font-family: Georgia, serif">
<h1>My Article</h1>
<div id="comments" data-fastchat-thread="my-article" style="--fastchat-accent: rgb(200, 0, 0)">
</div>
<script src="{server}/embed.js" async></script>
</body></html>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Another origin: http://127.0.0.1:<another port>, serving `tmp_path/site`."""
    root = tmp_path / "site"
    root.mkdir()
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(_Quiet, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def embedding(tmp_path: Path, site: tuple[str, Path]) -> Iterator[tuple[ServerProcess, str]]:
    origin, root = site
    server = start_server(tmp_path / "chat.db", env={"ALLOWED_ORIGINS": origin})
    (root / "article.html").write_text(PAGE.format(server=server.http))
    yield server, f"{origin}/article.html"
    server.kill()


def test_the_widget_is_small() -> None:
    sizes = [
        len(gzip.compress((STATIC / p).read_bytes())) for p in ("embed.js", "js/fastchat-client.js")
    ]
    assert sum(sizes) < 20_000, sizes


def test_embed_js_is_served_at_the_root(embedding: tuple[ServerProcess, str]) -> None:
    server, _ = embedding
    r = api.get(f"{server.http}/embed.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert "data-fastchat-thread" in r.text


def test_one_visitor_comments_and_the_other_sees_it_live(
    embedding: tuple[ServerProcess, str], browsers: Browsers
) -> None:
    server, url = embedding
    ann = browsers.open(url)
    ben = browsers.open(url)
    for page in (ann, ben):
        expect(page.locator("#comments")).to_have_attribute("data-fastchat-live", "true")
    post_id = int(ann.locator("#comments").get_attribute("data-fastchat-post") or 0)
    assert ben.locator("#comments").get_attribute("data-fastchat-post") == str(post_id)
    post = api.get(f"{server.http}/api/v1/posts/{post_id}").json()["post"]
    assert (post["title"], post["content"]) == ("My Article", url)

    # Playwright's CSS selectors go into open shadow roots.
    ann.fill("#comments input[name=user]", "Ann")
    ann.fill("#comments textarea", "Nice article!")
    ann.click("#comments button[type=submit]")
    for page in (ann, ben):
        expect(page.locator("#comments li[data-id] .text")).to_have_text(["Nice article!"])
        expect(page.locator("#comments li[data-id] .user")).to_have_text(["Ann"])
        expect(page.locator("#comments li.pending")).to_have_count(0)
        expect(page.locator("#comments .count")).to_have_attribute("data-count", "1")

    ben.fill("#comments input[name=user]", "Ben")
    ben.fill("#comments textarea", "Thanks, Ann")
    ben.click("#comments button[type=submit]")
    expect(ann.locator("#comments li[data-id] .text")).to_have_text(
        ["Nice article!", "Thanks, Ann"]
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the README's "Embedding comments"
    ann.screenshot(path=str(SCREENSHOTS / "embed-desktop.png"), animations="disabled")

    stored = api.get(f"{server.http}/api/v1/posts/{post_id}/comments").json()["comments"]
    assert [(c["user"], c["comment"]) for c in stored] == [
        ("Ann", "Nice article!"),
        ("Ben", "Thanks, Ann"),
    ]

    # The page's font comes in; the accent variable themes the button.
    style = ann.evaluate(
        """() => {
          const root = document.getElementById('comments').shadowRoot;
          return [getComputedStyle(root.querySelector('.text')).fontFamily,
                  getComputedStyle(root.querySelector('button[type=submit]')).backgroundColor];
        }"""
    )
    assert style == ["Georgia, serif", "rgb(200, 0, 0)"]

    expect_accessible(ann)

    # A new visit finds the same thread, its comments from history, each once.
    ann.reload()
    expect(ann.locator("#comments")).to_have_attribute("data-fastchat-live", "true")
    expect(ann.locator("#comments li[data-id] .text")).to_have_text(
        ["Nice article!", "Thanks, Ann"]
    )
    expect(ann.locator("#comments input[name=user]")).to_have_value("Ann")  # remembered


def test_a_site_not_allowed_gets_no_comments(
    tmp_path: Path, site: tuple[str, Path], browsers: Browsers
) -> None:
    """ALLOWED_ORIGINS names another site: the thread is not made, the box says why."""
    origin, root = site
    server = start_server(tmp_path / "chat.db", env={"ALLOWED_ORIGINS": "https://other.example"})
    try:
        (root / "article.html").write_text(PAGE.format(server=server.http))
        page = browsers.open(f"{origin}/article.html")
        expect(page.locator("#comments .status")).to_contain_text("Comments are unavailable")
        assert page.locator("#comments").get_attribute("data-fastchat-live") is None
        posts = api.get(f"{server.http}/api/v1/posts").json()["posts"]
        assert "My Article" not in [p["title"] for p in posts]
    finally:
        server.kill()
