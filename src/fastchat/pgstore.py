"""The store on PostgreSQL (`DATABASE_URL=postgresql://...`): the same group-commit writer
thread, batches and reads as the SQLite store (`store.py`), through psycopg 3, which prepares
statements it runs repeatedly by itself.

Ids must become visible in id order for the database to be the cluster's sequencer
(docs/SCALING.md). Sequences do not promise that (an id can commit after a larger one), so
each batch transaction first takes one advisory lock: commits, and the ids in them, are serial,
as under SQLite's write lock.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg.pq import TransactionStatus

from fastchat.store import SAMPLE_POSTS, Store, StoreError, _now_ms

# pg_advisory_xact_lock key: "fastchat" in ASCII, truncated to 63 bits.
SEQUENCER_LOCK: Final = 0x66617374636861

SCHEMA_VERSION: Final = 1
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
}


class PostgresStore(Store):
    OPEN_ERRORS = (psycopg.Error, OSError)

    def __init__(self, url: str, *, seed: bool = True, batch_max: int = 1024) -> None:
        super().__init__(url, seed=seed, batch_max=batch_max)
        self.url = url
        self._sql: dict[str, str] = {}

    def _connect(self) -> Any:
        return psycopg.connect(self.url, autocommit=True)

    def _q(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("?", "%s")
        return conn.execute(text, params)

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))

    def _in_transaction(self, conn: Any) -> bool:
        return bool(conn.info.transaction_status != TransactionStatus.IDLE)

    def _configure_writer(self, conn: Any) -> None:
        if self.max_bytes:
            raise StoreError("DB_MAX_BYTES applies to SQLite; use PostgreSQL's own quotas")

    def _migrate(self, conn: Any) -> None:
        with conn.transaction():
            # One node migrates at a time; the others find the work done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SEQUENCER_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS fastchat_meta (key TEXT PRIMARY KEY, value TEXT)"
            )
            row = conn.execute(
                "SELECT value FROM fastchat_meta WHERE key = 'schema_version'"
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}, newer than this fastchat "
                    f"({SCHEMA_VERSION}); upgrade fastchat"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                conn.execute(_MIGRATIONS[target])
                conn.execute(
                    "INSERT INTO fastchat_meta VALUES ('schema_version', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(target),),
                )
            if self._seed and version == 0:
                now = _now_ms()
                for i, (title, content, author) in enumerate(SAMPLE_POSTS):
                    conn.execute(
                        "INSERT INTO posts(title, content, author, ts) VALUES (%s, %s, %s, %s)",
                        (title, content, author, now + i),
                    )
