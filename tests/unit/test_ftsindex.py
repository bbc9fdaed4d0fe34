"""ftsindex on a real SQLite file: the indexer indexes what was committed, resumes where it
stopped, and takes no lock when there is nothing new; it follows edits and deletions from
the writer's notes (`follow_change`), whether the item was indexed yet or not."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import apsw
import pytest

from fastchat.ftsindex import CHUNK, TUNING, Indexer
from fastchat.sqliteschema import MIGRATIONS
from fastchat.sqlitestore import SqliteStore
from fastchat.store import (
    OP_COMMENT,
    OP_DELETE_MESSAGE,
    OP_EDIT_COMMENT,
    OP_EDIT_MESSAGE,
    OP_MESSAGE,
    OP_POST,
    Edit,
    Write,
)


def database(path: Path) -> apsw.Connection:
    SqliteStore(str(path), seed=False).prepare()
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(2000)
    return conn


def found(conn: apsw.Connection, word: str, table: str = "messages") -> list[int]:
    column = "message" if table == "messages" else "comment"
    return [
        r[0]
        for r in conn.execute(
            f"SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ? ORDER BY rowid",
            (f'{column} : "{word}"',),
        )
    ]


def test_it_indexes_new_rows_and_resumes_where_it_stopped(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    conn = database(path)
    with conn:
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)',
            [(1, "r", "u", "alpha beta", 1), (2, "r", "u", "beta gamma", 2)],
        )
    indexer = Indexer(apsw.Connection(str(path)))
    indexer.catch_up()
    assert found(conn, "beta") == [1, 2] and indexer.indexed == 2
    indexer.stop()
    # A new indexer (a restart) goes on from where this one stopped.
    with conn:
        conn.execute(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (3, "r", "u", "beta", 4)'
        )
    again = Indexer(apsw.Connection(str(path)))
    again.catch_up()
    assert found(conn, "beta") == [1, 2, 3] and again.indexed == 1
    again.stop()


class Writer:
    """A real SqliteStore, its writes answered as futures."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.waiting: dict[int, asyncio.Future[Any]] = {}

    def on_committed(self, results: list[tuple[Any, ...]]) -> None:
        for write, row, _ in results:
            self.waiting.pop(id(write)).set_result(row)

    async def write(self, op: int, scope: Any, text: str, extra: Any = None) -> Any:
        write = Write(op, scope, "ann", text, extra=extra)
        self.waiting[id(write)] = fut = asyncio.get_running_loop().create_future()
        self.store.submit(write)
        return await asyncio.wait_for(fut, 10)

    async def change(self, op: int, item_id: int, text: str = "") -> Any:
        row = await self.write(op, None, text, Edit(item_id, moderator=True, window_ms=0))
        assert not isinstance(row, Exception), row
        return row


