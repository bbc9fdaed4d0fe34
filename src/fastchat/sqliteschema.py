"""The SQLite store's schema: its migrations, in order (`MIGRATIONS`, the version in
PRAGMA user_version), and what an opened file must hold to be a fastchat database at its
version (`schema_problem`)."""

from __future__ import annotations

import functools
from typing import Final

import apsw

SCHEMA_VERSION: Final = 12
MIGRATIONS: Final[dict[int, str]] = {
    1: """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        message TEXT NOT NULL,
        ts INTEGER NOT NULL,
        client_id TEXT
    );
    CREATE INDEX messages_room_id ON messages(room, id);
    CREATE UNIQUE INDEX messages_client ON messages(room, user, client_id)
        WHERE client_id IS NOT NULL;
    CREATE TABLE posts (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        content TEXT NOT NULL,
        author TEXT NOT NULL,
        ts INTEGER NOT NULL
    );
    CREATE TABLE comments (
        id INTEGER PRIMARY KEY,
        post_id INTEGER NOT NULL REFERENCES posts(id),
        user TEXT NOT NULL,
        comment TEXT NOT NULL,
        ts INTEGER NOT NULL,
        client_id TEXT
    );
    CREATE INDEX comments_post_id ON comments(post_id, id);
    CREATE UNIQUE INDEX comments_client ON comments(post_id, user, client_id)
        WHERE client_id IS NOT NULL;
    """,
    2: """
    CREATE TABLE bans (
        sub TEXT NOT NULL,
        room TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('ban', 'mute')),
        until_ms INTEGER,
        by TEXT NOT NULL,
        reason TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (sub, room, kind)
    ) WITHOUT ROWID;
    """,
    # Edits and deletions: the author's token sub, when it was edited or deleted (a deleted
    # item keeps its row, without its text: a tombstone), and every change in commit order.
    3: """
    ALTER TABLE messages ADD COLUMN sub TEXT;
    ALTER TABLE messages ADD COLUMN edited_at INTEGER;
    ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
    ALTER TABLE comments ADD COLUMN sub TEXT;
    ALTER TABLE comments ADD COLUMN edited_at INTEGER;
    ALTER TABLE comments ADD COLUMN deleted_at INTEGER;
    CREATE TABLE changes (
        id INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        scope TEXT NOT NULL,
        item_id INTEGER NOT NULL,
        ts INTEGER NOT NULL
    );
    CREATE INDEX changes_scope ON changes(kind, scope, id);
    """,
    # Full-text search: an FTS5 index of each table's words, and of its room's (post's) name
    # so that a search in one room is an intersection of the index's lists, not a walk
    # through every match (contentless: no copy of the text; contentless_delete: an edit or
    # deletion drops a row's words by its id), kept by
    # ftsindex.Indexer off the write path, and how far it has got (the rows already there
    # are indexed from 0 when a database from before search is opened).
    4: """
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        message, room, content='', contentless_delete=1,
        tokenize='unicode61 remove_diacritics 2'
    );
    CREATE VIRTUAL TABLE comments_fts USING fts5(
        comment, post, content='', contentless_delete=1,
        tokenize='unicode61 remove_diacritics 2'
    );
    CREATE TABLE search_index (
        kind INTEGER PRIMARY KEY,
        last_id INTEGER NOT NULL,
        last_change INTEGER NOT NULL
    );
    """,
    # Threads of the embeddable comments widget (embed.js): the post made for a site's slug.
    5: """
    ALTER TABLE posts ADD COLUMN slug TEXT;
    CREATE UNIQUE INDEX posts_slug ON posts(slug) WHERE slug IS NOT NULL;
    """,
    # Each room's message ids, and each client_id's message, kept in bulk (issue 14): with
    # the indexes messages(room, id) and messages(room, user, client_id), every commit wrote
    # one 4 kB page per room (and per sender) in its batch: with rooms of 1-2 members, about
    # one a message each, into the WAL, then checkpointed and synced. Now the writer keeps
    # a room's newest messages in memory and files them here many at a time, one page for
    # all of them (fastchat.trailing); every message up to `message_rooms_upto` is filed.
    6: """
    CREATE TABLE message_rooms (
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
    CREATE TABLE message_rooms_upto (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        id INTEGER NOT NULL
    );
    CREATE TABLE message_clients (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        client_id TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (room, user, client_id)
    ) WITHOUT ROWID;
    INSERT INTO message_rooms(room, id) SELECT room, id FROM messages ORDER BY room, id;
    INSERT INTO message_clients(room, user, client_id, id)
        SELECT room, user, client_id, id FROM messages WHERE client_id IS NOT NULL
        ORDER BY room, user, client_id;
    INSERT INTO message_rooms_upto VALUES (1, (SELECT coalesce(max(id), 0) FROM messages));
    DROP INDEX messages_room_id;
    DROP INDEX messages_client;
    """,
    # message_clients keyed by (bucket, room, user, client_id), bucket = id >> 16: filed in
    # key order, random client ids (what the clients send) landed each on a page of its own
    # in its sender's part of the table once that part spanned many pages (bench.historycost:
    # 9.0 us a message with 2 million stored, 5.5 with ascending ids); now a filing appends
    # to the newest bucket. client_buckets: the buckets each sender has ids in (a retry's
    # lookup walks them, newest first).
    7: """
    CREATE TABLE message_clients_7 (
        bucket INTEGER NOT NULL,
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        client_id TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (bucket, room, user, client_id)
    ) WITHOUT ROWID;
    INSERT INTO message_clients_7(bucket, room, user, client_id, id)
        SELECT id >> 16, room, user, client_id, id FROM message_clients ORDER BY 1, 2, 3, 4;
    DROP TABLE message_clients;
    ALTER TABLE message_clients_7 RENAME TO message_clients;
    CREATE TABLE client_buckets (
        room TEXT NOT NULL,
        user TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        PRIMARY KEY (room, user, bucket)
    ) WITHOUT ROWID;
    INSERT INTO client_buckets(room, user, bucket)
        SELECT DISTINCT room, user, bucket FROM message_clients ORDER BY 1, 2, 3;
    """,
    # The filter of every stored client id (trailing.ClientKeys) up to message `upto`, saved
    # by a clean close: an open reads it back and the client ids stored after `upto` (after
    # a crash too), instead of all of them (about a second per million).
    8: """
    CREATE TABLE client_keys (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        scheme INTEGER NOT NULL,
        upto INTEGER NOT NULL,
        bits BLOB NOT NULL
    );
    """,
    # Each post's comment count, kept by the writer (one upsert per post per commit):
    # counted per read, a list of 100 posts walked every comment of each on the loop (8 ms
    # with 2 million comments, and growing with them). A table of its own: a count in the
    # post's row would rewrite the post's whole text with every commit that moves it.
    9: """
    CREATE TABLE post_counts (
        post_id INTEGER PRIMARY KEY,
        comments INTEGER NOT NULL
    );
    INSERT INTO post_counts(post_id, comments)
        SELECT post_id, count(*) FROM comments GROUP BY post_id;
    """,
    # Each post's comment ids, kept in bulk like message_rooms (migration 6): with the index
    # comments(post_id, id), a commit of comments to many posts wrote one 4 kB page per
    # post in its batch (bench: unpipelined-comments, 500 posts).
    10: """
    CREATE TABLE comment_posts (
        post_id INTEGER NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (post_id, id)
    ) WITHOUT ROWID;
    CREATE TABLE comment_posts_upto (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        id INTEGER NOT NULL
    );
    INSERT INTO comment_posts(post_id, id) SELECT post_id, id FROM comments ORDER BY post_id, id;
    INSERT INTO comment_posts_upto VALUES (1, (SELECT coalesce(max(id), 0) FROM comments));
    DROP INDEX comments_post_id;
    """,
    # Each comment's client id, kept in bulk like a message's (migrations 6-8): with the
    # index comments(post_id, user, client_id), a commit wrote one 4 kB page per comment
    # with a client id, which is every comment our clients send.
    11: """
    CREATE TABLE comment_clients (
        bucket INTEGER NOT NULL,
        post_id INTEGER NOT NULL,
        user TEXT NOT NULL,
        client_id TEXT NOT NULL,
        id INTEGER NOT NULL,
        PRIMARY KEY (bucket, post_id, user, client_id)
    ) WITHOUT ROWID;
    CREATE TABLE comment_client_buckets (
        post_id INTEGER NOT NULL,
        user TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        PRIMARY KEY (post_id, user, bucket)
    ) WITHOUT ROWID;
    CREATE TABLE comment_client_keys (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        scheme INTEGER NOT NULL,
        upto INTEGER NOT NULL,
        bits BLOB NOT NULL
    );
    INSERT INTO comment_clients(bucket, post_id, user, client_id, id)
        SELECT id >> 16, post_id, user, client_id, id FROM comments
        WHERE client_id IS NOT NULL ORDER BY 1, 2, 3, 4;
    INSERT INTO comment_client_buckets(post_id, user, bucket)
        SELECT DISTINCT post_id, user, bucket FROM comment_clients ORDER BY 1, 2, 3;
    DROP INDEX comments_client;
    """,
    # The search index without FTS5's size record per row (`columnsize=0`; no `%_docsize`,
    # which `contentless_delete` requires): an edit or deletion of an indexed item notes the
    # text it was indexed with (search_pending, ftsindex.follow_change), and the indexer drops
    # those words with FTS5's `delete` command, so the index no longer needs to drop a row by
    # its id alone. Rebuilt from the rows by the indexer, from the first (`search_index`
    # emptied), as after migration 4.
    12: """
    DROP TABLE messages_fts;
    DROP TABLE comments_fts;
    CREATE VIRTUAL TABLE messages_fts USING fts5(
        message, room, content='', columnsize=0,
        tokenize='unicode61 remove_diacritics 2'
    );
    CREATE VIRTUAL TABLE comments_fts USING fts5(
        comment, post, content='', columnsize=0,
        tokenize='unicode61 remove_diacritics 2'
    );
    DELETE FROM search_index;
    CREATE TABLE search_pending (
        kind INTEGER NOT NULL,
        item_id INTEGER NOT NULL,
        old TEXT NOT NULL,
        PRIMARY KEY (kind, item_id)
    ) WITHOUT ROWID;
    """,
}


