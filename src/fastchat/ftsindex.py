"""The SQLite store's full-text index, kept off the write path.

Messages and comments are indexed in FTS5 tables (`messages_fts`, `comments_fts`:
contentless, rowid = the item's id, `columnsize=0`: no per-row size record, schema 12).
Triggers on the tables would index each row in the writer's own transaction; measured here,
that made a message insert cost 41 us instead of 6.7, and the ingest path is what this
server is for. So an indexer of its own, on its own connection and thread, catches up with
what was committed: new rows in id order, in transactions of at most CHUNK rows, off the
loop. `search_index` remembers how far it got (`last_id`), so a restart (or a database
from before search: migration 4, or from before schema 12) goes on from there.

Edits and deletions: the transaction that changes an item the index holds (id up to
`last_id`; the indexer's own transactions hold the write lock, so that is exact) notes the
text it was indexed with in `search_pending` (`follow_change`; only the first change of an
item since the indexer last looked: later ones leave the note, whose text is still what the
index has). The indexer then drops those words with FTS5's `delete` command, which must be
given exactly the indexed text, and indexes the item as it is now (nothing if deleted). An
item not indexed yet needs no note: it is indexed as it is then. The FTS5 work stays on the
indexer's thread: done in the writer's transaction on the loop, an edit's words would be a
segment of their own, and the one that completes a level of `automerge` segments merges
them all there (hundreds of thousands of rows). Before schema 12 the indexer re-read
changed items from `changes`, which needed FTS5's `contentless_delete` and with it a size
record per row (`%_docsize`): 8 % of the WAL's pages under unpipelined ingest, and
more than a quarter of the index's CPU (`python -m bench.ftscost --rows 200000`, both in one
session: 2.06-2.09 us a message with it, 1.51-1.52 without). Ranking (bm25) without sizes
weighs how often and how rare a word is, not how long the item is.

Indexing is work the server can put off, and under load it does. So while the store is busy
(BUSY_ROWS or more committed since the last poll) the index is left to trail, until it is
LAG_ROWS behind; then, and whenever the store is quieter, it catches up in transactions of
CHUNK rows. A search never sees the lag: it catches up first (at most LAG_ROWS rows, ~0.2 s,
and only under load).

What a row costs is mostly FTS5's merging: each transaction flushes its words as a new
segment, and FTS5 merges segments of a level into one of the next (rewriting every row
again) once `automerge` of them are there; a transaction past `hashsize` bytes of words
flushes more than one. Measured on this machine (`python -m bench.ftscost`: 8-word
messages, caught up 100,000 at a time, CPU per message): with FTS5's defaults in
transactions of 5,000 rows, 3.2 us for the first 200,000 and 3.6 us over 1 million; in
transactions of 20,000 with `hashsize` 4 MB (one segment each) and `automerge` 16 (fewer,
larger merges), 1.5 and 1.8 us, 2x less. A search was as fast either way. The
settings persist in each table's config and are set at every start (TUNING): files from
before get them too, with no schema version.

A search first asks the indexer to catch up (`catch_up`, on the search's thread): whatever
was committed before a search began is found by it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

import apsw

log = logging.getLogger("fastchat.store")

# Rows indexed per transaction: about 30 ms of the write lock at most.
CHUNK: Final = 20_000
# FTS5's merge settings (see the module's docstring): a transaction of CHUNK rows' words
# (about 2 MB) flushed as one segment, and segments merged 16 at a time.
TUNING: Final = (("automerge", 16), ("hashsize", 4 << 20))
# The newest ids of what is indexed: a catch-up with none of them changed has nothing to do.
_NEWEST: Final = (
    "SELECT (SELECT coalesce(max(id), 0) FROM messages), "
    "(SELECT coalesce(max(id), 0) FROM comments), (SELECT coalesce(max(id), 0) FROM changes)"
)
# How often the indexer thread looks for new rows when nobody searches.
POLL_SECONDS: Final = 0.5
# Rows committed within one poll from which the store counts as busy (10,000 a second).
BUSY_ROWS: Final = 5000
# How far (rows) the index may trail while the store is busy.
LAG_ROWS: Final = 100_000
_LAG: Final = (
    "SELECT (SELECT coalesce(max(id), 0) FROM messages) "
    "+ (SELECT coalesce(max(id), 0) FROM comments) "
    "- (SELECT coalesce(sum(last_id), 0) FROM search_index) "
    "+ (SELECT count(*) FROM search_pending)"
)
# (changes.kind and search_index.kind, the table, its text and scope columns, the index's
# columns and what fills them from a row: its text, and its room's name (in hex: one token,
# whatever the name, so rooms that share a word do not share it here) or its post's id; and
# from the parameters of _FOLLOW's statements: ?2 the text, ?3 the room or post id)
_TABLES: Final = (
    (1, "messages", "message", "room", "message, room", "message, hex(room)", "?2, hex(?3)"),
    (2, "comments", "comment", "post_id", "comment, post", "comment, post_id", "?2, ?3"),
)
# changes.kind -> how the indexer drops an item's words (FTS5's `delete` command, given
# the values it was indexed with) and indexes its new ones.
_FOLLOW: Final = {
    kind: (
        f"INSERT INTO {table}_fts({table}_fts, rowid, {columns}) VALUES ('delete', ?1, {params})",
        f"INSERT INTO {table}_fts(rowid, {columns}) VALUES (?1, {params})",
    )
    for kind, table, _, _, columns, _, params in _TABLES
}
# The noted items of a kind: (id, the text indexed, its room or post id, its text now, and
# whether it is deleted).
_PENDING: Final = {
    kind: (
        f"SELECT p.item_id, p.old, t.{scope}, t.{text}, t.deleted_at IS NOT NULL "
        f"FROM search_pending p JOIN {table} t ON t.id = p.item_id WHERE p.kind = ? "
        "ORDER BY p.item_id LIMIT ?"
    )
    for kind, table, text, scope, *_ in _TABLES
}


def follow_change(conn: apsw.Connection, kind: int, item_id: int, old: str) -> None:
    """In the write transaction that edits or deletes item `item_id` of changes.kind `kind`,
    whose text was `old`: note it for the indexer, if the index holds it and has no note of
    it yet (the first note's text is the one indexed)."""
    done = conn.execute("SELECT last_id FROM search_index WHERE kind = ?", (kind,)).fetchone()
    if done is None or item_id > done[0]:
        return  # not indexed yet: the indexer takes it as it is then
    conn.execute(
        "INSERT OR IGNORE INTO search_pending(kind, item_id, old) VALUES (?, ?, ?)",
        (kind, item_id, old),
    )


class Indexer:
    """Keeps `messages_fts` and `comments_fts` up with their tables."""

    def __init__(self, conn: apsw.Connection, committed: Callable[[], int] = lambda: 0) -> None:
        # Opened with the store's other connections: one opened later, after the file was
        # moved away or deleted, would create an empty database at its path.
        self._conn: apsw.Connection | None = conn
        self._lock = threading.Lock()  # one catch-up at a time: the thread's or a search's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.indexed = 0  # rows indexed since start
        self._seen: tuple[Any, ...] | None = None  # the newest ids at the last catch-up
        self._committed = committed  # rows the store has committed so far (its counter)
        self._tuned = False  # TUNING set in this process

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fastchat-indexer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self) -> None:
        committed = self._committed()
        while not self._stop.wait(POLL_SECONDS):
            committed, before = self._committed(), committed
            try:
                if committed - before >= BUSY_ROWS and self.lag() < LAG_ROWS:
                    continue  # busy: put off
                self.catch_up()
            except apsw.Error as exc:  # a locked or failing database: the next poll retries
                log.warning("indexing for search failed (retried): %r", exc)

    def lag(self) -> int:
        """About how many rows are not indexed yet (an estimate from the ids: deleted rows
        count too)."""
        with self._lock:
            if self._conn is None:
                return 0
            return int(_rows(self._conn, _LAG, ())[0][0])

    def catch_up(self) -> None:
        """Index everything committed so far (on the calling thread)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return  # stopped
            # Nothing new since the last look: no transaction, no write lock (the writer's
            # commits on the loop never wait for a lock: one held here sends them to the
            # writer thread).
            newest = _rows(conn, _NEWEST, ())[0]
            if newest == self._seen:
                return
            while self._step(conn):
                pass
            self._seen = newest

    def _step(self, conn: apsw.Connection) -> bool:
        """One transaction: up to CHUNK new rows and CHUNK noted changes of each table.
        True if there is more."""
        more = False
        # The write lock first (BEGIN IMMEDIATE): a read snapshot taken first could not be
        # upgraded once the writer had committed after it (SQLITE_BUSY_SNAPSHOT).
        conn.execute("BEGIN IMMEDIATE")
        try:
            more = self._index(conn)
            conn.execute("COMMIT")
            self._tuned = True
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return more

    def _index(self, conn: apsw.Connection) -> bool:
        """Up to CHUNK new rows and CHUNK noted changes of each table, in the open
        transaction; True if there is more to do."""
        more = False
        if not self._tuned:
            for _, table, *_ in _TABLES:
                for key, value in TUNING:
                    conn.execute(
                        f"INSERT INTO {table}_fts({table}_fts, rank) VALUES (?, ?)", (key, value)
                    )
        for kind, table, _, _, columns, values, _ in _TABLES:
            done = _rows(conn, "SELECT last_id FROM search_index WHERE kind = ?", (kind,))
            last_id = int(done[0][0]) if done else 0
            newest, count = _rows(
                conn,
                f"SELECT coalesce(max(id), ?), count(*) FROM (SELECT id FROM {table} "
                "WHERE id > ? ORDER BY id LIMIT ?)",
                (last_id, last_id, CHUNK),
            )[0]
            new_last = int(newest)
            changed = _rows(conn, _PENDING[kind], (kind, CHUNK))
            if changed:
                drop, add = _FOLLOW[kind]
                for item_id, old, scope, text, deleted in changed:
                    conn.execute(drop, (item_id, old, scope))
                    if not deleted:
                        conn.execute(add, (item_id, text, scope))
                conn.executemany(
                    "DELETE FROM search_pending WHERE kind = ? AND item_id = ?",
                    [(kind, row[0]) for row in changed],
                )
                self.indexed += len(changed)
                more = more or len(changed) == CHUNK
            if new_last == last_id:
                continue
            # A deleted row is not indexed (a change after this is noted: `follow_change`).
            conn.execute(
                f"INSERT INTO {table}_fts(rowid, {columns}) SELECT id, {values} "
                f"FROM {table} WHERE id > ? AND id <= ? AND deleted_at IS NULL",
                (last_id, new_last),
            )
            self.indexed += count
            more = more or count == CHUNK
            # last_change: unused since schema 12 (changes are noted in search_pending).
            conn.execute(
                "INSERT OR REPLACE INTO search_index(kind, last_id, last_change) VALUES (?, ?, 0)",
                (kind, new_last),
            )
        return more


def _rows(conn: apsw.Connection, sql: str, params: tuple[Any, ...]) -> Any:
    return conn.execute(sql, params).fetchall()
