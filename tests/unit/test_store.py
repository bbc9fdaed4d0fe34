"""The stores, on real databases: each test runs on SQLite (a file in tmp_path, the writer
thread) and on PostgreSQL (a database of its own on the session's server, the writer task),
with a real asyncio loop. Tests of one engine's own behaviour say so in their names."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import apsw
import psycopg
import pytest

from fastchat.pgstore import SCHEMA_VERSION as PG_SCHEMA_VERSION
from fastchat.pgstore import PostgresStore
from fastchat.sqliteschema import MIGRATIONS, SCHEMA_VERSION
from fastchat.sqlitestore import (
    COMMENT_FILING,
    MESSAGE_FILING,
    SqliteStore,
    without_memory_statistics,
)
from fastchat.store import (
    COMMENT_COLUMNS,
    LAST_TS_SQL,
    MESSAGE_COLUMNS,
    OP_BAN,
    OP_COMMENT,
    OP_MESSAGE,
    OP_POST,
    SAMPLE_POSTS,
    PostNotFound,
    Store,
    StoreError,
    Write,
)
from fastchat.trailing import FILE_ROWS
from tests.conftest import copy_database
from tests.pg import Postgres

# One scalable unit for every wait (tests/conftest.py does the same).
TIMEOUT = float(os.environ.get("FASTCHAT_TEST_TIMEOUT", "10"))


class Writes:
    """Submits operations and hands back each result as a future of (op, row or error,
    the Write, duplicate)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loop = asyncio.get_running_loop()
        self.batches: list[list[tuple[Any, ...]]] = []
        self._futures: dict[int, asyncio.Future[tuple[Any, ...]]] = {}

    def on_committed(self, results: list[tuple[Any, ...]]) -> None:
        handed = [(write.op, row, write, duplicate) for write, row, duplicate in results]
        self.batches.append(handed)
        for result in handed:
            self._futures.pop(id(result[2])).set_result(result)

    async def open(self) -> Writes:
        await self.store.open(self.on_committed)
        return self

    def submit(
        self, op: int, a: Any, b: Any, c: Any, client_id: str | None = None
    ) -> asyncio.Future[Any]:
        write = Write(op, a, b, c, client_id)
        fut: asyncio.Future[tuple[Any, ...]] = self.loop.create_future()
        self._futures[id(write)] = fut
        self.store.submit(write)
        return fut

    def message(
        self, room: str, user: str, text: str, client_id: str | None = None
    ) -> asyncio.Future[Any]:
        return self.submit(OP_MESSAGE, room, user, text, client_id)

    def comment(
        self, post_id: int, user: str, text: str, client_id: str | None = None
    ) -> asyncio.Future[Any]:
        return self.submit(OP_COMMENT, post_id, user, text, client_id)

    def post(self, title: str, content: str, author: str) -> asyncio.Future[Any]:
        return self.submit(OP_POST, title, author, content)


async def done(futs: asyncio.Future[Any] | Iterable[asyncio.Future[Any]]) -> Any:
    if isinstance(futs, asyncio.Future):
        return await asyncio.wait_for(futs, TIMEOUT)
    return await asyncio.wait_for(asyncio.gather(*futs), TIMEOUT)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


Factory = Callable[..., Store]


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request: pytest.FixtureRequest, db_path: Path) -> Factory:
    """Makes stores on one database of the test's own (call it again to reopen it)."""
    if request.param == "sqlite":
        return lambda **kw: SqliteStore(db_path, **kw)
    url = request.getfixturevalue("postgres").new_database()
    return lambda **kw: PostgresStore(url, **kw)


@pytest.fixture
async def writes(new_store: Factory) -> AsyncIterator[Writes]:
    store = new_store()
    w = await Writes(store).open()
    yield w
    await store.close()


def sqlite(path: Path) -> apsw.Connection:
    """A connection of the test's own, to look at the file from outside the store."""
    return apsw.Connection(str(path))


def outside(store: Store, sql: str) -> Any:
    """The first value of `sql`, read over a connection of the test's own."""
    if isinstance(store, SqliteStore):
        conn = sqlite(Path(store.path))
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url, autocommit=True) as pg:
        row = pg.execute(sql).fetchone()
        assert row is not None
        return row[0]


FILED_KEYS_SQL = MESSAGE_FILING.filed_keys_sql
# What another worker sharing a SQLite file runs to file every message, as a quiet store.
FILE_EVERYTHING = (
    "INSERT OR IGNORE INTO message_rooms SELECT room, id FROM messages",
    'INSERT OR IGNORE INTO message_clients SELECT id >> 16, room, "user", client_id, '
    "id FROM messages WHERE client_id IS NOT NULL",
    'INSERT OR IGNORE INTO client_buckets SELECT DISTINCT room, "user", id >> 16 '
    "FROM messages WHERE client_id IS NOT NULL",
    "UPDATE message_rooms_upto SET id = (SELECT max(id) FROM messages)",
    "INSERT OR IGNORE INTO comment_posts SELECT post_id, id FROM comments",
    'INSERT OR IGNORE INTO comment_clients SELECT id >> 16, post_id, "user", client_id, '
    "id FROM comments WHERE client_id IS NOT NULL",
    'INSERT OR IGNORE INTO comment_client_buckets SELECT DISTINCT post_id, "user", id >> 16 '
    "FROM comments WHERE client_id IS NOT NULL",
    "UPDATE comment_posts_upto SET id = (SELECT coalesce(max(id), 0) FROM comments)",
)


def database_at(path: Path, version: int) -> apsw.Connection:
    """A SQLite database at an earlier schema `version`, as that fastchat left it."""
    conn = sqlite(path)
    with conn:
        for target in range(1, version + 1):
            conn.execute(MIGRATIONS[target])
        conn.execute(f"PRAGMA user_version={version}")
    return conn


