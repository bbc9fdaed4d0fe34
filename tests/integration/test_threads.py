"""PUT /api/v1/threads/{slug}, the embeddable widget's threads, on both stores: the post is
made on first use, the same one is answered after, and browser origins are checked as for
every write."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import ServerProcess


def test_a_thread_is_made_once_and_found_after(server: ServerProcess) -> None:
    slug = "article-" + uuid.uuid4().hex[:8]
    url = f"{server.http}/api/v1/threads/{slug}"
    body = {"title": "  My   article ", "url": "https://example.com/my-article"}
    first = httpx.put(url, json=body)
    assert first.status_code == 200, first.text
    post = first.json()
    assert (post["title"], post["content"]) == ("My article", "https://example.com/my-article")
    again = httpx.put(url, json={"title": "another title", "url": "https://elsewhere/"})
    assert again.status_code == 200 and again.json()["id"] == post["id"]
    assert again.json()["title"] == "My article"
    # It is a post like any other: its page, its comments.
    got = httpx.get(f"{server.http}/api/v1/posts/{post['id']}")
    assert got.status_code == 200 and got.json()["post"]["title"] == "My article"
    other = httpx.put(f"{server.http}/api/v1/threads/{slug}-2", json={})
    assert other.status_code == 200 and other.json()["id"] != post["id"]
    assert other.json()["title"] == f"{slug}-2"  # no title: the slug


def test_bad_slugs_and_foreign_origins_are_refused(server: ServerProcess) -> None:
    base = f"{server.http}/api/v1/threads"
    for slug in ("-starts-with-dash", "x" * 129, "sp ace"):
        r = httpx.put(f"{base}/{slug}", json={})
        assert r.status_code == 400 and r.json()["code"] == "invalid_field", (slug, r.text)
    r = httpx.put(f"{base}/ok", json={}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "origin_refused"
    r = httpx.put(f"{base}/ok", content=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
