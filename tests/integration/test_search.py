"""Full-text search on a real server, on both stores: ranked hits with snippets in parts,
cursors, room and post filters, edits and deletions followed, private rooms kept private,
bad queries refused with their code; and a database from before search gets its index."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest

from fastchat.auth import mint
from tests.conftest import TIMEOUT, ServerProcess, start_server

SECRET = "search-secret-0123456789-abcdefghijklmnopq"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"RATE_LIMIT": "0", "AUTH_SECRET": SECRET, "PRIVATE_ROOMS": "secret-*"}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    srv = start_server(tmp_path_factory.mktemp("search") / "chat.db", env=env)
    yield srv
    srv.stop()


def word() -> str:
    """A word no other test wrote: each test searches its own."""
    return "w" + uuid.uuid4().hex[:10]


def say(http: httpx.Client, room: str, text: str, **headers: str) -> dict[str, Any]:
    r = http.post(
        f"/api/v1/messages/{room}", json={"user": "ann", "message": text}, headers=headers
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def search(http: httpx.Client, **params: Any) -> dict[str, Any]:
    r = http.get("/api/v1/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http, timeout=TIMEOUT) as client:
        yield client


def test_hits_come_best_first_with_their_snippet_in_parts(http: httpx.Client) -> None:
    w = word()
    room = "search-" + uuid.uuid4().hex[:6]
    once = say(http, room, f"a long message that mentions {w} only once among many other words")
    thrice = say(http, room, f"{w} {w} {w}")
    say(http, room, "nothing to see here")
    page = search(http, q=w)
    assert [h["id"] for h in page["results"]] == [thrice["id"], once["id"]]
    assert page["count"] == 2 and page["next"] is None
    hit = page["results"][1]
    assert (hit["kind"], hit["room"], hit["user"]) == ("message", room, "ann")
    assert hit["timestamp"] == once["timestamp"]
    assert w in hit["snippet"] and "<" not in hit["snippet"]
    assert {"text": w, "match": True} in hit["parts"]
    assert "".join(p["text"] for p in hit["parts"]) == hit["snippet"]
    # Every word must be there; case and accents do not count.
    assert search(http, q=f"{w.upper()} mentions")["count"] == 1
    assert search(http, q=f"{w} absent-{word()}")["count"] == 0


def test_hostile_text_is_plain_text_in_the_snippet(http: httpx.Client) -> None:
    w = word()
    hostile = f'<img src=x onerror="alert(1)"> {w} </mark><script>x</script> \ue000 "quotes"'
    say(http, "search-hostile", hostile)
    [hit] = search(http, q=w)["results"]
    assert "<img src=x" in hit["snippet"]  # shown as text, never as markup
    assert [p["text"] for p in hit["parts"] if p.get("match")] == [w]
    # Query syntax of the engines is just text here: no error, no injection.
    for q in (f'{w} "', f"{w}*", f"{w} (", f"'{w}'); --", f"-{w}", f"{w}:", f"^{w}"):
        assert search(http, q=q)["count"] == 1, q
    # Operators are words like any other (every word must be there).
    assert search(http, q=f"{w} OR nothing")["count"] == 0
    assert search(http, q=f"{w} NOT quotes")["count"] == 0


def test_cursors_page_through_every_hit_once(http: httpx.Client) -> None:
    w = word()
    sent = [say(http, "search-pages", f"{w} number {i}")["id"] for i in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"q": w, "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = search(http, **params)
        seen += [h["id"] for h in page["results"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(sent) and pages == 3


def test_room_and_post_filters(http: httpx.Client) -> None:
    w = word()
    a = say(http, "search-a", f"{w} in a")
    say(http, "search-b", f"{w} in b")
    post = http.post("/api/v1/posts", json={"title": "T", "content": "C"}).json()
    c = http.post(
        f"/api/v1/posts/{post['id']}/comments", json={"user": "bo", "comment": f"{w} says bo"}
    ).json()
    assert [h["id"] for h in search(http, q=w, room="search-a")["results"]] == [a["id"]]
    hits = search(http, q=w, post_id=post["id"])["results"]
    assert [(h["kind"], h["id"], h["post_id"]) for h in hits] == [("comment", c["id"], post["id"])]
    assert {h["kind"] for h in search(http, q=w)["results"]} == {"message", "comment"}
    # Rooms that share words, or have none, are told apart.
    for room in ("team-a", "team-a-b", "a team", "🎉", 'quo"te'):
        say(http, room, f"{w} in {room}")
    for room in ("team-a", "team-a-b", "a team", "🎉", 'quo"te'):
        hits = search(http, q=w, room=room)["results"]
        assert [h["room"] for h in hits] == [room], room


def test_edits_and_deletions_are_followed(http: httpx.Client) -> None:
    old, new = word(), word()
    author = {"Authorization": f"Bearer {mint(SECRET, sub='ed', name='ann')}"}
    m = say(http, "search-edits", f"about {old}", **author)
    assert search(http, q=old)["count"] == 1
    r = http.patch(
        f"/api/v1/messages/search-edits/{m['id']}", json={"message": f"about {new}"}, headers=author
    )
    assert r.status_code == 200, r.text
    assert search(http, q=old)["count"] == 0
    assert [h["id"] for h in search(http, q=new)["results"]] == [m["id"]]
    assert (
        http.delete(f"/api/v1/messages/search-edits/{m['id']}", headers=author).status_code == 200
    )
    assert search(http, q=new)["count"] == 0
    assert search(http, q="about", room="search-edits")["count"] == 0


def test_private_rooms_stay_private(http: httpx.Client) -> None:
    w = word()
    token = mint(SECRET, sub="in", name="ann", rooms=["secret-*", "search-*"])
    member = {"Authorization": f"Bearer {token}"}
    say(http, "secret-plans", f"{w} is the password", **member)
    public = say(http, "search-public", f"{w} is a word")
    # Anonymous, and a token without the room: the public hit only.
    assert [h["id"] for h in search(http, q=w)["results"]] == [public["id"]]
    outsider = {"Authorization": f"Bearer {mint(SECRET, sub='out')}"}
    r = http.get("/api/v1/search", params={"q": w}, headers=outsider)
    assert [h["id"] for h in r.json()["results"]] == [public["id"]]
    r = http.get("/api/v1/search", params={"q": w, "room": "secret-plans"})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden_room")
    # Its member finds both.
    r = http.get("/api/v1/search", params={"q": w}, headers=member)
    assert r.json()["count"] == 2


@pytest.mark.parametrize(
    "params, code",
    [
        ({}, "invalid_field"),
        ({"q": "   "}, "invalid_field"),
        ({"q": "!!! ???"}, "invalid_field"),
        ({"q": "x" * 201}, "invalid_field"),
        ({"q": "x", "limit": 0}, "invalid_field"),
        ({"q": "x", "limit": 101}, "invalid_field"),
        ({"q": "x", "cursor": "-1"}, "invalid_field"),
        ({"q": "x", "room": "a", "post_id": 1}, "invalid_field"),
        ({"q": "x", "post_id": "zero"}, "invalid_field"),
    ],
)
def test_bad_queries_are_refused_with_a_code(
    http: httpx.Client, params: dict[str, Any], code: str
) -> None:
    r = http.get("/api/v1/search", params=params)
    assert (r.status_code, r.json()["code"]) == (400, code), r.text


def test_a_database_from_before_search_gets_its_index(tmp_path: Path) -> None:
    """Schema 3 had no search index: the migration builds it for the rows already there,
    and new rows are indexed from then on."""
    from fastchat.sqliteschema import MIGRATIONS

    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    with conn:
        for version in (1, 2, 3):
            conn.execute(MIGRATIONS[version])
        conn.execute("PRAGMA user_version=3")
        conn.execute(
            "INSERT INTO messages(room, user, message, ts) VALUES ('old', 'u', 'ancient lore', 1)"
        )
    conn.close()
    server = start_server(db)
    try:
        with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
            assert [h["snippet"] for h in search(http, q="lore")["results"]] == ["ancient lore"]
            say(http, "old", "modern lore")
            assert search(http, q="lore")["count"] == 2
    finally:
        server.stop()


def test_a_postgresql_database_from_before_search_gets_its_index(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same on PostgreSQL: migration 4's generated column is computed for the rows
    already there."""
    import psycopg

    from fastchat import pgstore

    url = request.getfixturevalue("postgres").new_database()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE TABLE fastchat_meta (key TEXT PRIMARY KEY, value TEXT)")
        for version in (1, 2, 3):
            conn.execute(pgstore._MIGRATIONS[version])
        conn.execute("INSERT INTO fastchat_meta VALUES ('schema_version', '3')")
        conn.execute(
            'INSERT INTO messages(room, "user", message, ts) VALUES (%s, %s, %s, %s)',
            ("old", "u", "ancient lore", 1),
        )
    server = start_server(tmp_path / "chat.db", env={"DATABASE_URL": url})
    try:
        with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
            assert [h["snippet"] for h in search(http, q="lore")["results"]] == ["ancient lore"]
            say(http, "old", "modern lore")
            assert search(http, q="lore", room="old")["count"] == 2
    finally:
        server.stop()


def test_with_search_off_nothing_is_indexed_until_it_is_on_again(tmp_path: Path) -> None:
    """SEARCH=false: the search API says so (404 `search_disabled`), the chat page has no
    search card, and SQLite's index gets nothing (no indexer runs). Started again with search
    on, the same database's messages from before are found: the indexer catches up."""
    db = tmp_path / "chat.db"
    w = word()
    server = start_server(db, env={"SEARCH": "false"})
    try:
        with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
            say(http, "quiet", f"said while search was off {w}")
            r = http.get("/api/v1/search", params={"q": w})
            assert r.status_code == 404, r.text
            assert r.json()["code"] == "search_disabled"
            page = http.get("/chat")
            assert page.status_code == 200
            assert 'id="search-form"' not in page.text
    finally:
        assert server.stop() == 0
    with apsw.Connection(str(db)) as conn:
        indexed = conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (w,))
        assert indexed.fetchall() == [(0,)]
    server = start_server(db)
    try:
        with httpx.Client(base_url=server.http, timeout=TIMEOUT) as http:
            found = search(http, q=w)["results"]
            assert [h["snippet"] for h in found] == [f"said while search was off {w}"]
            assert 'id="search-form"' in http.get("/chat").text
    finally:
        server.stop()
