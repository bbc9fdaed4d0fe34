"""ftsindex.Indexer on a real SQLite file: it indexes what was committed, follows edits and
deletions from the changes table, resumes where it stopped, and takes no lock when there is
nothing new."""

from __future__ import annotations

from pathlib import Path

import apsw

from fastchat.ftsindex import CHUNK, TUNING, Indexer
from fastchat.sqlitestore import SqliteStore


def database(path: Path) -> apsw.Connection:
    SqliteStore(str(path), seed=False).prepare()
    conn = apsw.Connection(str(path))
    conn.set_busy_timeout(2000)
    return conn


def found(conn: apsw.Connection, word: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid",
            (f'message : "{word}"',),
        )
    ]


def test_it_indexes_new_rows_and_follows_edits_and_deletions(tmp_path: Path) -> None:
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
    # An edit of 1, a deletion of 2: rows changed and a `changes` row each, as the writer does.
    with conn:
        conn.execute("UPDATE messages SET message = 'delta', edited_at = 3 WHERE id = 1")
        conn.execute("UPDATE messages SET message = '', deleted_at = 3 WHERE id = 2")
        conn.execute("INSERT INTO changes(kind, scope, item_id, ts) VALUES (1, 'r', 1, 3)")
        conn.execute("INSERT INTO changes(kind, scope, item_id, ts) VALUES (1, 'r', 2, 3)")
    indexer.catch_up()
    assert found(conn, "beta") == [] and found(conn, "delta") == [1]
    indexer.stop()
    # A new indexer (a restart) goes on from where this one stopped.
    with conn:
        conn.execute(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (3, "r", "u", "delta", 4)'
        )
    again = Indexer(apsw.Connection(str(path)))
    again.catch_up()
    assert found(conn, "delta") == [1, 3] and again.indexed == 1
    again.stop()


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
    LAG_ROWS: the lag it goes by is the rows and changes committed and not yet indexed."""
    path = tmp_path / "chat.db"
    conn = database(path)
    indexer = Indexer(apsw.Connection(str(path)))
    assert indexer.lag() == 0
    with conn:
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)',
            [(i, "r", "u", f"word{i}", i) for i in range(1, 8)],
        )
    assert indexer.lag() == 7
    indexer.catch_up()
    assert indexer.lag() == 0 and found(conn, "word7") == [7]
    # Edits of messages only: the comments' side has nothing to do, and counts as done.
    with conn:
        conn.execute("UPDATE messages SET message = 'other', edited_at = 9 WHERE id = 7")
        conn.execute("INSERT INTO changes(kind, scope, item_id, ts) VALUES (1, 'r', 7, 9)")
    assert indexer.lag() == 2  # an estimate: a change counts for both tables until indexed
    indexer.catch_up()
    assert indexer.lag() == 0 and found(conn, "word7") == [] and found(conn, "other") == [7]
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