def outside_rows(store: SqliteStore, sql: str) -> list[tuple[Any, ...]]:
    """Every row of `sql`, read over a connection of the test's own (SQLite)."""
    conn = sqlite(Path(store.path))
    try:
        return [tuple(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def inject(store: Store, sql: str, params: tuple[Any, ...]) -> None:
    """Write behind the store's back, as another worker or node sharing the database would."""
    if isinstance(store, SqliteStore):
        conn = sqlite(Path(store.path))
        try:
            conn.execute(sql, params)
        finally:
            conn.close()
        return
    assert isinstance(store, PostgresStore)
    with psycopg.connect(store.url, autocommit=True) as pg:
        pg.execute(sql.replace("?", "%s"), params)


async def refuse_writes(store: Store, refuse: bool) -> None:
    """Make the database refuse (or accept again) the store's writes, from its own writer
    connection while it is idle: a read-only database."""
    if isinstance(store, SqliteStore):
        assert store._writer is not None
        store._writer.execute(f"PRAGMA query_only={int(refuse)}")
    else:
        assert isinstance(store, PostgresStore) and store._writer is not None
        await store._writer.execute(
            f"SET default_transaction_read_only = {'on' if refuse else 'off'}"
        )


# --------------------------------------------------------------------------- schema


async def test_sqlite_fresh_file_gets_the_schema_in_wal_mode(db_path: Path) -> None:
    store = SqliteStore(db_path)
    await Writes(store).open()
    await store.close()
    conn = sqlite(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"messages", "posts", "comments"} <= tables
    finally:
        conn.close()


async def startup_schema_lines(store: Store, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What opening `store` logged about the database's schema."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fastchat.store"):
        await Writes(store).open()
        await store.close()
    return [r.getMessage() for r in caplog.records if "schema" in r.getMessage()]


async def test_startup_says_in_one_line_that_it_created_the_database(
    new_store: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """The log a user reads at every start: a new database, one line; the next, nothing."""
    store = new_store()
    if isinstance(store, SqliteStore):
        where, newest = str(store.path), SCHEMA_VERSION
    else:
        assert isinstance(store, PostgresStore)
        where, newest = store.location, PG_SCHEMA_VERSION
    assert await startup_schema_lines(store, caplog) == [
        f"database {where} created (schema version {newest})"
    ]
    assert await startup_schema_lines(new_store(), caplog) == []


async def test_startup_says_in_one_line_from_which_version_it_migrated(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database_at(db_path, 3).close()
    assert await startup_schema_lines(SqliteStore(db_path), caplog) == [
        f"database {db_path} migrated from schema version 3 to {SCHEMA_VERSION}"
    ]


async def test_a_version_1_database_is_migrated_and_keeps_its_rows(db_path: Path) -> None:
    """Session 6 added the bans table (schema 2): a database from before keeps everything
    and gains it."""
    conn = sqlite(db_path)
    with conn:
        conn.execute(MIGRATIONS[1])
        conn.execute("PRAGMA user_version=1")
        conn.execute("INSERT INTO messages(room, user, message, ts) VALUES ('r', 'u', 'old', 1)")
    conn.close()
    writes = await Writes(SqliteStore(db_path)).open()
    try:
        assert [r[3] for r in (await writes.store.recent_messages("r", 10))[0]] == ["old"]
        assert await writes.store.bans() == []
        ban = Write(OP_BAN, "*", "troll", "ban", extra=(None, "mod", "spam"))
        future = writes.loop.create_future()
        writes._futures[id(ban)] = future
        writes.store.submit(ban)
        stored = (await done(future))[1]
        assert stored[:6] == ("troll", "*", "ban", None, "mod", "spam")
        assert await writes.store.bans() == [stored]
    finally:
        await writes.store.close()


async def test_fresh_database_gets_the_sample_posts(writes: Writes) -> None:
    posts = await writes.store.posts()
    assert [p[1] for p in posts] == [t for t, _, _ in reversed(SAMPLE_POSTS)]  # newest first
    assert all(p[3] == "fastchat" and p[5] == 0 for p in posts)
    assert await writes.store.counts() == {
        "messages": 0,
        "comments": 0,
        "posts": len(SAMPLE_POSTS),
        "changes": 0,
    }


async def test_sample_posts_are_seeded_only_once(new_store: Factory) -> None:
    for _ in range(3):
        store = new_store()
        await Writes(store).open()
        assert len(await store.posts()) == len(SAMPLE_POSTS)
        await store.close()


async def test_no_sample_posts_when_seeding_is_off(new_store: Factory) -> None:
    store = new_store(seed=False)
    await Writes(store).open()
    assert await store.posts() == []
    await store.close()
    # A database that exists is never seeded later, even with seeding on.
    store = new_store(seed=True)
    await Writes(store).open()
    assert await store.posts() == []
    await store.close()


async def test_a_newer_schema_is_refused_with_a_clear_error(new_store: Factory) -> None:
    store = new_store()
    await Writes(store).open()
    await store.close()
    # The schema version, moved past this fastchat's, where each engine keeps it.
    if isinstance(store, SqliteStore):
        conn = sqlite(Path(store.path))
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        conn.close()
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url, autocommit=True) as pg:
            pg.execute(
                "UPDATE fastchat_meta SET value = %s WHERE key = 'schema_version'",
                (str(SCHEMA_VERSION + 1),),
            )
    store = new_store()
    with pytest.raises(StoreError, match=r"newer than this fastchat.*upgrade fastchat"):
        await Writes(store).open()
    assert not store._writer_alive()  # no writer was started
    await store.close()


async def test_sqlite_missing_parent_directories_are_created(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "a" / "b" / "chat.db")
    await Writes(store).open()
    assert (tmp_path / "a" / "b" / "chat.db").exists()
    await store.close()


# --------------------------------------------------------------------------- writes


async def test_a_message_comes_back_as_its_stored_row(writes: Writes) -> None:
    before = time.time_ns() // 1_000_000
    op, row, _, duplicate = await done(writes.message("general", "ana", "hello"))
    after = time.time_ns() // 1_000_000
    assert op == OP_MESSAGE
    assert duplicate is False
    msg_id, room, user, text, ts, client_id, edited_at, deleted_at = row
    assert (edited_at, deleted_at) == (None, None)
    assert (room, user, text, client_id) == ("general", "ana", "hello", None)
    assert msg_id >= 1
    assert before <= ts <= after
    assert await writes.store.recent_messages("general", 10) == ([row], False)
    assert writes.store.pending == 0


async def test_ids_rise_in_submit_order_and_results_keep_that_order(writes: Writes) -> None:
    futs = [writes.message("r", "u", f"m{i}") for i in range(50)]
    results = await done(futs)
    ids = [row[0] for _, row, _, _ in results]
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert [row[3] for _, row, _, _ in results] == [f"m{i}" for i in range(50)]
    timestamps = [row[4] for _, row, _, _ in results]
    assert timestamps == sorted(timestamps)
    flat = [r for batch in writes.batches for r in batch]
    assert [r[1][0] for r in flat] == ids  # handed back in commit order


async def test_a_mixed_batch_is_stored_in_submit_order_each_row_as_handed_back(
    writes: Writes,
) -> None:
    # One transaction: plain messages (inserted in runs), messages with client ids (each
    # checked), a retry, comments and a post between them.
    post_id = (await done(writes.post("t", "c", "a")))[1][0]
    futs = [
        writes.message("a", "u", "plain 1"),
        writes.message("b", "u", "plain 2"),
        writes.message("a", "u", "with id", client_id="c1"),
        writes.message("c", "u", "plain 3"),
        writes.comment(post_id, "u", "a comment"),
        writes.message("a", "u", "with id", client_id="c1"),  # the retry
        writes.post("t2", "c2", "a2"),
        writes.message("b", "u", "plain 4"),
        writes.message("b", "u", "plain 5"),
    ]
    results = await done(futs)
    assert len(writes.batches[-1]) == len(futs)  # one batch
    messages = [r for r in results if r[0] == OP_MESSAGE]
    assert [r[3] for r in messages] == [False, False, False, False, True, False, False]
    assert [r[1][3] for r in messages] == [
        "plain 1", "plain 2", "with id", "plain 3", "with id", "plain 4", "plain 5"
    ]  # fmt: skip
    new_ids = [r[1][0] for r in messages if r[3] is False]
    assert new_ids == sorted(set(new_ids))  # rising in submit order
    assert messages[4][1] == messages[2][1]  # the retry gets the original row
    for room in ("a", "b", "c"):
        stored, _ = await writes.store.recent_messages(room, 10)
        assert stored == [r[1] for r in messages if r[1][1] == room and r[3] is False]
    comment = results[4][1]
    assert (await writes.store.comments(post_id, 10))[0] == [comment]
    assert results[6][0] == OP_POST and results[6][1][1] == "t2"


async def test_texts_are_stored_verbatim(writes: Writes) -> None:
    # (No NUL: PostgreSQL cannot store one, so the protocol refuses it before the store.)
    text = "  'quotes' \"double\" ; DROP TABLE messages; -- \n🚀 日本語 \t\x7f \u202e  "
    _, row, _, _ = await done(writes.message("r", "u", text))
    rows, _ = await writes.store.recent_messages("r", 1)
    assert rows[0][3] == text == row[3]


async def test_group_commit_takes_a_burst_in_few_transactions(writes: Writes) -> None:
    store = writes.store
    batches_before = store.batches
    futs = [writes.message("burst", f"u{i % 7}", f"message {i}") for i in range(1000)]
    assert store.pending == 1000
    results = await done(futs)
    assert all(r[3] is False for r in results)
    transactions = store.batches - batches_before
    assert 1 <= transactions <= 20, f"1000 messages took {transactions} transactions"
    assert len(writes.batches) == transactions
    assert store.rows == 1000
    assert store.pending == 0
    assert (await store.counts())["messages"] == 1000


async def test_batches_never_exceed_batch_max(new_store: Factory) -> None:
    store = new_store(batch_max=64)
    writes = await Writes(store).open()
    try:
        await done([writes.message("r", "u", str(i)) for i in range(500)])
        assert max(len(b) for b in writes.batches) <= 64
        assert store.batches >= 500 // 64
    finally:
        await store.close()


async def test_comments_count_towards_their_post(writes: Writes) -> None:
    post_id = (await writes.store.posts())[0][0]
    results = await done([writes.comment(post_id, "bo", f"c{i}") for i in range(3)])
    for op, row, _, dup in results:
        assert op == OP_COMMENT and dup is False
        assert row[1:4] == (post_id, "bo", row[3])
    assert (await writes.store.post(post_id))[5] == 3
    rows, more = await writes.store.comments(post_id, 10)
    assert [r[3] for r in rows] == ["c0", "c1", "c2"] and more is False
    other = (await writes.store.posts())[1][0]
    assert await writes.store.comments(other, 10) == ([], False)


async def test_a_new_post_is_readable_and_listed_first(writes: Writes) -> None:
    op, row, _, dup = await done(writes.post("Title", "Body", "author"))
    assert op == OP_POST and dup is False
    post_id = row[0]
    assert row[1:4] == ("Title", "Body", "author") and row[5] == 0
    assert await writes.store.post(post_id) == row
    assert await writes.store.post_exists(post_id)
    assert (await writes.store.posts())[0] == row
    assert await writes.store.posts(limit=1) == [row]
    assert await writes.store.post(post_id + 1000) is None
    assert not await writes.store.post_exists(post_id + 1000)


# --------------------------------------------------------------------------- idempotency


async def test_a_retried_message_is_stored_once(writes: Writes) -> None:
    _, first, _, dup1 = await done(writes.message("r", "ana", "hello", "c-1"))
    _, again, _, dup2 = await done(writes.message("r", "ana", "hello (retry)", "c-1"))
    assert dup1 is False and dup2 is True
    assert again == first  # the original row, original text and id
    assert await writes.store.recent_messages("r", 10) == ([first], False)


async def test_a_retry_in_the_same_batch_is_stored_once(writes: Writes) -> None:
    results = await done([writes.message("r", "ana", "hi", "same") for _ in range(5)])
    assert [r[3] for r in results] == [False, True, True, True, True]
    assert len({r[1] for r in results}) == 1
    assert len((await writes.store.recent_messages("r", 10))[0]) == 1


async def test_a_retry_finds_its_original_wherever_it_is_kept(new_store: Factory) -> None:
    """SQLite keeps the client ids of a room's newest messages in memory and files them
    in bulk (message_clients, FILE_ROWS at a time): a retry finds its original among the
    filed ones, the unfiled ones, those of its own batch, those another worker sharing the
    database wrote, and the unfiled ones again after a restart. Each retry is answered
    with the original row and stores nothing."""
    store = new_store()
    writes = await Writes(store).open()
    n = 7 * FILE_ROWS + 30  # 7 rooms: each filed once, then a few more each, unfiled
    try:
        results = await done(
            [writes.message(f"r{i % 7}", "ana", f"m{i}", f"c{i}") for i in range(n - 30)]
        )
        results += await done(
            [writes.message(f"r{i % 7}", "ana", f"m{i}", f"c{i}") for i in range(n - 30, n)]
        )
        originals = {r[1][5]: r[1] for r in results}
        last = results[-1][1][0]
        if isinstance(store, SqliteStore):
            upto = outside(store, "SELECT id FROM message_rooms_upto")
            assert 0 < upto < last  # c0 filed, the last ones unfiled
        inject(
            store,
            'INSERT INTO messages(room, "user", message, ts, client_id) VALUES (?, ?, ?, ?, ?)',
            ("r0", "ana", "theirs", results[-1][1][4], "other-worker"),
        )
        theirs = (await store.recent_messages("r0", 1))[0][0]
        retries = ["c0", f"c{n - 1}", "c0", "new", "new"]
        again = await done(
            [
                writes.message(f"r{int(c[1:]) % 7}" if c[1:].isdigit() else "r0", "ana", "retry", c)
                for c in retries
            ]
        )
        assert [r[3] for r in again] == [True, True, True, False, True]
        assert again[0][1] == again[2][1] == originals["c0"]
        assert again[1][1] == originals[f"c{n - 1}"]
        assert again[3][1] == again[4][1] and again[3][1][3] == "retry"
        _, found, _, dup = await done(writes.message("r0", "ana", "retry", "other-worker"))
        assert dup is True and found == theirs
    finally:
        await store.close()
    # After a restart the unfiled ones are found as well (read back from the table's tail),
    # by retries and by pages.
    store = new_store()
    writes = await Writes(store).open()
    try:
        for room in ("r0", "r6"):
            page, more = await store.recent_messages(room, 1000)
            every = await store._fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? ORDER BY id", (room,)
            )
            assert more is False and page == [tuple(r) for r in every]
        newest = f"c{n - 1}"
        _, found, _, dup = await done(writes.message(f"r{(n - 1) % 7}", "ana", "x", newest))
        assert dup is True and found == originals[newest]
        _, found, _, dup = await done(writes.message("r0", "ana", "x", "other-worker"))
        assert dup is True and found == theirs
        count = outside(store, "SELECT count(*) FROM messages")
        assert count == n + 2  # the originals, theirs and "new"
    finally:
        await store.close()


@pytest.mark.parametrize("closed", ["cleanly", "by-a-crash"])
async def test_sqlite_a_retry_of_a_message_filed_before_a_restart_is_found(
    db_path: Path, closed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite keeps a filter of the client ids stored, and reads message_clients only for
    keys it may hold. A clean close saves the filter and the next open reads it back; after
    a crash before any clean close there is none, and the open fills one from
    message_clients. Either way every retry of a message stored before the restart, filed,
    is still answered with its original, and a new one is stored."""
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    n = 7 * FILE_ROWS  # 7 rooms of FILE_ROWS: every message filed
    rows = [
        r[1]
        for r in await done(
            [writes.message(f"r{i % 7}", "ana", f"m{i}", f"c{i}") for i in range(n)]
        )
    ]
    assert outside(store, "SELECT count(*) FROM message_clients") == n
    if closed == "by-a-crash":  # nothing saved, as when the process dies
        monkeypatch.setattr(store, "_save_client_keys", lambda: None)
    await store.close()
    saved = outside(store, "SELECT count(*) FROM client_keys")
    assert saved == (1 if closed == "cleanly" else 0)
    if saved:  # the saved filter answers: message_clients is not read into one
        assert outside(store, "SELECT upto FROM client_keys") == rows[-1][0]
        monkeypatch.setattr(MESSAGE_FILING, "filed_keys_sql", FILED_KEYS_SQL + " WHERE 0")
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    try:
        assert store._tail.keys.ready  # filled as the store opened: misses skip the table
        again = await done([writes.message(f"r{i % 7}", "ana", "retry", f"c{i}") for i in range(n)])
        assert [r[3] for r in again] == [True] * n
        assert [r[1] for r in again] == rows
        _, new, _, dup = await done(writes.message("r0", "ana", "new", "fresh"))
        assert dup is False and new[3] == "new"
    finally:
        await store.close()


async def test_sqlite_a_saved_filter_learns_what_was_stored_after_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker sharing the file goes on after this one's clean close, and stores and
    files a message with a client id. Reopened, this one reads its saved filter back and the
    client ids stored after it: a retry of the other worker's message is answered with the
    original, not stored again. The saved filter stays: after a crash (no new one saved)
    the next open reads it again, and what was stored since."""
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    await done(writes.message("r", "ana", "mine", "k0"))
    await store.close()
    assert outside(store, "SELECT count(*) FROM client_keys") == 1
    inject(
        store,
        'INSERT INTO messages(room, "user", message, ts, client_id) VALUES (?, ?, ?, ?, ?)',
        ("r", "bob", "theirs", 1, "k1"),
    )
    for sql in FILE_EVERYTHING:
        inject(store, sql, ())
    theirs = outside(store, "SELECT max(id) FROM messages")
    # Only the saved filter and what came after it: message_clients is not read whole.
    monkeypatch.setattr(MESSAGE_FILING, "filed_keys_sql", FILED_KEYS_SQL + " WHERE 0")
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    try:
        _, row, _, dup = await done(writes.message("r", "bob", "again", "k1"))
        assert dup is True and row[0] == theirs and row[3] == "theirs"
        _, row, _, dup = await done(writes.message("r", "ana", "again", "k0"))
        assert dup is True and row[3] == "mine"
        _, later, _, dup = await done(writes.message("r", "ana", "later", "k2"))
        assert dup is False
        assert outside(store, "SELECT count(*) FROM messages") == 3
    finally:
        monkeypatch.setattr(store, "_save_client_keys", lambda: None)  # as a crash would
        await store.close()
    for sql in FILE_EVERYTHING:  # "later" filed too: found through the filter alone
        inject(store, sql, ())
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    try:
        for cid, user, original in (("k0", "ana", "mine"), ("k1", "bob", "theirs")):
            _, row, _, dup = await done(writes.message("r", user, "again", cid))
            assert dup is True and row[3] == original
        _, row, _, dup = await done(writes.message("r", "ana", "again", "k2"))
        assert dup is True and row[0] == later[0]
        assert outside(store, "SELECT count(*) FROM messages") == 3
    finally:
        await store.close()


async def test_sqlite_a_retry_of_what_another_worker_stored_and_filed_is_found(
    db_path: Path,
) -> None:
    """Another worker sharing the file stores a message and files it (message_clients)
    before this one commits again, so this one never sees it unfiled: a retry of it here is
    still answered with the original, not stored again (the client-id filter learns the
    ids of what others filed as it catches up with their rows)."""
    store = SqliteStore(db_path)
    writes = await Writes(store).open()
    try:
        assert store._tail.keys.ready  # the filter in use: misses skip the table
        inject(
            store,
            'INSERT INTO messages(room, "user", message, ts, client_id) VALUES (?, ?, ?, ?, ?)',
            ("r", "bob", "theirs", 1, "k1"),
        )
        for sql in FILE_EVERYTHING:  # the other worker files everything, as a quiet store
            inject(store, sql, ())
        theirs = outside(store, "SELECT max(id) FROM messages")
        _, row, _, dup = await done(writes.message("r", "bob", "again", "k1"))
        assert dup is True and row[0] == theirs and row[3] == "theirs"
        assert outside(store, "SELECT count(*) FROM messages WHERE client_id = 'k1'") == 1
    finally:
        await store.close()


async def test_sqlite_an_older_copy_restored_into_the_live_file_is_read_anew(
    db_path: Path, tmp_path: Path
) -> None:
    """Someone copies an older backup into the live file (SQLite's backup API: the same
    file, so writes go on). The next commit reads what trails and which posts exist anew: a
    comment on a post the copy does not have is refused, not stored for a missing post."""
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    older = tmp_path / "older.db"
    try:
        copy_database(db_path, older)  # no post yet
        post_id = (await done(writes.post("p", "c", "a")))[1][0]
        _, first, _, _ = await done(writes.comment(post_id, "u", "before"))
        assert first[3] == "before"
        copy_database(older, db_path)
        _, row, _, _ = await done(writes.comment(post_id, "u", "after"))
        assert isinstance(row, PostNotFound)
        assert outside(store, "SELECT count(*) FROM comments") == 0
    finally:
        await store.close()


async def test_client_ids_are_scoped_to_room_and_user(writes: Writes) -> None:
    results = await done(
        [
            writes.message("r1", "ana", "a", "c"),
            writes.message("r2", "ana", "b", "c"),
            writes.message("r1", "bo", "c", "c"),
            writes.message("r1", "ana", "d", None),
            writes.message("r1", "ana", "e", None),
        ]
    )
    assert [r[3] for r in results] == [False] * 5
    assert len({r[1][0] for r in results}) == 5


async def test_a_retried_comment_is_stored_once(writes: Writes) -> None:
    post_id = (await writes.store.posts())[0][0]
    _, first, _, _ = await done(writes.comment(post_id, "ana", "nice", "k1"))
    _, again, _, dup = await done(writes.comment(post_id, "ana", "nice!", "k1"))
    _, other, _, dup_other = await done(writes.comment(post_id, "bo", "nice", "k1"))
    assert dup is True and again == first
    assert dup_other is False and other[0] != first[0]
    assert (await writes.store.post(post_id))[5] == 2


async def test_a_batch_of_messages_and_comments_is_answered_in_its_order(
    writes: Writes,
) -> None:
    """Chat messages and comments go into the database in runs, one statement per run:
    a batch that mixes them, with a comment on a missing post and retries among them, is
    answered write by write in the order it came, each kind's ids in that order too."""
    store = writes.store
    post_id = (await store.posts())[0][0]
    results = await done(
        [
            writes.message("r", "u", "m1"),
            writes.comment(post_id, "u", "c1"),
            writes.comment(post_id, "u", "c2", "k"),
            writes.message("r", "u", "m2", "k"),
            writes.comment(999_999, "u", "nowhere"),
            writes.comment(post_id, "u", "c2 again", "k"),
            writes.message("r", "u", "m2 again", "k"),
            writes.comment(post_id, "u", "c3"),
            writes.message("r", "u", "m3"),
        ]
    )
    assert [r[3] for r in results] == [False, False, False, False, None, True, True, False, False]
    assert isinstance(results[4][1], PostNotFound)
    assert [r[1][3] for i, r in enumerate(results) if i != 4] == [
        "m1",
        "c1",
        "c2",
        "m2",
        "c2",
        "m2",
        "c3",
        "m3",
    ]
    messages = [results[i][1] for i in (0, 3, 8)]
    comments = [results[i][1] for i in (1, 2, 7)]
    assert [m[0] for m in messages] == sorted(m[0] for m in messages)
    assert [c[0] for c in comments] == sorted(c[0] for c in comments)
    assert await store.recent_messages("r", 10) == (messages, False)
    assert await store.comments(post_id, 10) == (comments, False)
    assert (await store.post(post_id))[5] == 3


async def test_a_retried_comment_in_the_same_batch_is_stored_once(writes: Writes) -> None:
    post_id = (await writes.store.posts())[0][0]
    results = await done([writes.comment(post_id, "ana", "hi", "same") for _ in range(5)])
    assert [r[3] for r in results] == [False, True, True, True, True]
    assert len({r[1] for r in results}) == 1
    assert (await writes.store.post(post_id))[5] == 1


async def test_a_retried_comment_finds_its_original_wherever_it_is_kept(
    new_store: Factory,
) -> None:
    """Comments' client ids are kept as messages' are (SQLite: comment_clients, schema 11,
    filed with their post): a retry finds its original among the filed ones, the unfiled
    ones, those of its own batch and those another worker sharing the database wrote, and
    again after a restart. The same client id from the same user on another post is a new
    comment."""
    store = new_store()
    writes = await Writes(store).open()
    posts = [(await done(writes.post(f"p{i}", "c", "a")))[1][0] for i in range(7)]
    n = 7 * FILE_ROWS + 30  # 7 posts: each filed once, then a few more each, unfiled
    try:
        results = []
        for part in (range(n - 30), range(n - 30, n)):  # the second too few to file
            results += await done(
                [writes.comment(posts[i % 7], "ana", f"m{i}", f"c{i}") for i in part]
            )
        originals = {r[1][5]: r[1] for r in results}
        if isinstance(store, SqliteStore):
            upto = outside(store, "SELECT id FROM comment_posts_upto")
            assert 0 < upto < results[-1][1][0]  # c0 filed, the last ones unfiled
            assert 0 < outside(store, "SELECT count(*) FROM comment_clients") < n
        inject(
            store,
            'INSERT INTO comments(post_id, "user", comment, ts, client_id) VALUES (?, ?, ?, ?, ?)',
            (posts[0], "ana", "theirs", results[-1][1][4], "other-worker"),
        )
        theirs = outside(store, "SELECT max(id) FROM comments")
        newest = f"c{n - 1}"
        retries = [(0, "c0"), ((n - 1) % 7, newest), (0, "c0"), (0, "new"), (0, "new")]
        again = await done([writes.comment(posts[p], "ana", "retry", c) for p, c in retries])
        assert [r[3] for r in again] == [True, True, True, False, True]
        assert again[0][1] == again[2][1] == originals["c0"]
        assert again[1][1] == originals[newest]
        assert again[3][1] == again[4][1] and again[3][1][3] == "retry"
        _, found, _, dup = await done(writes.comment(posts[0], "ana", "retry", "other-worker"))
        assert dup is True and found[0] == theirs and found[3] == "theirs"
        _, elsewhere, _, dup = await done(writes.comment(posts[1], "ana", "there", "c0"))
        assert dup is False and elsewhere[3] == "there"
    finally:
        await store.close()
    store = new_store()
    writes = await Writes(store).open()
    try:
        for p, cid in ((0, "c0"), ((n - 1) % 7, newest)):
            _, found, _, dup = await done(writes.comment(posts[p], "ana", "x", cid))
            assert dup is True and found == originals[cid]
        _, found, _, dup = await done(writes.comment(posts[0], "ana", "x", "other-worker"))
        assert dup is True and found[0] == theirs
        # the originals, theirs, "new" and the one on the other post
        assert outside(store, "SELECT count(*) FROM comments") == n + 3
    finally:
        await store.close()


@pytest.mark.parametrize("closed", ["cleanly", "by-a-crash"])
async def test_sqlite_a_retry_of_a_comment_filed_before_a_restart_is_found(
    db_path: Path, closed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Comments have a client-id filter of their own, saved by a clean close
    (comment_client_keys) and filled from comment_clients after a crash: either way every
    retry of a comment filed before the restart is answered with its original."""
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    posts = [(await done(writes.post(f"p{i}", "c", "a")))[1][0] for i in range(7)]
    n = 7 * FILE_ROWS  # 7 posts of FILE_ROWS: every comment filed
    rows = [
        r[1]
        for r in await done(
            [writes.comment(posts[i % 7], "ana", f"m{i}", f"c{i}") for i in range(n)]
        )
    ]
    assert outside(store, "SELECT count(*) FROM comment_clients") == n
    if closed == "by-a-crash":  # nothing saved, as when the process dies
        monkeypatch.setattr(store, "_save_client_keys", lambda: None)
    await store.close()
    saved = outside(store, "SELECT count(*) FROM comment_client_keys")
    assert saved == (1 if closed == "cleanly" else 0)
    if saved:  # the saved filter answers: comment_clients is not read into one
        assert outside(store, "SELECT upto FROM comment_client_keys") == rows[-1][0]
        filed_keys = COMMENT_FILING.filed_keys_sql
        monkeypatch.setattr(COMMENT_FILING, "filed_keys_sql", filed_keys + " WHERE 0")
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    try:
        assert store._comment_tail.keys.ready  # misses skip the table
        again = await done(
            [writes.comment(posts[i % 7], "ana", "retry", f"c{i}") for i in range(n)]
        )
        assert [r[3] for r in again] == [True] * n
        assert [r[1] for r in again] == rows
        _, new, _, dup = await done(writes.comment(posts[0], "ana", "new", "fresh"))
        assert dup is False and new[3] == "new"
    finally:
        await store.close()


# --------------------------------------------------------------------------- history


async def fill(writes: Writes, room: str, n: int) -> list[tuple[Any, ...]]:
    results = await done([writes.message(room, "u", f"{room}-{i}") for i in range(n)])
    return [row for _, row, _, _ in results]


async def test_recent_messages_are_the_newest_n_in_chronological_order(writes: Writes) -> None:
    rows = await fill(writes, "r", 30)
    await fill(writes, "elsewhere", 5)
    got, more = await writes.store.recent_messages("r", 10)
    assert got == rows[-10:] and more is True
    got, more = await writes.store.recent_messages("r", 30)
    assert got == rows and more is False
    got, more = await writes.store.recent_messages("r", 100)
    assert got == rows and more is False
    assert await writes.store.recent_messages("nobody-here", 10) == ([], False)


async def test_before_paging_walks_1000_messages_back_exactly_once(writes: Writes) -> None:
    rows = await fill(writes, "big", 1000)
    await fill(writes, "noise", 50)
    seen: list[tuple[Any, ...]] = []
    before = None
    while True:
        page, more = await writes.store.recent_messages("big", 37, before=before)
        assert page == sorted(page)  # chronological within a page
        seen = page + seen
        if not more:
            break
        before = page[0][0]
    assert seen == rows


async def test_after_paging_walks_1000_messages_forward_exactly_once(writes: Writes) -> None:
    rows = await fill(writes, "big", 1000)
    seen: list[tuple[Any, ...]] = []
    after = 0
    while True:
        page, more = await writes.store.recent_messages("big", 64, after=after)
        seen += page
        if not more:
            break
        after = page[-1][0]
    assert seen == rows
    # Resuming from the last id seen returns nothing new.
    assert await writes.store.recent_messages("big", 64, after=rows[-1][0]) == ([], False)
    # Resuming from the middle returns exactly the rest.
    assert await writes.store.recent_messages("big", 1000, after=rows[499][0]) == (
        rows[500:],
        False,
    )


async def both_ways(read: Any, scope: Any, size: int) -> tuple[list[Any], list[Any]]:
    """Every row of a room (`read`: recent_messages) or a post (comments), read page by page
    of `size` from the newest back, and from the oldest on."""
    back: list[Any] = []
    before = None
    while True:
        page, more = await read(scope, size, before=before)
        back = page + back
        if not more:
            break
        before = page[0][0]
    forward: list[Any] = []
    after = 0
    while True:
        page, more = await read(scope, size, after=after)
        forward += page
        if not more:
            break
        after = page[-1][0]
    return back, forward


@pytest.mark.parametrize("kind", ["messages", "comments"])
async def test_pages_are_whole_where_filed_unfiled_and_unseen_rows_meet(
    writes: Writes, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """SQLite files a room's message ids in bulk (message_rooms: FILE_ROWS of a busy room
    at a time, a quiet room's once they are TRAILING_MAX behind), and a post's comment ids
    (comment_posts), keeps the unfiled ones in memory, and scans for what another worker
    sharing the file added since it last looked; that worker may file rows too. Pages
    spanning all of it, either way, in several sizes, hold every row of their room (post)
    once, in order, and none of another's."""
    monkeypatch.setattr("fastchat.trailing.TRAILING_MAX", 500)
    store = writes.store
    if kind == "messages":
        scopes: list[Any] = ["a", "b", "c", "quiet"]
        send, read, scope_column, filed = (
            writes.message,
            store.recent_messages,
            "room",
            "message_rooms",
        )
        columns, theirs_sql = (
            MESSAGE_COLUMNS,
            'INSERT INTO messages(room, "user", message, ts) VALUES (?, ?, ?, ?)',
        )
        file_everything = FILE_EVERYTHING[:-4]
    else:
        scopes = [(await done(writes.post(f"p{i}", "c", "a")))[1][0] for i in range(4)]
        send, read, scope_column, filed = writes.comment, store.comments, "post_id", "comment_posts"
        columns, theirs_sql = (
            COMMENT_COLUMNS,
            'INSERT INTO comments(post_id, "user", comment, ts) VALUES (?, ?, ?, ?)',
        )
        file_everything = FILE_EVERYTHING[-4:]
    busy, quiet = scopes[:3], scopes[3]

    def burst(start: int, n: int) -> list[asyncio.Future[Any]]:
        return [
            send(quiet if i % 97 == 0 else busy[i % 3], "u", f"m{i}")
            for i in range(start, start + n)
        ]

    first = await done(burst(0, 6 * FILE_ROWS + 50))
    for k in range(5):  # another worker's rows: caught up at our next commit
        inject(store, theirs_sql, (scopes[k % 4], "w", f"theirs{k}", first[-1][1][4]))
    if isinstance(store, SqliteStore):  # ... and its filing of everything so far
        for sql in file_everything:
            inject(store, sql, ())
    await done(burst(10_000, 4 * FILE_ROWS + 7))
    await done(send(quiet, "u", "alone"))  # left unfiled: the mark stays below
    await done(burst(20_001, 3 * FILE_ROWS + 20))  # the busy ones filed, above the mark
    last = await done(burst(30_001, 20))  # too few to file
    for k in range(3):  # and more of its rows, not yet seen by any commit of ours
        inject(store, theirs_sql, (busy[k], "w", f"late{k}", last[-1][1][4]))
    if isinstance(store, SqliteStore):
        upto = outside(store, f"SELECT id FROM {filed}_upto")
        assert 0 < upto < last[-1][1][0]  # some filed, some not: the test spans both
        filed_rows = outside(store, f"SELECT count(*) FROM {filed}")
        assert upto < filed_rows < outside(store, f"SELECT count(*) FROM {kind}")
    for scope in scopes:
        want = [
            tuple(r)
            for r in await store._fetch(
                f"SELECT {columns} FROM {kind} WHERE {scope_column} = ? ORDER BY id", (scope,)
            )
        ]
        assert len(want) > 5
        for size in (1, 7, 50, 1000):
            assert await both_ways(read, scope, size) == (want, want), (scope, size)


async def test_a_quiet_store_files_what_trails_and_still_finds_it(db_path: Path) -> None:
    """Messages trailing after the last commit are filed `file_after` seconds later (the
    default is one), even with no write to come: a quiet store reads through its tables
    alone. Pages and retries find them as before."""
    store = SqliteStore(db_path)
    store.file_after = 0.05
    writes = await Writes(store).open()
    try:
        rows = [
            r[1]
            for r in await done([writes.message("q", "u", f"m{i}", f"c{i}") for i in range(20)])
        ]
        deadline = time.monotonic() + TIMEOUT
        while outside(store, "SELECT id FROM message_rooms_upto") != rows[-1][0]:
            assert time.monotonic() < deadline, "the trailing messages were never filed"
            await asyncio.sleep(0.01)
        assert outside(store, "SELECT count(*) FROM message_rooms") == 20
        assert await store.recent_messages("q", 50) == (rows, False)
        assert await store.recent_messages("q", 5, after=rows[9][0]) == (rows[10:15], True)
        _, again, _, dup = await done(writes.message("q", "u", "retry", "c19"))
        assert dup is True and again == rows[19]
        _, new, _, dup = await done(writes.message("q", "u", "new", "c20"))
        assert dup is False and (await store.recent_messages("q", 1))[0] == [new]
    finally:
        await store.close()


async def test_a_version_5_database_files_its_rooms_messages_and_pages_them(
    db_path: Path,
) -> None:
    """Schema 6 replaced the index messages(room, id) by message_rooms: the messages of a
    database from before are all filed by the migration and page as they did."""
    conn = database_at(db_path, 5)
    with conn:
        conn.executemany(
            "INSERT INTO messages(room, user, message, ts, client_id) VALUES (?, 'u', ?, 1, ?)",
            [("r" if i % 2 else "s", f"old{i}", f"k{i}" if i % 3 else None) for i in range(300)],
        )
    conn.close()
    writes = await Writes(SqliteStore(db_path)).open()
    try:
        assert outside(writes.store, "SELECT count(*) FROM message_rooms") == 300
        assert outside(writes.store, "SELECT id FROM message_rooms_upto") == 300
        _, new, _, _ = await done(writes.message("r", "u", "new"))
        page, more = await writes.store.recent_messages("r", 3)
        assert [r[3] for r in page] == ["old297", "old299", "new"] and more is True
        page, _ = await writes.store.recent_messages("r", 500, after=0)
        assert [r[3] for r in page] == [f"old{i}" for i in range(1, 300, 2)] + ["new"]
        assert page[-1] == new
        # Their client ids were filed by migrations 6 and 7: a retry finds its original.
        _, again, _, dup = await done(writes.message("r", "u", "retry", "k295"))
        assert dup is True and again[3] == "old295"
    finally:
        await writes.store.close()


async def test_a_quiet_store_files_its_trailing_comments_and_still_finds_them(
    db_path: Path,
) -> None:
    """Comments left unfiled by the last commit are filed `file_after` seconds later too;
    pages and retries find them as before."""
    store = SqliteStore(db_path)
    store.file_after = 0.05
    writes = await Writes(store).open()
    try:
        post_id = (await store.posts())[0][0]
        rows = [
            r[1]
            for r in await done([writes.comment(post_id, "u", f"c{i}", f"k{i}") for i in range(20)])
        ]
        assert outside(store, "SELECT count(*) FROM comment_posts") == 0  # trailing, for now
        deadline = time.monotonic() + TIMEOUT
        while outside(store, "SELECT id FROM comment_posts_upto") != rows[-1][0]:
            assert time.monotonic() < deadline, "the trailing comments were never filed"
            await asyncio.sleep(0.01)
        assert outside(store, "SELECT count(*) FROM comment_posts") == 20
        assert await store.comments(post_id, 50) == (rows, False)
        assert await store.comments(post_id, 5, after=rows[9][0]) == (rows[10:15], True)
        _, again, _, dup = await done(writes.comment(post_id, "u", "retry", "k19"))
        assert dup is True and again == rows[19]
    finally:
        await store.close()


async def test_a_version_9_database_files_its_posts_comments_and_pages_them(
    db_path: Path,
) -> None:
    """Schema 10 replaced the index comments(post_id, id) by comment_posts: the comments of
    a database from before are all filed by the migration and page as they did."""
    conn = database_at(db_path, 9)
    with conn:
        conn.executemany(
            "INSERT INTO posts(id, title, content, author, ts) VALUES (?, ?, 'c', 'a', 1)",
            [(1, "p1"), (2, "p2")],
        )
        conn.executemany(
            "INSERT INTO comments(post_id, user, comment, ts, client_id) VALUES (?, 'u', ?, 1, ?)",
            [(1 + i % 2, f"old{i}", f"k{i}") for i in range(300)],
        )
    conn.close()
    writes = await Writes(SqliteStore(db_path, seed=False)).open()
    store = writes.store
    try:
        assert outside(store, "SELECT count(*) FROM comment_posts") == 300
        assert outside(store, "SELECT id FROM comment_posts_upto") == 300
        indexes = outside_rows(store, "SELECT name FROM sqlite_master WHERE type = 'index'")
        assert ("comments_post_id",) not in indexes and ("comments_client",) not in indexes
        assert outside(store, "SELECT count(*) FROM comment_clients") == 300
        _, new, _, _ = await done(writes.comment(2, "u", "new"))
        page, more = await store.comments(2, 3)
        assert [r[3] for r in page] == ["old297", "old299", "new"] and more is True
        page, _ = await store.comments(2, 500, after=0)
        assert [r[3] for r in page] == [f"old{i}" for i in range(1, 300, 2)] + ["new"]
        assert page[-1] == new
        _, again, _, dup = await done(writes.comment(1, "u", "retry", "k296"))
        assert dup is True and again[3] == "old296"
    finally:
        await store.close()


async def test_a_version_8_database_counts_each_posts_comments_once(db_path: Path) -> None:
    """Schema 9 keeps each post's comment count (post_counts), moved by every commit that
    adds comments to it: a database from before gets the counts of what it holds, and from
    then on a listing says what a count would, retries and refusals not counted."""
    conn = database_at(db_path, 8)
    with conn:
        conn.executemany(
            "INSERT INTO posts(id, title, content, author, ts) VALUES (?, ?, 'c', 'a', 1)",
            [(i, f"p{i}") for i in (1, 2, 3)],
        )
        conn.executemany(
            "INSERT INTO comments(post_id, user, comment, ts, client_id) "
            "VALUES (?, 'u', 'x', 1, ?)",
            [(1 + i % 2, f"k{i}") for i in range(7)],  # 4 on post 1, 3 on post 2
        )
    conn.close()
    writes = await Writes(SqliteStore(db_path, seed=False)).open()
    try:
        assert [(r[0], r[5]) for r in await writes.store.posts()] == [(3, 0), (2, 3), (1, 4)]
        results = await done(
            [writes.comment(3, "u", f"n{i}", f"m{i}") for i in range(5)]
            + [writes.comment(1, "u", "again", "k0")]  # a retry: the original, not counted
            + [writes.comment(99, "u", "nowhere")]  # no such post: refused
            + [writes.comment(2, "u", "new")]
        )
        assert [r[3] for r in results] == [False] * 5 + [True, None, False]
        counted = {r[0]: r[5] for r in await writes.store.posts()}
        assert counted == {1: 4, 2: 4, 3: 5}
        assert counted == dict(
            outside_rows(writes.store, "SELECT post_id, count(*) FROM comments GROUP BY 1")
        )
        assert (await writes.store.post(3))[5] == 5
    finally:
        await writes.store.close()


async def test_comment_paging_covers_every_comment_once(writes: Writes) -> None:
    post_id = (await writes.store.posts())[0][0]
    other = (await writes.store.posts())[1][0]
    results = await done([writes.comment(post_id, "u", f"c{i}") for i in range(250)])
    await done([writes.comment(other, "u", "x") for _ in range(10)])
    rows = [row for _, row, _, _ in results]
    back: list[tuple[Any, ...]] = []
    before = None
    while True:
        page, more = await writes.store.comments(post_id, 40, before=before)
        back = page + back
        if not more:
            break
        before = page[0][0]
    assert back == rows
    forward: list[tuple[Any, ...]] = []
    after = 0
    while True:
        page, more = await writes.store.comments(post_id, 40, after=after)
        forward += page
        if not more:
            break
        after = page[-1][0]
    assert forward == rows
    assert await writes.store.comments(post_id, 5) == (rows[-5:], True)


# --------------------------------------------------------------------------- lifecycle


async def test_close_commits_everything_queued_before_stopping(new_store: Factory) -> None:
    store = new_store()
    writes = await Writes(store).open()
    futs = [writes.message("r", "u", f"m{i}") for i in range(300)]
    await store.close()  # without waiting for a single result first
    results = await done(futs)
    assert all(isinstance(r[1], tuple) and r[3] is False for r in results)
    assert outside(store, "SELECT count(*) FROM messages") == 300


def test_sqlite_memory_statistics_go_off_only_before_any_connection() -> None:
    # SQLite may be shut down (to take the setting) only with no connection open: with one
    # open nothing happens; in a fresh process (the server's, first thing) they go off.
    conn = apsw.Connection(":memory:")
    try:
        assert without_memory_statistics() is False
        conn.execute("CREATE TABLE t(x)")  # the open connection still works
    finally:
        conn.close()
    fresh = (
        "import apsw\n"
        "from fastchat.sqlitestore import without_memory_statistics\n"
        "assert without_memory_statistics()\n"
        "c = apsw.Connection(':memory:')\n"
        "c.execute('CREATE TABLE t(x)')\n"
        "c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(1000)])\n"
        "assert apsw.memory_used() == 0, apsw.memory_used()\n"
    )
    subprocess.run([sys.executable, "-c", fresh], check=True, timeout=60)


async def test_sqlite_checkpoints_run_on_their_own_thread_and_keep_the_wal_bounded(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3,000 single-row transactions, one after the other: SQLite's own autocheckpoint (1,000
    # pages, the threshold here) would have run inside ~6 of those commits. Here the
    # checkpointer does it beside the writer, and the writer never does (the WAL stays under
    # the hard limit, ~26 MB at most).
    monkeypatch.setattr("fastchat.sqlitestore.WAL_CHECKPOINT_PAGES", 1000)
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    try:
        for i in range(3000):
            await done(writes.message("r", "u", f"message {i} " + "x" * 60))
        assert store.batches == 3000
        assert store.checkpoints >= 1
        assert store.inline_checkpoints == 0
    finally:
        await store.close()
    assert not os.path.exists(f"{db_path}-wal")  # the last close checkpoints the rest
    assert outside(store, "SELECT count(*) FROM messages") == 3000


async def test_sqlite_the_checkpointer_is_woken_per_wal_growth_not_per_commit(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Under steady writes the WAL seldom restarts: past the threshold, every commit woke
    # the checkpointer again. Now it is woken each time the WAL has grown by the threshold.
    monkeypatch.setattr("fastchat.sqlitestore.WAL_CHECKPOINT_PAGES", 50)
    store = SqliteStore(db_path, seed=False)
    woken = []

    def wal(pages: int) -> None:
        store._checkpoint_due.clear()
        store._on_wal(None, "main", pages)  # type: ignore[arg-type]
        woken.append(store._checkpoint_due.is_set())

    for pages in (10, 49, 50, 60, 99, 100, 151, 152, 5, 49, 50):  # 5: the WAL restarted
        wal(pages)
    assert woken == [False, False, True, False, False, True, True, False, False, False, True]


async def test_sqlite_the_writer_checkpoints_itself_when_the_checkpointer_falls_behind(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The checkpointer is never woken here; past the hard limit the writer checkpoints
    # between batches, so the WAL stays bounded whatever happens to the other thread.
    monkeypatch.setattr("fastchat.sqlitestore.WAL_CHECKPOINT_PAGES", 10**9)
    monkeypatch.setattr("fastchat.sqlitestore.WAL_HARD_PAGES", 200)
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    try:
        for i in range(300):
            await done(writes.message("r", "u", f"message {i}"))
        assert store.checkpoints == 0
        assert store.inline_checkpoints >= 1
        assert os.path.getsize(f"{db_path}-wal") < 2 * 200 * 4096 + 64 * 1024
    finally:
        await store.close()
    assert outside(store, "SELECT count(*) FROM messages") == 300


def commit_threads(store: Store) -> list[int]:
    """The thread of every commit from now on, in commit order (`on_batch` runs in it)."""
    threads: list[int] = []
    store.on_batch = lambda size, seconds: threads.append(threading.get_ident())
    return threads


async def test_sqlite_commits_on_the_loop_once_per_iteration(db_path: Path) -> None:
    # synchronous=NORMAL: a commit does not fsync, so it runs on the loop, one transaction
    # for everything submitted in one iteration; no thread hand-off.
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    try:
        threads = commit_threads(store)
        first = [writes.message(f"r{i % 3}", "u", f"a{i}") for i in range(50)]
        await done(first)
        second = [writes.message("r", "u", f"b{i}") for i in range(5)]
        await done(second)
        assert threads == [threading.get_ident()] * 2
        assert [len(b) for b in writes.batches] == [50, 5]
        assert store.thread_batches == 0
    finally:
        await store.close()


async def test_sqlite_with_synchronous_full_the_writer_thread_commits(db_path: Path) -> None:
    # Each commit waits for an fsync: the loop must not.
    store = SqliteStore(db_path, seed=False, synchronous="FULL")
    writes = await Writes(store).open()
    try:
        threads = commit_threads(store)
        results = await done([writes.message("r", "u", f"m{i}") for i in range(20)])
        assert [r[1][0] for r in results] == list(range(1, 21))
        assert threads and threading.get_ident() not in threads
        assert store.thread_batches == len(threads)  # counted, for /api/v1/stats
    finally:
        await store.close()
    assert outside(store, "SELECT count(*) FROM messages") == 20


async def test_sqlite_a_write_lock_held_elsewhere_is_waited_for_off_the_loop_in_order(
    db_path: Path,
) -> None:
    # Another connection (another worker, a script) holds the write lock: the loop does not
    # wait for it; the writer thread does, and what comes meanwhile waits its turn.
    store = SqliteStore(db_path, seed=False, busy_timeout_ms=int(TIMEOUT * 1000))
    writes = await Writes(store).open()
    other = sqlite(db_path)
    try:
        threads = commit_threads(store)
        other.execute("BEGIN IMMEDIATE")
        early = [writes.message("r", "u", f"early {i}") for i in range(3)]
        while not store._in_thread:  # the loop found the lock taken and handed them over
            await asyncio.sleep(0)
        late = [writes.message("r", "u", f"late {i}") for i in range(2)]
        for _ in range(5):  # a few iterations: nothing may overtake the held batch
            await asyncio.sleep(0)
        assert not any(f.done() for f in early + late)
        other.execute("COMMIT")
        results = await done(early + late)
        assert [r[1][3] for r in results] == [f"early {i}" for i in range(3)] + [
            f"late {i}" for i in range(2)
        ]
        ids = [r[1][0] for r in results]
        assert ids == sorted(ids)
        assert [len(b) for b in writes.batches] == [3, 2]
        assert threads[0] != threading.get_ident()  # the writer thread waited for the lock
        assert threads[1] == threading.get_ident()  # then the loop commits again
        assert store.thread_batches == 1
    finally:
        other.close()
        await store.close()


async def test_reopening_the_database_finds_the_data_and_ids_keep_rising(
    new_store: Factory,
) -> None:
    store = new_store()
    writes = await Writes(store).open()
    old = await fill(writes, "r", 20)
    _, dup_src, _, _ = await done(writes.message("r", "ana", "once", "cid"))
    await store.close()

    store = new_store()
    writes = await Writes(store).open()
    try:
        rows, _ = await store.recent_messages("r", 100)
        assert rows == [*old, dup_src]
        _, new, _, _ = await done(writes.message("r", "u", "after restart"))
        assert new[0] > dup_src[0]
        assert new[4] >= dup_src[4]  # timestamps never go backwards across a restart
        # Idempotency survives the restart too.
        _, again, _, dup = await done(writes.message("r", "ana", "once", "cid"))
        assert dup is True and again == dup_src
    finally:
        await store.close()


async def test_check_passes_while_open(writes: Writes) -> None:
    await writes.store.check()


async def test_close_is_safe_to_call_twice(new_store: Factory) -> None:
    store = new_store()
    await Writes(store).open()
    await store.close()
    await store.close()


# --------------------------------------------------------------------------- refused writes


async def test_a_refused_write_comes_back_as_store_error_and_the_writer_recovers(
    writes: Writes, caplog: pytest.LogCaptureFixture
) -> None:
    store = writes.store
    await refuse_writes(store, True)  # the database now refuses every write
    with caplog.at_level(logging.ERROR, logger="fastchat.store"):
        results = await done(
            [
                writes.message("r", "u", "lost"),
                writes.comment(1, "u", "lost"),
                writes.post("t", "c", "a"),
            ]
        )
    for (op, error, _, dup), kind in zip(results, (OP_MESSAGE, OP_COMMENT, OP_POST), strict=True):
        assert op == kind
        assert isinstance(error, StoreError)
        assert str(error).startswith("the database refused the write")
        assert dup is None
    assert store.failed_batches >= 1
    assert store.pending == 0
    assert "failed" in caplog.text
    assert await store.recent_messages("r", 10) == ([], False)
    await store.check()  # the writer is still alive

    await refuse_writes(store, False)
    _, row, _, dup = await done(writes.message("r", "u", "kept"))
    assert dup is False and row[3] == "kept"
    assert await store.recent_messages("r", 10) == ([row], False)


# Root ignores file permissions, so unwritable places are made with what root cannot get
# past either: a file where a folder must be, a folder where the database file must be.


async def test_sqlite_database_under_a_file_is_refused_with_a_store_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    db_path = tmp_path / "not-a-dir" / "chat.db"
    store = SqliteStore(db_path)
    with pytest.raises(StoreError, match="not-a-dir"):
        await Writes(store).open()
    await store.close()


async def test_sqlite_folder_in_place_of_the_database_is_refused_with_a_store_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "chat.db").mkdir()
    store = SqliteStore(tmp_path / "chat.db")
    with pytest.raises(StoreError, match=r"chat\.db"):
        await Writes(store).open()
    await store.close()


FOREIGN = {
    "someone else's tables": (
        "PRAGMA user_version=1; CREATE TABLE foo(x)",
        "schema version 1 but no table messages",
    ),
    "other columns": (
        "PRAGMA user_version=1; CREATE TABLE messages(a, b); CREATE TABLE posts(x);"
        "CREATE TABLE comments(y)",
        r"table messages has columns \(a, b\), expected \(id, room, user,",
    ),
    "an index missing": (
        "DROP INDEX changes_scope",
        f"schema version {SCHEMA_VERSION} but no index changes_scope",
    ),
    "tables but no version": ("CREATE TABLE foo(x)", r"it has tables \(foo\) but no schema"),
}


@pytest.mark.parametrize("case", FOREIGN)
async def test_sqlite_someone_elses_database_is_refused_untouched(db_path: Path, case: str) -> None:
    sql, problem = FOREIGN[case]
    if sql.startswith("DROP"):  # a fastchat database, damaged
        store = SqliteStore(db_path)
        await Writes(store).open()
        await store.close()
    conn = sqlite(db_path)
    conn.execute(sql)
    conn.close()
    before = db_path.read_bytes()
    store = SqliteStore(db_path)
    with pytest.raises(StoreError, match=f"{db_path} is not a fastchat database: {problem}"):
        await Writes(store).open()
    await store.close()
    assert db_path.read_bytes() == before  # nothing written, not even the switch to WAL


async def test_sqlite_a_vanished_file_is_refused_and_a_batch_in_it_taken_back(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "data" / "chat.db")
    writes = await Writes(store).open()
    kept = (await done(writes.message("r", "u", "kept")))[1]
    (tmp_path / "data").rename(tmp_path / "away")
    # Committed into the file moved away, then found out: refused, and taken back out.
    _, error, _, _ = await done(writes.message("r", "u", "refused"))
    assert isinstance(error, StoreError) and "removed or replaced" in str(error)
    with pytest.raises(StoreError, match="removed or replaced"):
        await store.check()
    # Back in place, it stays refused (the connections hold the old inode, same here, but
    # the store does not reopen or trust it until a restart); reads go on.
    (tmp_path / "away").rename(tmp_path / "data")
    _, error, _, _ = await done(writes.post("t", "c", "a"))
    assert isinstance(error, StoreError)
    assert (await store.recent_messages("r", 10))[0] == [kept]
    assert store.failed_batches == 2
    await store.close()


async def test_a_write_sqlite_cannot_take_is_a_store_error_and_the_writer_goes_on(
    writes: Writes, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    crashed: asyncio.Future[BaseException | None] = loop.create_future()
    monkeypatch.setattr(
        threading,
        "excepthook",
        lambda args: loop.call_soon_threadsafe(crashed.set_result, args.exc_value),
    )
    bad = writes.message("r", "u", "lone surrogate \udc80")
    # Whichever comes first: the result, or the writer thread dying.
    await asyncio.wait_for(
        asyncio.wait({bad, crashed}, return_when=asyncio.FIRST_COMPLETED), TIMEOUT
    )
    assert bad.done(), f"no result: the writer thread died of {crashed.result()!r}"
    assert isinstance(bad.result()[1], StoreError)
    _, row, _, _ = await done(writes.message("r", "u", "fine"))
    assert row[3] == "fine"
    await writes.store.check()


async def test_a_rolled_back_batch_leaves_nothing_in_any_rooms_pages(writes: Writes) -> None:
    """A batch is one transaction: a message (or comment) that went in before a later write
    of the batch failed is rolled back with it, and its id goes to the next message, here in
    another room. Neither room's page shows a message that is not its own, and the post's
    comment count counts no comment that is not there."""
    store = writes.store
    _, before, _, _ = await done(writes.message("r", "u", "before"))
    post_id = (await store.posts())[0][0]
    results = await done(
        [
            writes.message("r", "u", "gone"),
            writes.comment(post_id, "u", "gone too"),
            writes.comment(post_id, "u", "lone \udc80"),
        ]
    )
    assert all(isinstance(r[1], StoreError) for r in results)
    assert await store.recent_messages("r", 10) == ([before], False)
    _, other, _, _ = await done(writes.message("elsewhere", "u", "next"))
    assert await store.recent_messages("r", 10) == ([before], False)
    assert await store.recent_messages("r", 10, after=0) == ([before], False)
    assert await store.recent_messages("elsewhere", 10) == ([other], False)
    # The comments' ids go to another post's: the first post's pages stay empty.
    elsewhere = (await store.posts())[1][0]
    _, theirs, _, _ = await done(writes.comment(elsewhere, "u", "next"))
    assert await store.comments(post_id, 10) == ([], False)
    assert await store.comments(post_id, 10, after=0) == ([], False)
    assert await store.comments(elsewhere, 10) == ([theirs], False)
    await done(writes.comment(post_id, "u", "kept"))
    assert (await store.post(post_id))[5] == 1


# ------------------------------------------------------------------ checked in the transaction


async def test_a_comment_on_a_missing_post_is_refused_alone(writes: Writes) -> None:
    post_id = (await writes.store.posts())[0][0]
    results = await done(
        [
            writes.comment(post_id, "u", "before"),
            writes.comment(999_999, "u", "nowhere"),
            writes.comment(999_999, "u", "nowhere, retried", "k"),
            writes.comment(post_id, "u", "after"),
        ]
    )
    kinds = [type(r[1]) for r in results]
    assert kinds == [tuple, PostNotFound, PostNotFound, tuple]
    assert str(results[1][1]) == "post 999999 does not exist"
    assert isinstance(results[1][1], StoreError)  # so callers that only know StoreError see it
    rows, _ = await writes.store.comments(post_id, 10)
    assert [r[3] for r in rows] == ["before", "after"]
    assert outside(writes.store, "SELECT count(*) FROM comments") == 2
    assert writes.store.failed_batches == 0  # the batch committed; only that op was refused


async def test_stamps_never_go_back_behind_another_writers_rows(writes: Writes) -> None:
    """Workers and nodes share one database and their clocks may differ: a batch is stamped no
    earlier than the newest row already stored, so time-bounded history stays exact."""
    _, first, _, _ = await done(writes.message("r", "u", "mine"))
    future = first[4] + 3_600_000  # another writer, an hour ahead
    inject(
        writes.store,
        'INSERT INTO messages(room, "user", message, ts) VALUES (?, ?, ?, ?)',
        ("r", "other", "from the future", future),
    )
    _, mine, _, _ = await done(writes.message("r", "u", "after it"))
    assert mine[4] >= future
    # A time query finds the rows in id order.
    page = await writes.store.page("messages", "r", 10, since_ms=future)
    assert [r[3] for r in page.rows] == ["from the future", "after it"]


async def test_sqlite_a_commit_reads_the_tails_again_only_after_another_writer(
    db_path: Path,
) -> None:
    """The writer reads the newest timestamp and where each tail stands at a commit's start
    only when another connection has committed since its own last commit (SQLite's data
    version): back to back, it knows them; after another worker's row, it reads them, and
    its next ids and stamps come after that row."""
    store = SqliteStore(db_path, seed=False)
    writes = await Writes(store).open()
    try:
        await done(writes.message("r", "u", "first"))
        statements: list[str] = []
        assert store._writer is not None
        store._writer.exec_trace = lambda _cursor, sql, _bindings: statements.append(sql) or True
        await done(writes.message("r", "u", "second"))
        assert LAST_TS_SQL not in statements
        assert not any(sql == store._tails()[0][1].tail_sql for sql in statements)
        future = int(time.time() * 1000) + 3_600_000
        inject(
            store,
            'INSERT INTO messages(room, "user", message, ts) VALUES (?, ?, ?, ?)',
            ("r", "other", "theirs", future),
        )
        theirs = outside(store, "SELECT max(id) FROM messages")
        statements.clear()
        _, row, _, _ = await done(writes.message("r", "u", "third"))
        assert LAST_TS_SQL in statements
        assert row[0] == theirs + 1 and row[4] >= future
        page = await store.page("messages", "r", 10)
        assert [r[3] for r in page.rows] == ["first", "second", "theirs", "third"]
    finally:
        await store.close()


def kill_connections(url: str) -> int:
    """Terminate every other session on the database of `url` (as a restart would)."""
    with psycopg.connect(url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def test_postgres_store_rides_out_its_connections_being_killed(
    postgres: Postgres,
) -> None:
    store = PostgresStore(postgres.new_database())
    writes = await Writes(store).open()
    try:
        _, before, _, _ = await done(writes.message("r", "u", "before"))
        assert await store.recent_messages("r", 10) == ([before], False)
        assert store._writer is not None
        backend = store._writer.info.backend_pid
        assert kill_connections(store.url) >= 2  # the writer and the read pool

        # Nothing had been sent to write when the writer found its connection dead: the
        # batch goes again on a new one, and its sender sees no error.
        _, after, _, dup = await done(writes.message("r", "u", "after"))
        assert not isinstance(after, StoreError), after
        assert dup is False and after[3] == "after"
        assert store._writer.info.backend_pid != backend
        assert store.failed_batches == 0
        # Reads replace the pool's dead connections and read again.
        assert await store.recent_messages("r", 10) == ([before, after], False)
        await store.check()
    finally:
        await store.close()


async def test_postgres_store_answers_store_error_while_the_database_is_gone(
    postgres: Postgres,
) -> None:
    url = postgres.new_database()
    store = PostgresStore(url, read_timeout=1.0)
    writes = await Writes(store).open()
    name = url.rsplit("/", 1)[1]
    admin = postgres.url()
    try:
        # No new sessions on the database, and the current ones killed: it is gone for us.
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
        _, error, _, _ = await done(writes.message("r", "u", "refused"))
        assert isinstance(error, StoreError)
        with pytest.raises(StoreError, match="did not answer"):
            await store.recent_messages("r", 10)
        # Back: the writer and the reads recover by themselves.
        with psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        _, row, _, _ = await done(writes.message("r", "u", "kept"))
        assert not isinstance(row, StoreError), row
        # The read pool reconnects in the background, with psycopg_pool's backoff (~1 s).
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                rows, _ = await store.recent_messages("r", 10)
                break
            except StoreError:
                assert time.monotonic() < deadline, "the read pool never came back"
        assert [r[3] for r in rows] == ["kept"]
    finally:
        await store.close()


async def test_postgres_statements_are_prepared_once_and_reused(postgres: Postgres) -> None:
    store = PostgresStore(postgres.new_database())
    writes = await Writes(store).open()
    try:
        await done([writes.message("r", "u", f"m{i}") for i in range(20)])
        await done([writes.message("r", "u", f"n{i}") for i in range(20)])
        assert store._writer is not None
        cur = await store._writer.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE 'INSERT%'",
            prepare=False,
        )
        inserts = [row[0] for row in await cur.fetchall()]
        # One server-side statement for every message insert, whatever the number of rows.
        assert len([s for s in inserts if "INTO messages" in s]) == 1
    finally:
        await store.close()


async def test_clustered_rows_carry_their_rooms_previous_id(new_store: Factory) -> None:
    """With `track_previous` (clustered), each new message or comment row ends with the id
    before it in its room or post, read under the write lock: the delivery hands a row out
    directly when everything up to that id has been."""
    store = new_store()
    store.track_previous = True
    writes = await Writes(store).open()
    try:
        post_id = (await store.posts())[0][0]
        results = await done(
            [
                writes.message("r", "u", "a"),
                writes.message("other", "u", "x"),
                writes.message("r", "u", "b"),
                writes.comment(post_id, "u", "c1"),
                writes.comment(post_id, "u", "c2"),
            ]
        )
        a, x, b, c1, c2 = (r[1] for r in results)
        assert (a[8], x[8], b[8]) == (0, 0, a[0])
        assert (c1[8], c2[8]) == (0, c1[0])
        # Another node's row in between: the next row of the room names it.
        inject(
            store,
            'INSERT INTO messages(room, "user", message, ts) VALUES (?, ?, ?, ?)',
            ("r", "other-node", "theirs", b[4]),
        )
        theirs = (await store.recent_messages("r", 1))[0][0]
        _, mine, _, _ = await done(writes.message("r", "u", "c"))
        assert mine[8] == theirs[0] > b[0]
        # A retry returns the stored row as read back, without the extra field.
        _, again, _, dup = await done(writes.message("r", "u", "d", "k"))
        _, same, _, dup2 = await done(writes.message("r", "u", "d", "k"))
        assert dup is False and dup2 is True and same == again[:8]
    finally:
        await store.close()


async def test_drained_waits_for_every_write_submitted_so_far(writes: Writes) -> None:
    """SIGTERM's drain: `drained` returns once everything submitted has been handed back
    (it polled `pending` every 5 ms before), and at once when nothing is pending."""
    await asyncio.wait_for(writes.store.drained(), TIMEOUT)  # nothing pending
    futs = [writes.message("r", "u", f"m{i}") for i in range(200)]
    assert writes.store.pending == 200
    await asyncio.wait_for(writes.store.drained(), TIMEOUT)
    assert writes.store.pending == 0
    assert all(f.done() for f in futs)