async def test_edits_and_deletions_are_followed_indexed_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit (or deletion) of an indexed item only notes the text it was indexed with:
    the writer's transaction does no FTS5 work. The next catch-up (a search's) drops those
    words and indexes the item as it is, however many changes came between; words other
    items share stay theirs. An item edited before the indexer got to it is indexed as it
    is then. Comments the same; the index stays whole."""
    monkeypatch.setattr("fastchat.ftsindex.POLL_SECONDS", 3600)  # only searches catch up
    store = SqliteStore(str(tmp_path / "chat.db"), seed=False)
    w = Writer(store)
    await store.open(w.on_committed)
    conn = apsw.Connection(str(tmp_path / "chat.db"))

    def pages() -> int:
        return int(conn.execute("SELECT count(*) FROM messages_fts_data").fetchone()[0])

    async def search(word: str, room: str | None = None) -> list[tuple[Any, ...]]:
        return [h[:2] for h in await store.search([word], room, None, 0, 10)]

    try:
        one = (await w.write(OP_MESSAGE, "r", "alpha beta"))[0]
        two = (await w.write(OP_MESSAGE, "r", "beta gamma"))[0]
        other = (await w.write(OP_MESSAGE, "elsewhere", "alpha"))[0]
        post = (await w.write(OP_POST, "a post", "body"))[0]
        note = (await w.write(OP_COMMENT, post, "alpha comment"))[0]
        assert len(await search("beta")) == 2  # indexed now
        assert found(conn, "alpha") == [one, other]

        before = pages()
        await w.change(OP_EDIT_MESSAGE, one, "delta beta")
        await w.change(OP_DELETE_MESSAGE, two)
        await w.change(OP_EDIT_COMMENT, note, "theta")
        assert pages() == before and found(conn, "alpha") == [one, other]  # noted only
        assert conn.execute("SELECT count(*) FROM search_pending").fetchone()[0] == 3
        assert await search("delta") == [("m", one)]
        assert found(conn, "alpha") == [other] and found(conn, "beta") == [one]
        assert found(conn, "gamma") == [] and found(conn, "delta") == [one]
        assert found(conn, "alpha", "comments") == [] and found(conn, "theta", "comments") == [note]
        assert await search("delta", "r") == [("m", one)]
        in_room = 'room : "{}" AND message : "delta"'.format(b"r".hex())
        assert [
            r[0]
            for r in conn.execute(
                "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?", (in_room,)
            )
        ] == [one]
        assert conn.execute("SELECT count(*) FROM search_pending").fetchone()[0] == 0

        # Two edits, then an edit and a deletion, before the indexer looks again: the first
        # note's text is what the index holds.
        four = (await w.write(OP_MESSAGE, "r", "kappa"))[0]
        assert await search("kappa") == [("m", four)]
        await w.change(OP_EDIT_MESSAGE, one, "eta")
        await w.change(OP_EDIT_MESSAGE, one, "iota")
        await w.change(OP_EDIT_MESSAGE, four, "lambda")
        await w.change(OP_DELETE_MESSAGE, four)
        assert await search("iota") == [("m", one)]
        for word in ("delta", "beta", "eta", "kappa", "lambda"):
            assert found(conn, word) == [], word
        assert found(conn, "iota") == [one]

        # Not indexed yet: nothing noted; the indexer takes the new text.
        three = (await w.write(OP_MESSAGE, "r", "epsilon"))[0]
        await w.change(OP_EDIT_MESSAGE, three, "zeta")
        assert conn.execute("SELECT count(*) FROM search_pending").fetchone()[0] == 0
        assert await search("zeta", "r") == [("m", three)]
        assert found(conn, "epsilon") == [] and found(conn, "zeta") == [three]
        assert await search("alpha") == [("m", other)]
        assert await search("theta") == [("c", note)]
        for table in ("messages", "comments"):
            conn.execute(f"INSERT INTO {table}_fts({table}_fts) VALUES ('integrity-check')")
    finally:
        conn.close()
        await store.close()


def test_nothing_new_takes_no_lock(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    database(path)
    indexer = Indexer(apsw.Connection(str(path)))  # no busy timeout: a lock it wanted fails
    indexer.catch_up()
    other = apsw.Connection(str(path))
    other.execute("BEGIN IMMEDIATE")  # someone holds the write lock
    try:
        indexer.catch_up()  # nothing committed since: no transaction, so no BusyError
    finally:
        other.execute("ROLLBACK")
    indexer.stop()


def test_lag_counts_what_is_not_indexed_yet(tmp_path: Path) -> None:
    """The indexer puts off indexing while the store is busy, until the lag reaches
    LAG_ROWS: the lag it goes by is the rows committed and not yet indexed, of both
    tables."""
    path = tmp_path / "chat.db"
    conn = database(path)
    indexer = Indexer(apsw.Connection(str(path)))
    assert indexer.lag() == 0
    with conn:
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)',
            [(i, "r", "u", f"word{i}", i) for i in range(1, 8)],
        )
        conn.execute(
            "INSERT INTO posts(id, title, content, author, ts) VALUES (1, 't', 'c', 'a', 1)"
        )
        conn.execute(
            'INSERT INTO comments(id, post_id, "user", comment, ts) VALUES (1, 1, "u", "word1", 1)'
        )
    assert indexer.lag() == 8
    indexer.catch_up()
    assert indexer.lag() == 0 and found(conn, "word7") == [7]
    assert found(conn, "word1", "comments") == [1]
    indexer.stop()


def test_a_big_catch_up_is_one_segment_a_transaction_merged_sixteen_at_a_time(
    tmp_path: Path,
) -> None:
    """FTS5's defaults cost 2x the CPU per message (ftsindex's docstring): the
    indexer sets its own on a file from before, and a transaction of CHUNK rows flushes
    its words once."""
    path = tmp_path / "chat.db"
    conn = database(path)
    rows = [(i, "r", "u", f"word{i} common", i) for i in range(1, CHUNK + 1)]
    with conn:
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)', rows
        )
    indexer = Indexer(apsw.Connection(str(path)))
    indexer.catch_up()
    config = dict(conn.execute("SELECT k, v FROM messages_fts_config").fetchall())
    assert {k: config[k] for k, _ in TUNING} == dict(TUNING)
    assert dict(conn.execute("SELECT k, v FROM comments_fts_config").fetchall()).keys() >= {
        k for k, _ in TUNING
    }
    assert conn.execute("SELECT count(DISTINCT segid) FROM messages_fts_idx").fetchone()[0] == 1
    assert found(conn, "common") == list(range(1, CHUNK + 1)) and found(conn, "word7") == [7]
    assert indexer.indexed == CHUNK
    indexer.stop()


async def test_an_index_from_before_schema_12_is_rebuilt_and_then_followed(
    tmp_path: Path,
) -> None:
    """A schema 11 file (its index with a size per row, edits followed by the indexer):
    opened, its index is dropped and built again from the rows, and an edit is followed."""
    path = tmp_path / "chat.db"
    conn = apsw.Connection(str(path))
    with conn:
        for target in range(1, 12):
            conn.execute(MIGRATIONS[target])
        conn.execute("PRAGMA user_version=11")
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)',
            [(1, "r", "u", "kappa lambda", 1), (2, "r", "u", "kappa", 2)],
        )
        conn.execute("UPDATE message_rooms_upto SET id = 0")
        conn.execute(
            "INSERT INTO messages_fts(rowid, message, room) SELECT id, message, hex(room) "
            "FROM messages"
        )
        conn.execute("INSERT INTO search_index VALUES (1, 2, 0)")
    store = SqliteStore(str(path), seed=False)
    w = Writer(store)
    await store.open(w.on_committed)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert "messages_fts_docsize" not in tables
        assert [h[1] for h in await store.search(["kappa"], None, None, 0, 10)] == [2, 1]
        await w.change(OP_EDIT_MESSAGE, 1, "mu")
        assert [h[1] for h in await store.search(["mu"], None, None, 0, 10)] == [1]
        assert found(conn, "lambda") == [] and found(conn, "kappa") == [2]
        assert found(conn, "mu") == [1]
    finally:
        await store.close()
        conn.close()
