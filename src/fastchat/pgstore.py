"""The store on PostgreSQL (`DATABASE_URL=postgresql://...`) through psycopg 3's asyncio API.

Same contract as the SQLite store (`sqlitestore.py`): writes queue from the loop, one writer
commits everything that queued up since its last commit in one transaction, and results
reach the service only after COMMIT. Here the writer is a task on the loop owning one
`AsyncConnection`, and a batch is pipelined: the lock and the newest stamp in one round
trip, every insert and the COMMIT in a second, whatever the batch size. Reads go through a
small `AsyncConnectionPool`, so a slow query never holds up the writer or another read.
Every connection prepares its statements on first use (`prepare_threshold=0`).

Ids must become visible in id order for the database to be the cluster's sequencer
(docs/SCALING.md). Sequences do not promise that (an id can commit after a larger one), so
each batch transaction first takes one advisory lock: commits, and the ids in them, are
serial, as under SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from fastchat import store
from fastchat.store import (
    BAN_COLUMNS,
    CHANGE_KIND,
    CHANGE_OPS,
    COMMENT_COLUMNS,
    LAST_TS_SQL,
    MESSAGE_COLUMNS,
    OP_BAN,
    OP_COMMENT,
    OP_MESSAGE,
    OP_POST,
    OP_UNBAN,
    POST_COLUMNS,
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
)

log = logging.getLogger("fastchat.store")

# pg_advisory_xact_lock key: "fastchat" in ASCII, truncated to 63 bits.
SEQUENCER_LOCK: Final = 0x66617374636861
# Read connections: reads are short index scans; a few cover a node's HISTORY and REST load.
READ_POOL_SIZE: Final = 4
CONNECT_TIMEOUT: Final = 10  # seconds
# How long a read waits for a pooled connection before it answers store_unavailable.
READ_TIMEOUT: Final = 5.0

SCHEMA_VERSION: Final = 5
_MIGRATIONS: Final[dict[int, str]] = {
    1: """
    CREATE TABLE messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        room TEXT NOT NULL,
        "user" TEXT NOT NULL,
        message TEXT NOT NULL,
        ts BIGINT NOT NULL,
        client_id TEXT
    );
    CREATE INDEX messages_room_id ON messages(room, id);
    CREATE UNIQUE INDEX messages_client ON messages(room, "user", client_id)
        WHERE client_id IS NOT NULL;
    CREATE TABLE posts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        title TEXT NOT NULL,
        content TEXT NOT NULL,
        author TEXT NOT NULL,
        ts BIGINT NOT NULL
    );
    CREATE TABLE comments (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        post_id BIGINT NOT NULL REFERENCES posts(id),
        "user" TEXT NOT NULL,
        comment TEXT NOT NULL,
        ts BIGINT NOT NULL,
        client_id TEXT
    );
    CREATE INDEX comments_post_id ON comments(post_id, id);
    CREATE UNIQUE INDEX comments_client ON comments(post_id, "user", client_id)
        WHERE client_id IS NOT NULL;
    """,
    2: """
    CREATE TABLE bans (
        sub TEXT NOT NULL,
        room TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('ban', 'mute')),
        until_ms BIGINT,
        by TEXT NOT NULL,
        reason TEXT NOT NULL,
        ts BIGINT NOT NULL,
        PRIMARY KEY (sub, room, kind)
    );
    """,
    3: """
    ALTER TABLE messages ADD COLUMN sub TEXT, ADD COLUMN edited_at BIGINT,
        ADD COLUMN deleted_at BIGINT;
    ALTER TABLE comments ADD COLUMN sub TEXT, ADD COLUMN edited_at BIGINT,
        ADD COLUMN deleted_at BIGINT;
    CREATE TABLE changes (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind SMALLINT NOT NULL,
        scope TEXT NOT NULL,
        item_id BIGINT NOT NULL,
        ts BIGINT NOT NULL
    );
    CREATE INDEX changes_scope ON changes(kind, scope, id);
    """,
    # Full-text search: a generated tsvector per table ('simple': no stemming, as SQLite's
    # unicode61 tokenizer, whatever the language), with a GIN index; computed for the rows
    # already there by the ALTER itself.
    4: """
    ALTER TABLE messages ADD COLUMN tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('simple', message)) STORED;
    CREATE INDEX messages_tsv ON messages USING GIN (tsv);
    ALTER TABLE comments ADD COLUMN tsv tsvector
        GENERATED ALWAYS AS (to_tsvector('simple', comment)) STORED;
    CREATE INDEX comments_tsv ON comments USING GIN (tsv);
    """,
    # Threads of the embeddable comments widget (embed.js): the post made for a site's slug.
    5: """
    ALTER TABLE posts ADD COLUMN slug TEXT;
    CREATE UNIQUE INDEX posts_slug ON posts(slug) WHERE slug IS NOT NULL;
    """,
}
# A search page (store.Store.search): the same rows as SQLite's, best first (search.py
# makes the snippets, for both stores alike).
_SEARCH_PART: Final = {
    "m": (
        "(SELECT 'm' AS k, id, room AS scope, \"user\", ts, message AS text, "
        "ts_rank(tsv, q.q) AS r FROM messages, q WHERE tsv @@ q.q AND deleted_at IS NULL{scope} "
        "ORDER BY id DESC LIMIT %s)"
    ),
    "c": (
        "(SELECT 'c' AS k, id, post_id::text AS scope, \"user\", ts, comment AS text, "
        "ts_rank(tsv, q.q) AS r FROM comments, q WHERE tsv @@ q.q AND deleted_at IS NULL{scope} "
        "ORDER BY id DESC LIMIT %s)"
    ),
}

# A retried send (same client_id) inserts nothing and returns no id; it is then looked up.
_INSERT_MESSAGE: Final = (
    'INSERT INTO messages(room, "user", message, ts, client_id, sub) '
    "VALUES (%s, %s, %s, %s, %s, %s) "
    'ON CONFLICT (room, "user", client_id) WHERE client_id IS NOT NULL DO NOTHING '
    "RETURNING id"
)
# A comment on a missing post inserts nothing either (no foreign-key error to abort the batch).
_INSERT_COMMENT: Final = (
    'INSERT INTO comments(post_id, "user", comment, ts, client_id, sub) '
    "SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS (SELECT 1 FROM posts WHERE id = %s) "
    'ON CONFLICT (post_id, "user", client_id) WHERE client_id IS NOT NULL DO NOTHING '
    "RETURNING id"
)
# The same, clustered (`track_previous`): also the previous id of the room or post, read in
# the same statement under the sequencer lock (delivery.py hands the row out directly when
# everything up to that id has been).
_INSERT_MESSAGE_PREV: Final = (
    "WITH prev AS (SELECT coalesce(max(id), 0) AS id FROM messages WHERE room = %s) "
    + _INSERT_MESSAGE
    + ", (SELECT id FROM prev)"
)
_INSERT_COMMENT_PREV: Final = (
    "WITH prev AS (SELECT coalesce(max(id), 0) AS id FROM comments WHERE post_id = %s) "
    + _INSERT_COMMENT
    + ", (SELECT id FROM prev)"
)
# A thread's post (a slug) made before inserts nothing either; it is then looked up.
_INSERT_POST: Final = (
    "INSERT INTO posts(title, content, author, ts, slug) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (slug) WHERE slug IS NOT NULL DO NOTHING RETURNING id"
)
_FIND_POST: Final = f"SELECT {POST_COLUMNS} FROM posts p WHERE slug = %s"
_FIND_MESSAGE: Final = (
    f'SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = %s AND "user" = %s AND client_id = %s'
)
_FIND_COMMENT: Final = (
    f'SELECT {COMMENT_COLUMNS} FROM comments WHERE post_id = %s AND "user" = %s AND client_id = %s'
)


# Edits and deletions: the item (locked), its update, its change (store.py's, in %s style).
_ITEM_SQL: Final = {t: sql.replace("?", "%s") + " FOR UPDATE" for t, sql in store.ITEM_SQL.items()}
_CHANGE_SQL: Final = {t: sql.replace("?", "%s") for t, sql in store.CHANGE_SQL.items()}
_INSERT_CHANGE: Final = store.INSERT_CHANGE_SQL.replace("?", "%s")


def _conninfo_kwargs() -> dict[str, Any]:
    return {"autocommit": True, "prepare_threshold": 0}


class PostgresStore(Store):
    OPEN_ERRORS = (psycopg.Error, OSError)

    def __init__(
        self,
        url: str,
        *,
        seed: bool = True,
        batch_max: int = 1024,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        super().__init__(batch_max=batch_max, seed=seed)
        self.url = url
        self.location = _safe(url)
        self.read_timeout = read_timeout
        self._sql: dict[str, str] = {}
        self._queue: collections.deque[Write] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._writer: psycopg.AsyncConnection[Any] | None = None
        self._pool: AsyncConnectionPool | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self, on_committed: OnCommitted) -> None:
        self._on_committed = on_committed
        try:
            self._writer = await psycopg.AsyncConnection.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT, **_conninfo_kwargs()
            )
            await self._migrate(self._writer)
            self._pool = AsyncConnectionPool(
                self.url,
                min_size=1,
                max_size=READ_POOL_SIZE,
                kwargs=_conninfo_kwargs(),
                timeout=self.read_timeout,
                open=False,
                name="fastchat-read",
            )
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except (*self.OPEN_ERRORS, TimeoutError) as exc:
            await self._disconnect()
            raise StoreError(f"cannot open the database {self.location}: {exc}") from exc
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="fastchat-writer")

    def prepare(self) -> None:
        async def migrate() -> None:
            conn = await psycopg.AsyncConnection.connect(
                self.url, connect_timeout=CONNECT_TIMEOUT, autocommit=True
            )
            try:
                await self._migrate(conn)
            finally:
                await conn.close()

        try:
            asyncio.run(migrate())
        except self.OPEN_ERRORS as exc:
            raise StoreError(f"cannot open the database {self.location}: {exc}") from exc

    async def close(self) -> None:
        if self._task is not None:
            self._closing = True
            self._wake.set()
            await self._task  # it commits everything queued first
            self._task = None
        await self._disconnect()

    async def _disconnect(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    def _writer_alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            # One node migrates at a time; the others find the work done.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS fastchat_meta (key TEXT PRIMARY KEY, value TEXT)"
            )
            cur = await conn.execute("SELECT value FROM fastchat_meta WHERE key = 'schema_version'")
            row = await cur.fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}, newer than this fastchat "
                    f"({SCHEMA_VERSION}); upgrade fastchat"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                await conn.execute(_MIGRATIONS[target], prepare=False)
                await conn.execute(
                    "INSERT INTO fastchat_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(target),),
                )
            if self._seed and version == 0:
                now = _now_ms()
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO posts(title, content, author, ts) VALUES (%s, %s, %s, %s)",
                        [(t, c, a, now + i) for i, (t, c, a) in enumerate(SAMPLE_POSTS)],
                    )
        store.log_schema(self.location, version, SCHEMA_VERSION)  # committed: said

    # ------------------------------------------------------------------ writes

    def submit(self, write: Write) -> None:
        self.pending += 1
        self._queue.append(write)
        self._wake.set()

    async def _run(self) -> None:
        q = self._queue
        while True:
            if not q:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # Group commit: everything that queued up while the last batch committed.
            batch = [q.popleft() for _ in range(min(len(q), self.batch_max))]
            results = await self._commit(batch)
            # Handed over in its own callback, in commit order (as the SQLite store's writer
            # thread does): a failure in the service cannot stop the writer.
            asyncio.get_running_loop().call_soon(self._deliver, results)

    async def _commit(self, batch: list[Write], retry: bool = True) -> list[Result]:
        conn = self._writer
        started = time.perf_counter()
        writing = False
        try:
            if conn is None or conn.closed:
                conn = await self._reconnect()
            async with conn.pipeline() as pipeline:
                # Round trip 1: begin, take the sequencer lock, read the newest stamp.
                await conn.execute("BEGIN")
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))
                last = await (await conn.execute(LAST_TS_SQL)).fetchone()
                ts = max(_now_ms(), (last[0] if last else None) or 0)
                # Round trip 2: every insert and the commit; one executemany per table,
                # each row its own statement (ids in batch order, one result per row).
                writing = True
                groups: dict[int, list[int]] = {}
                changes: list[int] = []  # edits and deletions: row by row, after the inserts
                for i, write in enumerate(batch):
                    if write.op in CHANGE_OPS:
                        changes.append(i)
                    else:
                        groups.setdefault(write.op, []).append(i)
                cursors = []
                track = self.track_previous
                for kind, positions in groups.items():
                    cur = conn.cursor()
                    await cur.executemany(
                        (_INSERT_SQL_PREV if track else _INSERT_SQL)[kind],
                        [_insert_params(batch[i], ts, track) for i in positions],
                        returning=True,
                    )
                    cursors.append((cur, positions))
                changed = {i: await self._change(conn, batch[i], ts) for i in changes}
                await conn.execute("COMMIT")
                await pipeline.sync()
            inserted: list[Any] = [None] * len(batch)
            for cur, positions in cursors:
                for i in positions:
                    inserted[i] = await cur.fetchone()
                    cur.nextset()
        except Exception as exc:  # the writer must outlive any bad batch
            await self._rollback(conn)
            if retry and not writing and isinstance(exc, psycopg.OperationalError):
                # The connection broke before anything was sent to write (a database
                # restart, a failover): nothing can have been stored, so on a new
                # connection the batch goes again, once.
                log.warning("the writer's connection broke (%r); reconnecting", exc)
                return await self._commit(batch, retry=False)
            return self._failed(batch, exc)
        self._committed(len(batch), started)
        # Committed. Only retries and comments on missing posts need another look.
        results: list[Result] = []
        for i, (write, row) in enumerate(zip(batch, inserted, strict=True)):
            if i in changed:
                results.append(changed[i])
                continue
            try:
                results.append(await self._result(conn, write, ts, row))
            except psycopg.Error as exc:
                error = StoreError(f"the database did not answer: {exc.__class__.__name__}")
                results.append((write, error, None))
        return results

    async def _change(self, conn: psycopg.AsyncConnection[Any], write: Write, ts: int) -> Result:
        """An edit or deletion, in the batch's transaction: the item read under a row lock,
        the decision (store.decide_change, as on SQLite), the update and its change row."""
        table, deleting = CHANGE_OPS[write.op]
        edit: Edit = write.extra
        cur = await conn.execute(_ITEM_SQL[table], (edit.item_id,))
        item = await cur.fetchone()
        decided = decide_change(write, None if item is None else tuple(item), table, deleting, ts)
        if isinstance(decided, EditRefused):
            return (write, decided, None)
        await conn.execute(_CHANGE_SQL[table], (decided[3], decided[6], decided[7], edit.item_id))
        cur = await conn.execute(
            _INSERT_CHANGE, (CHANGE_KIND[table], str(decided[1]), decided[0], ts)
        )
        change = await cur.fetchone()
        assert change is not None
        return (write, (*decided, change[0]), False)

    async def _rollback(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is None or conn.closed:
            return
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            log.warning("rollback failed, reconnecting the writer: %r", exc)
            await conn.close()

    async def _result(
        self, conn: psycopg.AsyncConnection[Any], write: Write, ts: int, row: Any
    ) -> Result:
        kind, a, b, c, client_id = write.op, write.scope, write.user, write.text, write.client_id
        if kind in (OP_BAN, OP_UNBAN):
            return (write, None if row is None else tuple(row), False if kind == OP_BAN else None)
        if row is not None:
            new_id = row[0]
            if kind == OP_POST:
                return (write, (new_id, a, c, b, ts, 0), False)
            if len(row) > 1:  # track_previous: the room's previous id
                return (write, (new_id, a, b, c, ts, client_id, None, None, row[1]), False)
            return (write, (new_id, a, b, c, ts, client_id, None, None), False)
        # Nothing inserted: a retry of a stored send, a thread's post made before, or
        # (comments) a missing post.
        if kind == OP_POST and client_id is not None:
            stored = await (await conn.execute(_FIND_POST, (client_id,))).fetchone()
            if stored is not None:
                return (write, tuple(stored), True)
        if client_id is not None:
            find = _FIND_MESSAGE if kind == OP_MESSAGE else _FIND_COMMENT
            stored = await (await conn.execute(find, (a, b, client_id))).fetchone()
            if stored is not None:
                return (write, tuple(stored), True)
        if kind == OP_COMMENT:
            return (write, PostNotFound(int(a)), None)
        raise StoreError(f"operation {kind} stored nothing")  # pragma: no cover

    async def _reconnect(self) -> psycopg.AsyncConnection[Any]:
        """The writer's connection broke (database restart, network): the next batch gets a
        new one (the failed batch was answered with store_unavailable)."""
        self._writer = await psycopg.AsyncConnection.connect(
            self.url, connect_timeout=CONNECT_TIMEOUT, **_conninfo_kwargs()
        )
        return self._writer

    # ------------------------------------------------------------------ reads

    async def search(
        self, terms: list[str], room: str | None, post_id: int | None, offset: int, limit: int
    ) -> list[Row]:
        parts: list[str] = []
        params: list[Any] = []
        # Ranked among the newest SEARCH_WINDOW matches of each table, as on SQLite.
        if post_id is None:
            parts.append(_SEARCH_PART["m"].format(scope="" if room is None else " AND room = %s"))
            params += [SEARCH_WINDOW] if room is None else [room, SEARCH_WINDOW]
        if room is None:
            scope = "" if post_id is None else " AND post_id = %s"
            parts.append(_SEARCH_PART["c"].format(scope=scope))
            params += [SEARCH_WINDOW] if post_id is None else [post_id, SEARCH_WINDOW]
        sql = (
            "WITH q AS (SELECT plainto_tsquery('simple', %s) AS q) "
            f"SELECT * FROM ({' UNION ALL '.join(parts)}) hits "
            "ORDER BY r DESC, id DESC LIMIT %s OFFSET %s"
        )
        rows = await self._fetch(sql, (" ".join(terms), *params, limit, offset))
        return [(r[0], r[1], r[2] if r[0] == "m" else int(r[2]), r[3], r[4], r[5]) for r in rows]

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("?", "%s")
        pool = self._pool
        if pool is None:
            raise StoreError("the database is not open")
        for attempt in (1, 2):
            try:
                async with pool.connection() as conn:
                    cur = await conn.execute(text, params)
                    return await cur.fetchall()
            except psycopg.OperationalError as exc:  # the pool's timeout included
                if attempt == 2 or isinstance(exc, PoolTimeout):
                    raise StoreError(f"the database did not answer: {exc!s:.200}") from exc
                # A broken connection (database restart): replace every broken one, and
                # read again; reads are safe to repeat.
                await pool.check()
            except psycopg.Error as exc:
                raise StoreError(f"the database refused a read: {exc!s:.200}") from exc
        raise AssertionError("unreachable")


# Moderation (moderation.py): a ban added or replaced, one lifted; both return the row.
_UPSERT_BAN: Final = (
    f"INSERT INTO bans({BAN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (sub, room, kind) DO UPDATE SET until_ms = excluded.until_ms, "
    f"by = excluded.by, reason = excluded.reason, ts = excluded.ts RETURNING {BAN_COLUMNS}"
)
_DELETE_BAN: Final = (
    f"DELETE FROM bans WHERE sub = %s AND room = %s AND kind = %s RETURNING {BAN_COLUMNS}"
)

_INSERT_SQL: Final = {
    OP_MESSAGE: _INSERT_MESSAGE,
    OP_COMMENT: _INSERT_COMMENT,
    OP_POST: _INSERT_POST,
    OP_BAN: _UPSERT_BAN,
    OP_UNBAN: _DELETE_BAN,
}


_INSERT_SQL_PREV: Final = {
    **_INSERT_SQL,
    OP_MESSAGE: _INSERT_MESSAGE_PREV,
    OP_COMMENT: _INSERT_COMMENT_PREV,
}


def _insert_params(write: Write, ts: int, track: bool = False) -> tuple[Any, ...]:
    kind, a, b, c, client_id = write.op, write.scope, write.user, write.text, write.client_id
    if kind == OP_MESSAGE:
        params = (a, b, c, ts, client_id, write.sub)
        return (a, *params) if track else params
    if kind == OP_COMMENT:
        with_post = (a, b, c, ts, client_id, write.sub, a)
        return (a, *with_post) if track else with_post
    if kind == OP_BAN:
        until, by, reason = write.extra
        return (b, a, c, until, by, reason, ts)
    if kind == OP_UNBAN:
        return (b, a, c)
    return (a, c, b, ts, client_id)  # a post: title, content, author, slug


def _safe(url: str) -> str:
    """Where the database is, without the password: for the ready line, errors and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "(the DATABASE_URL)"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"
