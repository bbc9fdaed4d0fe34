"""The embedded default store: APSW on SQLite in WAL mode with group commit.

Writes are queued from the event loop and committed at the end of the loop iteration that
queued them: everything that arrived in one iteration goes into one transaction
(`BEGIN IMMEDIATE` ... `COMMIT`), so a lone message is never held back by a timer and a
burst costs one fsync-free commit (WAL + synchronous=NORMAL: 0.5-0.9M rows/s measured here
at 100 rows per transaction, DESIGN.md). The commit runs on the loop itself: with
synchronous=NORMAL it writes into the OS cache and never fsyncs, which costs less than
handing the batch to a thread and back (issue 14: `_write_tick`). A writer thread commits
instead whenever the loop must not wait: synchronous=FULL or EXTRA (an fsync per commit),
a write lock held by another connection, a WAL past its hard limit.

Only after COMMIT returns are the results handed to the service: nothing is broadcast or
acknowledged before its transaction is durable.

Checkpoints (copying the WAL back into the database file, with its two fsyncs) run on a
checkpointer thread with its own connection, never inside a commit: SQLite's automatic
checkpoint would run in the COMMIT of every ~460th single-row batch and hold it, and every
message queued behind it, for ~3-4 ms here (more on a slow disk). A PASSIVE checkpoint does
not block the writer. Should the WAL still reach `WAL_HARD_PAGES` (the checkpointer starved
of CPU, say), the writer checkpoints itself between batches, so the WAL stays bounded.

Reads (history, posts, health) are coroutines, so a networked database (`pgstore.py`) can
await them; on SQLite they run on the loop over their own connection, bounded index range
scans that never suspend.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import apsw

from fastchat.ftsindex import Indexer, follow_change
from fastchat.sqliteschema import MIGRATIONS, SCHEMA_VERSION, schema_problem
from fastchat.store import (
    BAN_COLUMNS,
    CHANGE_KIND,
    CHANGE_OPS,
    CHANGE_SQL,
    COMMENT_COLUMNS,
    INSERT_CHANGE_SQL,
    ITEM_SQL,
    LAST_TS_SQL,
    MESSAGE_COLUMNS,
    OP_BAN,
    OP_COMMENT,
    OP_MESSAGE,
    OP_POST,
    OP_UNBAN,
    SAMPLE_POSTS,
    SEARCH_WINDOW,
    Edit,
    EditRefused,
    OnCommitted,
    PostNotFound,
    Result,
    Row,
    Store,
    StoreError,
    Write,
    _now_ms,
    decide_change,
    log_schema,
)
from fastchat.trailing import ClientKeys, Trailing

log = logging.getLogger("fastchat.store")

# A post's columns: its count kept in post_counts (migration 9), not counted per read on
# the loop.
SQLITE_POST_COLUMNS: Final = (
    "id, title, content, author, ts, "
    "coalesce((SELECT comments FROM post_counts c WHERE c.post_id = p.id), 0)"
)
# A post's comment count moved by ?1 (one upsert per post per commit).
COUNT_COMMENTS_SQL: Final = (
    "INSERT INTO post_counts(post_id, comments) VALUES (?2, ?1) "
    "ON CONFLICT (post_id) DO UPDATE SET comments = comments + excluded.comments"
)

_TABLE_OF: Final = {OP_MESSAGE: "messages", OP_COMMENT: "comments", OP_POST: "posts"}
# Seconds after a commit that left messages unfiled when they are all filed (if no commit
# filed them since): a quiet store's reads go through its tables alone, and a restart reads
# back no tail.
FILE_AFTER_S: Final = 1.0
# message_clients and comment_clients are keyed by the id's bucket first (migrations 7 and
# 11), so that filing appends to the newest bucket (Filing).
CLIENT_BUCKET_BITS: Final = 16
# A message's (room, user, client_id), a comment's (post id, user, client_id).
ClientKey = tuple[Any, str, str]
# WAL pages (4 kB) written since the checkpointer was last woken that wake it again (~16 MB).
# A checkpoint copies each page in the WAL once, however often it was rewritten, and syncs
# twice: at SQLite's autocheckpoint threshold (1,000 pages), unpipelined ingest spent 1.7x
# the checkpointer CPU it spends at this one (issue 14: 17-18 against 9-10 ticks a 5 s run,
# 3.6 % and 2 % of the server's CPU; four runs each).
WAL_CHECKPOINT_PAGES: Final = 4000
# WAL pages past which the writer checkpoints itself (~40 MB). SQLite restarts the WAL only
# when a transaction begins with all of it copied back, which under continuous commits
# seldom coincides with the checkpointer finishing; so the WAL grows until a pause, or until
# this bound, where the writer's own checkpoint finds most of it already copied.
WAL_HARD_PAGES: Final = 10_000


class Filing:
    """A table whose ids SQLite's writer files by scope in bulk (fastchat.trailing): messages
    by room in message_rooms (migration 6), comments by post in comment_posts (migration 10).
    Each has its `filed` table, `filed`_upto (every row up to it is filed), its client ids'
    (`clients`, with each sender's `buckets`), the saved filter of every client id stored
    (`keys`), and a Trailing of what is not filed yet; these are its statements."""

    __slots__ = (
        "file_client_buckets_sql",
        "file_clients_sql",
        "file_sql",
        "filed",
        "filed_client_sql",
        "filed_keys_sql",
        "keys_after_sql",
        "previous_sql",
        "save_keys_sql",
        "saved_keys_sql",
        "scope",
        "table",
        "tail_rows_sql",
        "tail_sql",
        "upto_sql",
    )

    def __init__(
        self, table: str, scope: str, filed: str, clients: str, buckets: str, keys: str
    ) -> None:
        self.table, self.scope, self.filed = table, scope, filed
        # Where the tail starts and ends (at a commit's start: rows from other writers since).
        self.tail_sql = (
            f"SELECT (SELECT id FROM {filed}_upto), (SELECT coalesce(max(id), 0) FROM {table})"
        )
        # Every row after an id: (id, scope, user, client_id).
        self.tail_rows_sql = (
            f'SELECT id, {scope}, "user", client_id FROM {table} WHERE id > ? ORDER BY id'
        )
        # A scope's rows to file: its name (id) and their ids, ascending, bound as an array
        # (apsw.carray: no Python tuple or binding per row, no read of the rows). OR IGNORE:
        # another worker sharing the file may have filed the same rows (and a multi-row
        # INSERT that may abort makes SQLite keep a statement journal, a temp file with the
        # old content of every page the statement changes).
        self.file_sql = f"INSERT OR IGNORE INTO {filed}({scope}, id) SELECT ?, value FROM carray(?)"
        self.upto_sql = f"UPDATE {filed}_upto SET id = ?"
        # A scope's newest id (clustered: each insert's previous): the filed ones, and the
        # table's tail after the mark (the rows not filed for certain; which of them are,
        # the writer keeps in memory: fastchat.trailing).
        self.previous_sql = (
            f"SELECT max((SELECT coalesce(max(id), 0) FROM {filed} WHERE {scope} = ?1), "
            f"(SELECT coalesce(max(id), 0) FROM {table} WHERE id > (SELECT id FROM "
            f"{filed}_upto) AND {scope} = ?1))"
        )
        # The filed rows' client ids, read from the rows (ids bound as an array), each in
        # its id's bucket, and the buckets each sender has ids in.
        bucket = f"id >> {CLIENT_BUCKET_BITS}"
        self.file_clients_sql = (
            f'INSERT OR IGNORE INTO {clients}(bucket, {scope}, "user", client_id, id) '
            f'SELECT {bucket}, {scope}, "user", client_id, id FROM {table} '
            "WHERE id IN (SELECT value FROM carray(?1)) AND client_id IS NOT NULL "
            f'ORDER BY 1, {scope}, "user", client_id'
        )
        self.file_client_buckets_sql = (
            f'INSERT OR IGNORE INTO {buckets}({scope}, "user", bucket) '
            f'SELECT DISTINCT {scope}, "user", {bucket} FROM {table} '
            "WHERE id IN (SELECT value FROM carray(?1)) AND client_id IS NOT NULL"
        )
        # A client id's row: in each of its sender's buckets, newest first, one seek each.
        self.filed_client_sql = (
            f"SELECT m.id FROM {buckets} b JOIN {clients} m ON m.bucket = b.bucket "
            f'AND m.{scope} = b.{scope} AND m."user" = b."user" AND m.client_id = ?3 '
            f'WHERE b.{scope} = ?1 AND b."user" = ?2 ORDER BY b.bucket DESC LIMIT 1'
        )
        # Every client id filed (to fill a filter); the saved filter (migrations 8 and 11),
        # and the client ids stored after it.
        self.filed_keys_sql = f'SELECT {scope}, "user", client_id FROM {clients}'
        self.saved_keys_sql = f"SELECT scheme, upto, bits FROM {keys}"
        self.save_keys_sql = (
            f"INSERT OR REPLACE INTO {keys}(one, scheme, upto, bits) VALUES (1, ?, ?, ?)"
        )
        self.keys_after_sql = (
            f'SELECT {scope}, "user", client_id FROM {table} WHERE id > ? AND client_id IS NOT NULL'
        )

    def page_sql(self, columns: str) -> str:
        """A scope's page from `filed`, the unfiled ids kept in memory (?5, an array bound
        with apsw.carray: fastchat.trailing) and the rows this process has not looked at
        (above ?6), each read as far as the page needs. An id in two of them is one row
        (IN). `{order}` is left to fill."""
        table, scope, filed = self.table, self.scope, self.filed
        return (
            f"SELECT {columns} FROM {table} WHERE id IN ("
            f"SELECT id FROM (SELECT id FROM {filed} WHERE {scope} = ?1 AND id > ?2 AND id < ?3 "
            "ORDER BY id {order} LIMIT ?4) UNION ALL SELECT value FROM carray(?5) UNION ALL "
            f"SELECT id FROM (SELECT id FROM {table} WHERE id > max(?2, ?6, (SELECT id FROM "
            f"{filed}_upto)) AND id < ?3 AND {scope} = ?1 ORDER BY id {{order}} LIMIT ?4)"
            ") ORDER BY id {order} LIMIT ?4"
        )


MESSAGE_FILING: Final = Filing(
    "messages", "room", "message_rooms", "message_clients", "client_buckets", "client_keys"
)
COMMENT_FILING: Final = Filing(
    "comments",
    "post_id",
    "comment_posts",
    "comment_clients",
    "comment_client_buckets",
    "comment_client_keys",
)
SQLITE_PAGE_SQL: Final = {
    "messages": MESSAGE_FILING.page_sql(MESSAGE_COLUMNS),
    "comments": COMMENT_FILING.page_sql(COMMENT_COLUMNS),
}
# A message's or comment's statements in the writer (a retried send is found by
# SqliteStore._stored_id): the scope's existence (posts only); the scope's newest id
# (clustered: row[6]); the insert.
_WRITE_SQL: Final = {
    OP_MESSAGE: (
        None,
        MESSAGE_FILING.previous_sql,
        'INSERT INTO messages(room, "user", message, ts, client_id, sub) '
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    ),
    OP_COMMENT: (
        "SELECT 1 FROM posts WHERE id = ?",
        COMMENT_FILING.previous_sql,
        'INSERT INTO comments(post_id, "user", comment, ts, client_id, sub) '
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    ),
}


# Connections without SQLite's own mutex ("multi-thread" mode): each is used by one thread at
# a time (the writer's is handed between the loop and its thread), and APSW refuses a call
# on a connection or cursor already in one (ThreadingViolation) rather than let two run.
_OPEN_FLAGS: Final = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_NOMUTEX


_STOP: Final = object()  # the writer thread's queue: stop

# One search page's rows: (kind "m"/"c", id, room or post id, user, ts, text), ranked
# among the newest store.SEARCH_WINDOW matches.
_SEARCH_SQL: Final = {
    "m": (
        "SELECT 'm', m.id, m.room, m.\"user\", m.ts, m.message, bm25(messages_fts) AS r "
        "FROM messages_fts CROSS JOIN messages m ON m.id = messages_fts.rowid "
        "WHERE messages_fts MATCH ? AND m.deleted_at IS NULL{scope} AND messages_fts.rowid >= "
        "(SELECT coalesce(min(id), 0) FROM (SELECT m.id FROM messages_fts "
        "CROSS JOIN messages m ON m.id = messages_fts.rowid "
        "WHERE messages_fts MATCH ? AND m.deleted_at IS NULL{scope} "
        "ORDER BY messages_fts.rowid DESC LIMIT ?))"
    ),
    "c": (
        "SELECT 'c', c.id, c.post_id, c.\"user\", c.ts, c.comment, bm25(comments_fts) AS r "
        "FROM comments_fts CROSS JOIN comments c ON c.id = comments_fts.rowid "
        "WHERE comments_fts MATCH ? AND c.deleted_at IS NULL{scope} AND comments_fts.rowid >= "
        "(SELECT coalesce(min(id), 0) FROM (SELECT c.id FROM comments_fts "
        "CROSS JOIN comments c ON c.id = comments_fts.rowid "
        "WHERE comments_fts MATCH ? AND c.deleted_at IS NULL{scope} "
        "ORDER BY comments_fts.rowid DESC LIMIT ?))"
    ),
}


INSERT_MESSAGE_SQL: Final = (
    'INSERT INTO messages(id, room, "user", message, ts, client_id, sub) '
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_COMMENT_SQL: Final = (
    'INSERT INTO comments(id, post_id, "user", comment, ts, client_id, sub) '
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SqliteStore(Store):
    """SQLite through APSW, group commit on the loop, a writer thread for the commits that
    must not block it (the embedded default)."""

    OPEN_ERRORS = (apsw.Error,)
    page_sql: Mapping[str, str] = SQLITE_PAGE_SQL
    post_columns = SQLITE_POST_COLUMNS

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        batch_max: int = 1024,
        seed: bool = True,
        busy_timeout_ms: int = 5000,
        max_bytes: int = 0,
    ) -> None:
        super().__init__(batch_max=batch_max, seed=seed)
        self.path = self.location = str(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self.max_bytes = max_bytes
        # Writes queued on the loop, committed at the end of its iteration (`_write_tick`).
        self._batch: list[Write] = []
        self._tick_due = False
        # Commits run on the loop unless each one waits for an fsync (FULL, EXTRA).
        self._on_loop = synchronous.upper() in ("OFF", "NORMAL")
        self._in_thread = 0  # operations the writer thread holds (loop thread only)
        # Batches handed to the writer thread, one at a time, and _STOP.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: Any = None
        self._writer: apsw.Connection | None = None
        self._reader: apsw.Connection | None = None
        self._searcher: apsw.Connection | None = None  # search's reads
        self._indexer: Indexer | None = None
        self._search_lock = asyncio.Lock()
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_due = threading.Event()
        self._stopping = False
        self._wal_pages = 0  # WAL size after the last commit (writer thread)
        self._wal_asked = 0  # WAL size when the checkpointer was last woken
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file opened
        self._lost: str | None = None  # why writes stop for good: see `_vanished`
        self.file_after = FILE_AFTER_S
        self._file_timer: asyncio.TimerHandle | None = None
        # SQLite's data version after this writer's last commit, and the timestamp it gave
        # its rows (`_commit`: unchanged at the next one, nobody else wrote). None: unknown.
        self._data_version: int | None = None
        self._last_ts = 0
        self._quiet_at = 0.0  # loop time after which, with no commit since, all is filed
        # The messages not yet filed in message_rooms and message_clients (migration 6),
        # by room, with their client ids; a transaction adds its own as it inserts them,
        # and other workers' at its start.
        self._tail = Trailing()
        self._top = 0  # the newest message id of the open transaction
        # The same for comments, by post (comment_posts and comment_clients, migrations 10
        # and 11).
        self._comment_tail = Trailing()
        self._comment_top = 0
        self._posts: set[int] = set()  # posts known to exist (a comment run's check)
        self._new_comments: dict[int, int] = {}  # the open transaction's, by post

    # ------------------------------------------------------------------ lifecycle

    async def open(self, on_committed: OnCommitted) -> None:
        """Open both connections, migrate, and start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self._on_committed = on_committed
        try:
            self._writer = self._connect(migrate=True)
            self._data_version = None  # a number of this connection's
            self._file = _file_id(self.path)
            self._lost = None
            if self.max_bytes:
                # A quota: past it SQLite answers SQLITE_FULL, as a full disk would.
                page = int(_value(self._writer, "PRAGMA page_size"))
                self._writer.execute(f"PRAGMA max_page_count={max(self.max_bytes // page, 1)}")
            # Checkpoints leave the commit path: the hook only notes the WAL's size.
            self._writer.set_wal_hook(self._on_wal)
            # The loop never waits for a lock (`_commit`); the writer thread sets its own.
            self._writer.set_busy_timeout(0)
            self._reader = self._connect()
            checkpoint_conn = self._connect()
            # Search's: every connection is opened now, none later (one opened after the
            # file was moved away or deleted would create an empty database at its path).
            self._searcher = self._connect()
            index_conn = self._connect() if self.search_enabled else None
            # What trails from before, read back now (filed once the store is quiet), and
            # the filter of every client id stored (trailing.ClientKeys), before the first
            # write, off the loop; until then the store is not open (readiness: "starting").
            for filing in (MESSAGE_FILING, COMMENT_FILING):
                upto, top = _row(self._writer, filing.tail_sql)
                keys = await asyncio.to_thread(self._client_keys, self._writer, top, filing)
                tail = Trailing(keys)
                tail.reset(upto, top, self._writer.execute(filing.tail_rows_sql, (upto,)))
                if filing is MESSAGE_FILING:
                    self._tail = tail
                else:
                    self._comment_tail = tail
        except self.OPEN_ERRORS as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fastchat-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(checkpoint_conn,),
            name="fastchat-checkpointer",
            daemon=True,
        )
        self._checkpointer.start()
        if index_conn is not None:
            self._indexer = Indexer(index_conn, committed=lambda: self.rows)
            self._indexer.start()
        self._file_later()

    def prepare(self) -> None:
        try:
            self._connect(migrate=True).close()
        except self.OPEN_ERRORS as exc:
            raise StoreError(f"cannot open the database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._file_timer is not None:
            self._file_timer.cancel()
            self._file_timer = None
        # Everything queued is committed and handed over before the writer stops.
        while self._thread is not None and (self._batch or self._in_thread):
            if self._in_thread:
                await asyncio.sleep(0.001)
            else:
                self._write_tick()
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._indexer is not None:
            async with self._search_lock:
                self._indexer.stop()
            self._indexer = None
        if self._checkpointer is not None:
            self._stopping = True
            self._checkpoint_due.set()
            self._checkpointer.join()
            self._checkpointer = None
        self._save_client_keys()
        # Closing the last connection checkpoints what is left and removes the WAL.
        async with self._search_lock:  # a search in flight finishes on its thread first
            for conn in (self._searcher, self._reader, self._writer):
                if conn is not None:
                    conn.close()
        self._searcher = self._reader = self._writer = None

    def _writer_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _tails(self) -> tuple[tuple[Trailing, Filing], ...]:
        """What the writer files in bulk, and what of it trails."""
        return ((self._tail, MESSAGE_FILING), (self._comment_tail, COMMENT_FILING))

    def _client_keys(self, conn: apsw.Connection, top: int, filing: Filing) -> ClientKeys:
        """At open (on a thread): the filter of every client id stored in `filing.table`
        (newest id `top`).

        The one saved by the last clean close (`_save_client_keys`, by this worker or any
        other sharing the file) holds every client id up to its `upto`; the ones stored
        since are read from the table's tail. That holds after a crash too: ids only grow
        (a new row's is the newest + 1), so whatever was stored after the save is above
        `upto`. Otherwise (none saved, another scheme, too small for the history by now, or
        so old that the rows after it are half the history) one is filled from its clients,
        about a second per million ids. A new filter has room for twice the history
        (ClientKeys.MAX_KEYS at most); a saved one is used while it has 16 bits for each id
        stored (under 0.5 % false positives)."""
        saved = conn.execute(filing.saved_keys_sql).fetchone()
        if saved is not None:
            scheme, upto, bits = saved
            big_enough = len(bits) * 8 >= ClientKeys.size_for(min(top, ClientKeys.MAX_KEYS))
            # Reading the tail costs about what filling does per id, and it reads whole rows:
            # past half the history (and 65,536 rows), filling is the cheaper.
            recent = top - upto <= max(top // 2, 1 << 16)
            if scheme == ClientKeys.SCHEME and big_enough and recent:
                keys = ClientKeys(saved=bits)
                keys.fill(conn.execute(filing.keys_after_sql, (upto,)))
                return keys
        keys = ClientKeys(ClientKeys.size_for(min(2 * top, ClientKeys.MAX_KEYS)))
        keys.fill(conn.execute(filing.filed_keys_sql))
        return keys

    def _save_client_keys(self) -> None:
        """At a clean close, every write committed: the filters of stored client ids, for
        the next open (`_client_keys`). Each holds every id up to its tail's `seen` (the
        writer's own, and other workers' it caught up with); the next open adds those
        stored after."""
        conn = self._writer
        if conn is None or self._lost is not None:
            return
        try:
            conn.set_busy_timeout(self.busy_timeout_ms)
            with conn:
                for tail, filing in self._tails():
                    if tail.keys.ready:  # a filter never filled (the file replaced): not saved
                        saved = (ClientKeys.SCHEME, tail.seen, tail.keys.to_bytes())
                        conn.execute(filing.save_keys_sql, saved)
        except apsw.Error as exc:  # the next open fills them from the clients tables
            log.warning("could not save the client-id filters of %s: %r", self.path, exc)

    async def check(self) -> None:
        lost = self._vanished()
        if lost is not None:
            raise StoreError(lost)
        await super().check()

    def _vanished(self) -> str | None:
        """Why the file at DB_PATH is no longer the one being written (None: it still is).

        The connections keep the file they opened: if it (or its folder) is removed, renamed
        or replaced, SQLite goes on committing into that orphan without a word, and all of it
        is gone at the next start. So DB_PATH's (st_dev, st_ino) is compared with the one
        recorded at open: by the writer after every COMMIT, by every health check.

        Once they differ, writes are refused until a restart, even if a file reappears at
        DB_PATH: a restored backup is another database under ids already handed out, and
        even the same file moved back may have changed meanwhile; a restart opens whatever
        is there and checks it. (Closing the orphan's connections at shutdown writes nothing
        to DB_PATH: SQLite skips its checkpoint and WAL removal for a moved file.) Reads go
        on from the orphan, answering with what it held, refused batches taken back out;
        the orphan also stays reachable (/proc/PID/fd) until exit, to be copied out.
        """
        if self._lost is None and _file_id(self.path) != self._file:
            # The clients get no path; the log names it.
            self._lost = (
                "the database file was removed or replaced while the server ran; "
                "writes are refused until fastchat restarts"
            )
            log.error("%s is no longer the file opened at start: %s", self.path, self._lost)
        return self._lost

    def _connect(self, *, migrate: bool = False) -> apsw.Connection:
        """A connection in WAL mode; with `migrate`, to a database checked (before anything
        is written to it) and brought to SCHEMA_VERSION."""
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of {self.path}: {exc}") from exc
        conn = apsw.Connection(self.path, flags=_OPEN_FLAGS)
        try:
            conn.set_busy_timeout(self.busy_timeout_ms)
            version = self._version(conn) if migrate else SCHEMA_VERSION
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # Checkpoints are the checkpointer thread's (and, past WAL_HARD_PAGES, the
            # writer's): SQLite's own would run one, with its fsync, after any commit of
            # this connection that leaves the WAL over 1,000 pages (the search indexer's:
            # under load, every one).
            conn.wal_autocheckpoint(0)
            if migrate:
                self._migrate(conn, version)
        except BaseException:
            conn.close()
            raise
        return conn

    def _version(self, conn: apsw.Connection) -> int:
        """The schema version of a fastchat database; StoreError for any other file."""
        with conn:  # one snapshot: another process may be migrating the same file
            version = int(_value(conn, "PRAGMA user_version"))
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this fastchat "
                    f"({SCHEMA_VERSION}); upgrade fastchat"
                )
            problem = schema_problem(conn, version)
        if problem is not None:
            # Someone else's database (or DB_PATH pointing at the wrong file): refused
            # before anything is written to it, and in one line rather than the traceback
            # of the first statement that finds a table missing.
            raise StoreError(f"{self.path} is not a fastchat database: {problem}")
        return version

    def _migrate(self, conn: apsw.Connection, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with conn:
                conn.execute(MIGRATIONS[target])
                conn.execute(f"PRAGMA user_version={target}")
        log_schema(str(self.path), version, SCHEMA_VERSION)
        if self._seed and version == 0:
            now = _now_ms()
            with conn:
                conn.executemany(
                    "INSERT INTO posts(title, content, author, ts) VALUES (?, ?, ?, ?)",
                    [(t, c, a, now + i) for i, (t, c, a) in enumerate(SAMPLE_POSTS)],
                )

    # ------------------------------------------------------------------ writes

    def submit(self, write: Write) -> None:
        self.pending += 1
        self._batch.append(write)
        if not self._tick_due:
            # The batch is committed once this loop iteration's reads are all in: a callback
            # scheduled now runs right after them, before the loop polls again.
            self._tick_due = True
            self._loop.call_soon(self._write_tick)

    def _write_tick(self) -> None:
        """On the loop, once per iteration with writes: commit what queued up, one
        transaction per `batch_max` operations, and hand each to the service.

        Measured (issue 14, unpipelined ingest: 750 clients, one message in flight each,
        server on one core): through the writer thread every batch cost a queue put, a
        futex wake-up, a `call_soon_threadsafe` (eventfd write and read) and GIL hand-offs
        both ways (0.5 futex calls per message under strace; now 0.01), and the thread's
        commits interleaved with the loop's reads kept batches at 10-35 rows; here they are
        20-200. Messages per server CPU-second rose 1.13-1.25x in A/B runs from this change
        alone. A WAL commit with synchronous=NORMAL only writes pages into the OS cache (the
        checkpointer thread does the fsyncs): BEGIN, stamp and COMMIT about 40 us, plus 7-11
        us per row with its room's index page, measured on this machine.

        The writer thread still commits when the loop must not wait: with synchronous=FULL
        or EXTRA (an fsync per commit), when another connection holds the write lock (the
        thread waits for it, up to the busy timeout), and when the WAL passed WAL_HARD_PAGES
        (the thread checkpoints after its commit). While it holds a batch, later ones wait
        here, so batches are committed and handed over in submit order."""
        self._tick_due = False
        if self._in_thread or not self._batch:
            return  # `_deliver_thread` schedules the tick again
        if self._thread is None:  # closed (or never opened): nothing more is written
            batch, self._batch = self._batch, []
            self._deliver(self._refuse(batch, "the store is closed"))
            return
        batch = self._batch
        if len(batch) > self.batch_max:
            self._batch = batch[self.batch_max :]
            batch = batch[: self.batch_max]
            self._tick_due = True
            self._loop.call_soon(self._write_tick)
        else:
            self._batch = []
        results = None
        if self._on_loop and self._wal_pages < WAL_HARD_PAGES:
            results = self._commit(batch, on_loop=True)
        if results is None:
            self.thread_batches += 1
            self._in_thread = len(batch)
            self._queue.put(batch)
            return
        self._deliver(results)
        self._file_later()

    def _deliver_thread(self, results: list[Result]) -> None:
        """On the loop: a batch the writer thread committed."""
        self._in_thread = 0
        if self._batch and not self._tick_due:
            self._tick_due = True
            self._loop.call_soon(self._write_tick)
        self._deliver(results)
        self._file_later()

    def _file_later(self) -> None:
        """On the loop, after a commit: once `file_after` seconds (FILE_AFTER_S) pass with
        no other, whatever it left unfiled is filed."""
        self._quiet_at = self._loop.time() + self.file_after
        if (self._tail or self._comment_tail) and self._file_timer is None:
            self._file_timer = self._loop.call_later(self.file_after, self._file_trailing)

    def _file_trailing(self) -> None:
        """The timer of `_file_later`: a quiet store files every room now, in a transaction
        of its own (on the loop: a few milliseconds); a busy one is asked again later."""
        self._file_timer = None
        if self._thread is None or self._lost is not None:
            return
        wait = self._quiet_at - self._loop.time()
        if wait > 0 or self._in_thread or self._batch or self._tick_due:
            self._file_timer = self._loop.call_later(max(wait, 0.01), self._file_trailing)
            return
        conn = self._writer
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.BusyError:  # another worker writes: try again later
            self._file_timer = self._loop.call_later(self.file_after, self._file_trailing)
            return
        except apsw.Error as exc:  # the next commit files them, or says what is wrong
            log.warning("filing the newest rows of %s failed: %r", self.path, exc)
            return
        try:
            done = []
            for tail, filing in self._tails():
                self._catch_up_tail(conn, tail, filing)
                done.append(self._file_rooms(conn, tail, filing, tail.seen, everything=True))
            conn.execute("COMMIT")
        except apsw.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            log.warning("filing the newest rows of %s failed: %r", self.path, exc)
            return
        for (tail, _), (filed, upto) in zip(self._tails(), done, strict=True):
            tail.committed(filed, upto, tail.seen)

    def _file_rooms(
        self, conn: apsw.Connection, tail: Trailing, filing: Filing, top: int, *, everything: bool
    ) -> tuple[list[Any], int]:
        """In a write transaction (newest id `top` of `filing.table`): file the rooms (posts)
        due (fastchat.trailing), and move the filing's upto mark up to the oldest row left
        unfiled. The rooms (posts) filed, and the mark."""
        filed = tail.due(top, everything)
        if filed:
            # Copies (`ids`) are bound: an array bound to a statement cannot grow.
            conn.executemany(
                filing.file_sql, [(room, apsw.carray(tail.ids([room]))) for room in filed]
            )
            if tail.has_clients(filed):
                ids = apsw.carray(tail.ids(filed))
                conn.execute(filing.file_clients_sql, (ids,))
                conn.execute(filing.file_client_buckets_sql, (ids,))
        upto = tail.mark(filed, top)
        if upto > tail.upto:
            conn.execute(filing.upto_sql, (upto,))
            return filed, upto
        return filed, tail.upto

    def _run(self) -> None:
        """The writer thread: commits the batches the loop hands it, one at a time."""
        q = self._queue
        conn = self._writer
        assert conn is not None
        while True:
            batch = q.get()
            if batch is _STOP:
                return
            conn.set_busy_timeout(self.busy_timeout_ms)
            try:
                results = self._commit(batch)
                assert results is not None  # the thread waits out a busy lock
                if self._wal_pages >= WAL_HARD_PAGES:
                    self._checkpoint_inline()
            finally:
                # The loop may use the connection again once it has the results: nothing
                # here touches it after the hand-over.
                conn.set_busy_timeout(0)
            self._loop.call_soon_threadsafe(self._deliver_thread, results)

    # ------------------------------------------------------------------ checkpoints

    def _on_wal(self, conn: apsw.Connection, db: str, pages: int) -> int:
        """SQLite's WAL hook, in the writer's COMMIT: note the size, wake the checkpointer."""
        self._wal_pages = pages
        if pages < self._wal_asked:  # the WAL restarted
            self._wal_asked = 0
        # Woken per WAL_CHECKPOINT_PAGES new pages, not after every commit past the mark:
        # under steady writes the WAL seldom restarts, and a checkpoint after every commit
        # copied the same hot index pages back again and again, two fsyncs each time.
        # Issue 14, unpipelined ingest, 10 s, server at ~90 % of its core: 544-675
        # checkpoints, 5.8-7.3 us of checkpointer CPU per message; woken this way 86, plus
        # 9 by the writer at WAL_HARD_PAGES, 2.3-2.6 us (echo p99 unchanged, 98-104 ms).
        if pages - self._wal_asked >= WAL_CHECKPOINT_PAGES:
            self._wal_asked = pages
            self._checkpoint_due.set()
        return apsw.SQLITE_OK

    def _checkpoint_loop(self, conn: apsw.Connection) -> None:
        """The checkpointer thread: a PASSIVE checkpoint each time the WAL has grown by
        WAL_CHECKPOINT_PAGES. The writer restarts the WAL once all of it is copied back."""
        try:
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                if self._stopping:
                    return
                if self._checkpoint(conn):
                    self.checkpoints += 1
        finally:
            conn.close()

    def _checkpoint_inline(self) -> None:
        """The writer's own checkpoint, between batches, when the WAL passed WAL_HARD_PAGES."""
        assert self._writer is not None
        if self._checkpoint(self._writer):
            self.inline_checkpoints += 1
        self._wal_pages = 0

    def _checkpoint(self, conn: apsw.Connection) -> bool:
        """One PASSIVE checkpoint over `conn`; False if it could not run."""
        try:
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        except apsw.BusyError:
            # Another checkpoint of the file is running (the other thread, or another
            # worker sharing the file): that one will do.
            log.debug("checkpoint of %s skipped: another one is running", self.path)
            return False
        except apsw.Error as exc:
            log.warning("checkpoint of %s failed: %r", self.path, exc)
            return False
        return True

    def _commit(self, batch: list[Write], *, on_loop: bool = False) -> list[Result] | None:
        """Commit `batch` in one transaction; its results, in order. On the loop (`on_loop`,
        no busy timeout), None when another connection holds the write lock: nothing was
        done, and the writer thread, which may wait for it, gets the batch."""
        conn = self._writer
        assert conn is not None
        if self._lost is not None:
            return self._refuse(batch, self._lost)
        started = time.perf_counter()
        results: list[Result] = []
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no upgrade deadlocks
            except apsw.BusyError:
                if on_loop:
                    return None
                raise
            try:
                # Nothing committed by another connection since this one's last commit
                # (SQLite's data version as this writer left it): the newest timestamp and
                # both tails are as it left them, and three statements of a commit's fixed
                # cost are saved (a tenth of a 16-row batch's CPU).
                mine = conn.data_version() == self._data_version
                last = self._last_ts if mine else _value(conn, LAST_TS_SQL)
                ts = max(_now_ms(), last or 0)
                self._new_comments.clear()  # post id -> comments this transaction adds
                for tail, filing in self._tails():
                    if not mine or tail.dirty:
                        self._catch_up_tail(conn, tail, filing)
                self._top = self._tail.seen
                self._comment_top = self._comment_tail.seen
                # Chat messages and comments (no previous id to read) go in runs, one
                # executemany each; anything else row by row, in batch order. A retry of a
                # stored message (same room, user and client_id) or comment, or a comment on
                # a missing post, is answered in its place: the run before it goes in first
                # (it may hold the original).
                plain = not self.track_previous
                run: list[Write] = []
                comments: list[Write] = []  # a run of comments (one of the two is empty)
                in_run: set[ClientKey] = set()
                for write in batch:
                    if plain and write.op == OP_MESSAGE:
                        if comments:
                            self._insert_comments(conn, comments, ts, results)
                            comments, in_run = [], set()
                        cid = write.client_id
                        if cid is None:
                            run.append(write)
                            continue
                        key = (write.scope, write.user, cid)
                        if key not in in_run and self._stored_id(conn, key, self._tail) is None:
                            in_run.add(key)
                            run.append(write)
                            continue
                    elif plain and write.op == OP_COMMENT:
                        if run:
                            self._insert_messages(conn, run, ts, results)
                            run, in_run = [], set()
                        if self._fits_run(conn, write, in_run):
                            comments.append(write)
                            continue
                    if run:
                        self._insert_messages(conn, run, ts, results)
                        run, in_run = [], set()
                    if comments:
                        self._insert_comments(conn, comments, ts, results)
                        comments, in_run = [], set()
                    results.append(self._apply(conn, write, ts))
                if run:
                    self._insert_messages(conn, run, ts, results)
                if comments:
                    self._insert_comments(conn, comments, ts, results)
                if self._new_comments:  # each post's count, once (migration 9)
                    conn.executemany(
                        COUNT_COMMENTS_SQL, [(n, p) for p, n in self._new_comments.items()]
                    )
                tops = (self._top, self._comment_top)
                # Clustered, every commit files everything: each insert reads its room's
                # (post's) previous id through message_rooms (comment_posts) and the rows
                # after the mark.
                done = [
                    self._file_rooms(conn, tail, filing, top, everything=self.track_previous)
                    for (tail, filing), top in zip(self._tails(), tops, strict=True)
                ]
                conn.execute("COMMIT")
                self._data_version, self._last_ts = conn.data_version(), ts
            except BaseException:
                self._data_version = None
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # the writer must outlive any bad batch
            return self._failed(batch, exc)
        # Committed, not yet acknowledged: it counts only if the file at DB_PATH is still the
        # one it went into. Checked after every batch, not only after a quiet spell: under a
        # steady stream a quiet spell may never come, and every batch until then would be
        # acknowledged and lost. Measured here (ext4, 2 busy cores): `_vanished` alone 2.5-4
        # us; a one-row batch 60-140 us, about 10-20 us more with the stat (medians over
        # interleaved runs), a second stat before COMMIT as much again, so there is one.
        # That is latency for a lone message, not throughput: under load batches grow and
        # the stat stays one per batch.
        lost = self._vanished()
        if lost is not None:
            self._take_back(conn, results)
            return self._refuse(batch, lost)
        for (tail, _), (filed, upto), top in zip(self._tails(), done, tops, strict=True):
            tail.committed(filed, upto, top)
        self._committed(len(batch), started)
        return results

    def _catch_up_tail(self, conn: apsw.Connection, tail: Trailing, filing: Filing) -> None:
        """At a write transaction's start: `tail` as the database has it. Other workers
        sharing the file may have added rows since this one last looked (read here), or
        filed some (they stay in `tail`, filed again with OR IGNORE when their room is)."""
        upto, top = _row(conn, filing.tail_sql)
        if upto < tail.upto or top < tail.seen:
            # Another file now (restored): its client ids are looked up in its table from
            # now on (a filter that is never filled says "maybe" to every key), and its
            # posts too.
            tail.keys = ClientKeys(8)
            self._posts.clear()
            tail.reset(upto, top, conn.execute(filing.tail_rows_sql, (upto,)))
            return
        if tail.dirty:  # a transaction that failed left rows: read the tail anew
            if upto > tail.seen:  # and the client ids of what others filed since
                tail.caught_up(conn.execute(filing.tail_rows_sql, (tail.seen,)), upto, top)
            tail.reset(upto, top, conn.execute(filing.tail_rows_sql, (upto,)))
            return
        if top > tail.seen:
            tail.caught_up(conn.execute(filing.tail_rows_sql, (tail.seen,)), upto, top)
        tail.upto = upto

    def _stored_id(
        self, conn: apsw.Connection, key: ClientKey, tail: Trailing, filing: Filing = MESSAGE_FILING
    ) -> int | None:
        """The id of the message (comment) stored with this (room (post id), user,
        client_id), if there is one: this transaction's, the tail's (in memory) or filed
        (message_clients, comment_clients)."""
        found = tail.client(key)
        if found is None and tail.keys.may_hold(key):
            row = conn.execute(filing.filed_client_sql, key).fetchone()
            found = row[0] if row is not None else None
        return found

    def _take_back(self, conn: apsw.Connection, results: list[Result]) -> None:
        """Delete a refused batch's new rows from the orphan it was committed into: reads go
        on from it, and must not show what its senders were told was not stored."""
        try:
            with conn:
                for write, row, duplicate in results:
                    if duplicate is False and write.op in _TABLE_OF:
                        conn.execute(f"DELETE FROM {_TABLE_OF[write.op]} WHERE id = ?", (row[0],))
                    if duplicate is False and write.op == OP_MESSAGE:
                        conn.execute(
                            "DELETE FROM message_rooms WHERE room = ? AND id = ?", (row[1], row[0])
                        )
                    if duplicate is False and write.op == OP_COMMENT:
                        conn.execute(
                            "DELETE FROM comment_posts WHERE post_id = ? AND id = ?",
                            (row[1], row[0]),
                        )
                        conn.execute(COUNT_COMMENTS_SQL, (-1, int(row[1])))
        except apsw.Error as exc:
            log.warning("could not take a refused batch back out of the orphan: %r", exc)

    def _insert_messages(
        self, conn: apsw.Connection, run: list[Write], ts: int, results: list[Result]
    ) -> None:
        """Insert a run of chat messages in one executemany, with the ids the table would
        give them (max + 1 onwards: the write lock is held; `_top` is the max, read at the
        transaction's start and moved by every insert since). Measured, 20 rows into 500
        rooms: 140 us, against 270-370 us one `INSERT ... RETURNING` each."""
        first = self._top + 1
        conn.executemany(
            INSERT_MESSAGE_SQL,
            [
                (first + i, w.scope, w.user, w.text, ts, w.client_id, w.sub)
                for i, w in enumerate(run)
            ],
        )
        results += [
            (w, (first + i, w.scope, w.user, w.text, ts, w.client_id, None, None), False)
            for i, w in enumerate(run)
        ]
        self._tail.add_run(first, run)
        self._top = first + len(run) - 1

    def _fits_run(self, conn: apsw.Connection, write: Write, in_run: set[ClientKey]) -> bool:
        """Whether a comment goes into the open run of comments: its post exists (posts are
        never deleted: one seen is remembered), and it is not a retry of one stored or in
        the run (`_apply` answers those, and refuses a comment on a missing post, in its
        place)."""
        post = int(write.scope)
        if post not in self._posts:
            if conn.execute("SELECT 1 FROM posts WHERE id = ?", (post,)).fetchone() is None:
                return False
            self._posts.add(post)
        cid = write.client_id
        if cid is None:
            return True
        key = (post, write.user, cid)
        if key in in_run:
            return False
        if self._stored_id(conn, key, self._comment_tail, COMMENT_FILING) is not None:
            return False
        in_run.add(key)
        return True

    def _insert_comments(
        self, conn: apsw.Connection, run: list[Write], ts: int, results: list[Result]
    ) -> None:
        """`_insert_messages` for a run of comments (`_fits_run`), and their posts' counts."""
        first = self._comment_top + 1
        rows = [
            (first + i, int(w.scope), w.user, w.text, ts, w.client_id) for i, w in enumerate(run)
        ]
        conn.executemany(
            INSERT_COMMENT_SQL, [(*row, w.sub) for row, w in zip(rows, run, strict=True)]
        )
        results += [(w, (*row, None, None), False) for row, w in zip(rows, run, strict=True)]
        self._comment_tail.add([(row[0], row[1], row[2], row[5]) for row in rows])
        counts = self._new_comments
        for row in rows:
            counts[row[1]] = counts.get(row[1], 0) + 1
        self._comment_top = first + len(run) - 1

    def _apply(self, conn: apsw.Connection, write: Write, ts: int) -> Result:
        kind, a, b, c, client_id = write.op, write.scope, write.user, write.text, write.client_id
        if kind == OP_BAN:
            until, by, reason = write.extra
            ban = (b, a, c, until, by, reason, ts)
            conn.execute(
                f"INSERT OR REPLACE INTO bans({BAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", ban
            )
            return (write, ban, False)
        if kind == OP_UNBAN:
            found = conn.execute(
                f"DELETE FROM bans WHERE sub = ? AND room = ? AND kind = ? RETURNING {BAN_COLUMNS}",
                (b, a, c),
            ).fetchone()
            return (write, found, None)
        if kind == OP_POST:
            if client_id is not None:  # a thread's slug: the post made for it, if there is one
                row = conn.execute(
                    f"SELECT {self.post_columns} FROM posts p WHERE slug = ?", (client_id,)
                ).fetchone()
                if row is not None:
                    return (write, row, True)
            new_id = _value(
                conn,
                "INSERT INTO posts(title, content, author, ts, slug) VALUES (?, ?, ?, ?, ?) "
                "RETURNING id",
                (a, c, b, ts, client_id),
            )
            return (write, (new_id, a, c, b, ts, 0), False)
        change = CHANGE_OPS.get(kind)
        if change is not None:
            table, deleting = change
            edit: Edit = write.extra
            item = conn.execute(ITEM_SQL[table], (edit.item_id,)).fetchone()
            decided = decide_change(write, item, table, deleting, ts)
            if isinstance(decided, EditRefused):
                return (write, decided, None)
            conn.execute(CHANGE_SQL[table], (*decided[3:4], *decided[6:8], edit.item_id))
            kind_id = CHANGE_KIND[table]
            assert item is not None  # a missing item was refused
            follow_change(conn, kind_id, edit.item_id, item[3])
            change_id = _value(conn, INSERT_CHANGE_SQL, (kind_id, str(decided[1]), decided[0], ts))
            return (write, (*decided, change_id), False)
        sql = _WRITE_SQL.get(kind)
        if sql is None:
            raise ValueError(f"unknown store operation {kind!r}")
        exists, previous, insert = sql
        if client_id is not None:  # a retry of a stored send is answered with the original
            if kind == OP_MESSAGE:
                stored = self._stored_id(conn, (a, b, client_id), self._tail)
            else:
                key = (int(a), b, client_id)
                stored = self._stored_id(conn, key, self._comment_tail, COMMENT_FILING)
            if stored is not None:  # the item as an edit reads it, less its author's sub
                return (write, _row(conn, ITEM_SQL[_TABLE_OF[kind]], (stored,))[:-1], True)
        if exists is not None and conn.execute(exists, (a,)).fetchone() is None:
            return (write, PostNotFound(int(a)), None)
        prev = _value(conn, previous, (a,)) if self.track_previous else None
        new_id = _value(conn, insert, (a, b, c, ts, client_id, write.sub))
        if kind == OP_MESSAGE:
            self._tail.add([(new_id, a, b, client_id)])
            self._top = new_id
        else:  # OP_COMMENT: its post's count (COUNT_COMMENTS_SQL at the transaction's end)
            post = int(a)
            self._comment_tail.add([(new_id, post, b, client_id)])
            self._comment_top = new_id
            self._new_comments[post] = self._new_comments.get(post, 0) + 1
        if self.track_previous:
            return (write, (new_id, a, b, c, ts, client_id, None, None, prev), False)
        return (write, (new_id, a, b, c, ts, client_id, None, None), False)

    # ------------------------------------------------------------------ reads

    @property
    def reader(self) -> apsw.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    def _page_params(
        self, table: str, scope: str | int, lo: int, hi: int, n: int, forward: bool
    ) -> tuple[Any, ...]:
        if table == "messages":
            tail = self._tail
        else:  # a post's, by its id (a number, as the tail holds it)
            tail, scope = self._comment_tail, int(scope)
        # `seen` before the ids (fastchat.trailing: what the ids miss is above it).
        seen = tail.seen
        ids = tail.candidates(scope, lo, hi, n, forward, seen)
        return (scope, lo, hi, n, apsw.carray(ids), seen)

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        # A local file: a bounded index read takes microseconds, so it runs right here on
        # the loop (the coroutine never suspends).
        return self.reader.execute(sql, params).fetchall()

    async def search(
        self, terms: list[str], room: str | None, post_id: int | None, offset: int, limit: int
    ) -> list[Row]:
        # Unlike a history page, a search reads and ranks up to SEARCH_WINDOW matches: a few
        # milliseconds over a big table, so it runs on a thread of its own connection (APSW
        # releases the GIL while SQLite works), one search at a time, and the loop goes on.
        # Every word in the text's column; with a room (post), its name (id) in the other
        # column too: an intersection of the index's lists, not a walk through every match.
        phrase = '"' + "{}" + '"'
        words = [t.replace('"', '""') for t in terms]
        match = " AND ".join(f"message : {phrase.format(w)}" for w in words)
        if room is not None:  # indexed as the hex of its name (ftsindex._TABLES)
            match += f' AND room : "{room.encode().hex()}"'
        cmatch = " AND ".join(f"comment : {phrase.format(w)}" for w in words)
        if post_id is not None:
            cmatch += f' AND post : "{post_id}"'
        parts: list[str] = []
        params: list[Any] = []
        if post_id is None:
            parts.append(_SEARCH_SQL["m"].format(scope="" if room is None else " AND m.room = ?"))
            in_room: list[Any] = [match] if room is None else [match, room]
            params += [*in_room, *in_room, SEARCH_WINDOW]
        if room is None:
            scope = "" if post_id is None else " AND c.post_id = ?"
            parts.append(_SEARCH_SQL["c"].format(scope=scope))
            on_post: list[Any] = [cmatch] if post_id is None else [cmatch, post_id]
            params += [*on_post, *on_post, SEARCH_WINDOW]
        sql = " UNION ALL ".join(parts) + " ORDER BY r, 2 DESC LIMIT ? OFFSET ?"
        async with self._search_lock:
            return await asyncio.to_thread(self._search, sql, (*params, limit, offset))

    def _search(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        assert self._indexer is not None, "store is not open"
        self._indexer.catch_up()  # what was committed before the search is found by it
        assert self._searcher is not None, "store is not open"
        return [tuple(r[:6]) for r in self._searcher.execute(sql, params)]


def without_memory_statistics() -> bool:
    """Turn SQLite's memory statistics off in this process, if no connection is open yet.

    With them on (SQLite's default) every allocation SQLite makes takes a global mutex to be
    counted, whichever connection makes it; with the loop, the indexer and the checkpointer
    each on a connection of its own, unpipelined ingest spent 1.8 % of the server's CPU in
    `pthread_mutex_*`, 0.9 % with them off (perf, one run each). SQLite takes the setting
    only while it is shut down, so only before the process opens a connection: the server
    calls this first thing. True if it was set."""
    if apsw.connections():
        return False
    apsw.shutdown()
    apsw.config(apsw.SQLITE_CONFIG_MEMSTATUS, 0)
    apsw.initialize()
    return True


def _file_id(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`, None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _row(conn: apsw.Connection, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The one row `sql` returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None, sql
    return tuple(row)


def _value(conn: apsw.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the one row `sql` returns."""
    return _row(conn, sql, params)[0]