Schema = tuple[dict[str, list[str]], set[str]]  # tables with their columns, index names


def _schema(conn: apsw.Connection) -> Schema:
    tables: dict[str, list[str]] = {}
    indexes: set[str] = set()
    for kind, name in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ):
        if kind == "table":
            tables[name] = [
                r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (name,))
            ]
        elif kind == "index":
            indexes.add(name)
    return tables, indexes


@functools.cache
def _schema_at(version: int) -> Schema:
    """What a fastchat database at schema `version` holds: its migrations, run in memory."""
    conn = apsw.Connection(":memory:")
    for target in range(1, version + 1):
        conn.execute(MIGRATIONS[target])
    return _schema(conn)


def schema_problem(conn: apsw.Connection, version: int) -> str | None:
    """What keeps `conn`'s database from being a fastchat one at `version` (None: nothing).
    Tables and indexes of its own beside ours are fine; ours must be whole."""
    tables, indexes = _schema(conn)
    if version == 0:
        # Our migrations set user_version in the transaction that creates the tables.
        return (
            f"it has tables ({', '.join(sorted(tables))}) but no schema version" if tables else None
        )
    want_tables, want_indexes = _schema_at(version)
    for name, columns in want_tables.items():
        if name not in tables:
            return f"schema version {version} but no table {name}"
        if sorted(tables[name]) != sorted(columns):
            return (
                f"table {name} has columns ({', '.join(tables[name])}), "
                f"expected ({', '.join(columns)})"
            )
    missing = sorted(want_indexes - indexes)
    if missing:
        return f"schema version {version} but no index {', '.join(missing)}"
    return None
