"""The store: the interface the service writes and reads through (`Store`), what it hands
back (`Write`, `Result`, `Page`), and what every database shares: the columns a row has,
the rules of an edit (`decide_change`), the sample posts. Its implementations: the embedded
default, SQLite (`sqlitestore.py`, its schema in `sqliteschema.py`), and PostgreSQL
(`pgstore.py`).

Writes are queued from the event loop (`submit`) and committed by a single writer in one
transaction per batch; only after COMMIT returns are the results handed to the service:
nothing is broadcast or acknowledged before its transaction is durable. Reads (history,
posts, health) are coroutines over portable SQL, so a networked database can await them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import msgspec

from fastchat.errors import ErrorCode, FastchatError

log = logging.getLogger("fastchat.store")

# What a Write stores (Write.op).
OP_MESSAGE: Final = 1
OP_COMMENT: Final = 2
OP_POST: Final = 3
OP_BAN: Final = 4  # a ban or mute, added or replaced (moderation.py)
OP_UNBAN: Final = 5  # one lifted
# Edits and deletions (tombstones): the item's row, changed, and a row in `changes`.
OP_EDIT_MESSAGE: Final = 6
OP_DELETE_MESSAGE: Final = 7
OP_EDIT_COMMENT: Final = 8
OP_DELETE_COMMENT: Final = 9
# op -> (the table changed, whether it is a deletion)
CHANGE_OPS: Final = {
    OP_EDIT_MESSAGE: ("messages", False),
    OP_DELETE_MESSAGE: ("messages", True),
    OP_EDIT_COMMENT: ("comments", False),
    OP_DELETE_COMMENT: ("comments", True),
}


class Write(msgspec.Struct):
    """One write operation, and who hears how it ended: the sending socket's hub member
    (`member`: the room's broadcast, or an ERROR) or a REST request (`future`: the stored
    record, or the StoreError). A msgspec Struct: about 50 ns more than the tuple it
    replaced, on this path once per message.

    `op`        OP_MESSAGE       OP_COMMENT    OP_POST       OP_BAN / OP_UNBAN
    `scope`     the room         the post id   the title     the room, or "*"
    `user`      the sender       the author    the author    the banned user's sub
    `text`      the message      the comment   the content   "ban" or "mute"
    `client_id` the send's idempotency key; OP_POST: a thread's slug (embed.js), the post
                made for it before is answered instead (duplicate)
    `sub`       the sender's token `sub` (None: anonymous), stored as the author
    `extra`                                                  OP_BAN: (until ms or None,
                                                             by, reason)

    An edit or deletion (CHANGE_OPS): `scope` the room or post id the item must be in (None:
    any), `text` the new text (deletions: ""), `sub` who asks, `extra` an `Edit`.
    """

    op: int
    scope: str | int  # an edit's or deletion's: None when the asker named no room or post
    user: str
    text: str
    client_id: str | None = None
    member: Any = None  # a fastchat._hub.Member (the store does not import the hub)
    future: asyncio.Future[Any] | None = None
    extra: Any = None
    sub: str | None = None


class Edit(NamedTuple):
    """An edit's or deletion's terms (Write.extra): the item, and what the asker may do."""

    item_id: int
    moderator: bool  # moderators edit and delete anything, at any time
    window_ms: int  # an author edits and deletes its own items for this long after sending
    # Rooms where the asker is banned or muted (moderation.py), with the refusal's code: its
    # messages there stay as they are (the item's room is known only here, in the store).
    silenced: dict[str, str] | None = None


# What `on_committed` is handed, one per Write, in commit order: (write, row, duplicate),
# row being the stored row tuple (see *_COLUMNS) and duplicate whether it was stored before
# (a retry with the same client_id); or (write, error, None): a StoreError, nothing stored.
# An edit's or deletion's row is the item's, then the change's id (its place in `changes`).
MESSAGE_COLUMNS: Final = 'id, room, "user", message, ts, client_id, edited_at, deleted_at'
COMMENT_COLUMNS: Final = 'id, post_id, "user", comment, ts, client_id, edited_at, deleted_at'
# What an edit checks: the item's author (token sub), its time and whether it is deleted.
ITEM_SQL: Final = {
    "messages": f"SELECT {MESSAGE_COLUMNS}, sub FROM messages WHERE id = ?",
    "comments": f"SELECT {COMMENT_COLUMNS}, sub FROM comments WHERE id = ?",
}
CHANGE_SQL: Final = {
    "messages": "UPDATE messages SET message = ?, edited_at = ?, deleted_at = ? WHERE id = ?",
    "comments": "UPDATE comments SET comment = ?, edited_at = ?, deleted_at = ? WHERE id = ?",
}
INSERT_CHANGE_SQL: Final = (
    "INSERT INTO changes(kind, scope, item_id, ts) VALUES (?, ?, ?, ?) RETURNING id"
)
# changes.kind: which table the changed item is in.
CHANGE_KIND: Final = {"messages": 1, "comments": 2}
POST_COLUMNS: Final = (
    "id, title, content, author, ts, (SELECT count(*) FROM comments c WHERE c.post_id = p.id)"
)

Row = tuple[Any, ...]
_MAX_ID: Final = 2**63 - 1
_TABLES: Final = {"messages": (MESSAGE_COLUMNS, "room"), "comments": (COMMENT_COLUMNS, "post_id")}
# Changed items replayed per read (a resume's edits and deletions).
CHANGES_PAGE: Final = 500
# One page of a scope's items, newest or oldest first ({order}): ids between the bounds, the
# limit of them; (scope, lo, hi, limit). Over the scope's index (PostgreSQL's); SQLite's
# messages and comments: sqlitestore.SQLITE_PAGE_SQL.
PAGE_SQL: Final = {
    "messages": f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? AND id < ? "
    "ORDER BY id {order} LIMIT ?",
    "comments": f"SELECT {COMMENT_COLUMNS} FROM comments WHERE post_id = ? AND id > ? AND id < ? "
    "ORDER BY id {order} LIMIT ?",
}


class Page(NamedTuple):
    rows: list[Row]
    has_more: bool
    forward: bool

    @property
    def next(self) -> dict[str, int] | None:
        """The cursor for the next page in the same direction, or None at the end."""
        if not self.has_more or not self.rows:
            return None
        return {"after": self.rows[-1][0]} if self.forward else {"before": self.rows[0][0]}


Result = tuple[Write, Any, bool | None]
OnCommitted = Callable[[list[Result]], None]


# A ban's row: (sub, room, kind, until_ms or None, by, reason, ts).
BAN_COLUMNS: Final = "sub, room, kind, until_ms, by, reason, ts"
# A search ranks (bm25) the newest SEARCH_WINDOW matches of each table, not every match: a
# common word is in a tenth of a big history, and ranking 100,000 rows takes a second where
# this takes milliseconds (bench/search.py); chat search wants the recent anyway.
SEARCH_WINDOW: Final = 1000

SAMPLE_POSTS: Final = (
    (
        "Welcome to fastchat",
        "A real-time chat and live-comments server. Open a post, leave a comment, and watch it "
        "appear in every other browser viewing the same post.",
        "fastchat",
    ),
    (
        "How the fan-out works",
        "Each message is committed to SQLite first, then framed once and written to every "
        "member of its room in one write per socket per loop tick.",
        "fastchat",
    ),
    (
        "Say hello in #general",
        "The chat page lets you pick a name and a room. Messages are stored, so you can reload "
        "and find the history where you left it.",
        "fastchat",
    ),
)


class StoreError(FastchatError):
    """A write that was not stored, or a read that failed (the sender is told; nothing is
    acknowledged): `store_unavailable`."""

    def __init__(self, message: str, code: str = ErrorCode.STORE_UNAVAILABLE) -> None:
        super().__init__(code, message)


class EditRefused(StoreError):
    """An edit or deletion refused in its transaction: no such item (or deleted), not the
    asker's, or past the edit window."""


class PostNotFound(StoreError):
    """A comment on a post that does not exist (checked inside the write transaction)."""

    def __init__(self, post_id: int) -> None:
        super().__init__(f"post {post_id} does not exist", ErrorCode.POST_NOT_FOUND)
        self.post_id = post_id


class Store:
    """What the service needs from a database; `sqlitestore.SqliteStore` (the embedded default) and
    `pgstore.PostgresStore` implement it.

    Writes: `submit(write)` queues one operation from the loop; a single writer commits whatever
    queued up since its last commit in one transaction and hands the results, in commit
    order, to `on_committed` on the loop (group commit, database first). Reads are coroutines
    over portable SQL (`?` placeholders); each dialect supplies `_fetch`.
    """

    OPEN_ERRORS: tuple[type[BaseException], ...] = ()

    @property
    def read_errors(self) -> tuple[type[BaseException], ...]:
        """What a failed read raises: a StoreError, or the driver's own errors."""
        return (StoreError, *self.OPEN_ERRORS)

    # A page of a scope's items (Store.page), per table.
    page_sql: Mapping[str, str] = PAGE_SQL
    # A post's columns, its comment count last (SqliteStore keeps it in the row).
    post_columns: str = POST_COLUMNS

    def __init__(self, *, batch_max: int = 1024, seed: bool = True) -> None:
        self.location = ""  # where the data is, for people: a path, a URL without password
        self.batch_max = batch_max
        self._seed = seed
        self._on_committed: OnCommitted | None = None
        self.batches = 0
        self.rows = 0
        self.failed_batches = 0
        self.last_commit_seconds = 0.0
        self.pending = 0  # operations queued and not yet handed back (loop thread only)
        self._drained: asyncio.Future[None] | None = None  # see `drained`
        # SQLite: WAL checkpoints run by the checkpointer thread, and by the writer itself
        # (past WAL_HARD_PAGES). A networked database checkpoints on its own: both stay 0.
        self.checkpoints = 0
        self.inline_checkpoints = 0
        # SQLite: batches the loop handed to the writer thread (a lock held elsewhere, a
        # synchronous setting that syncs, or a WAL past WAL_HARD_PAGES): each costs two
        # thread hand-offs. A networked database's writer is always its own task: 0.
        self.thread_batches = 0
        # Clustered (delivery.py): each new message or comment row carries a 7th field, the
        # previous id of its room or post, read under the write lock (0: none).
        self.track_previous = False
        # Full-text search (SEARCH): off, `search` is refused and SQLite indexes nothing
        # (its indexer catches up from where it stopped once search is on again).
        self.search_enabled = True
        # Called after each commit (on the loop or the writer thread) with (rows, seconds).
        self.on_batch: Callable[[int, float], None] | None = None

    # -- lifecycle and writes: each dialect ---------------------------------------------

    async def open(self, on_committed: OnCommitted) -> None:
        """Connect, migrate, start the writer. Raises StoreError."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Create or migrate the schema, then disconnect: done once by a parent process
        before it starts workers that share the database (so they do not race to)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Commit everything queued, stop the writer, disconnect. Safe to call twice."""
        raise NotImplementedError

    def submit(self, write: Write) -> None:
        """Queue one write (loop thread). Its result comes back through `on_committed`."""
        raise NotImplementedError

    def _writer_alive(self) -> bool:
        raise NotImplementedError

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run one read statement (`?` placeholders, prepared and cached by the driver)."""
        raise NotImplementedError

    # -- shared by the writers ------------------------------------------------------------

    def _committed(self, size: int, started: float) -> None:
        """Bookkeeping after a commit (writer side)."""
        self.batches += 1
        self.rows += size
        self.last_commit_seconds = time.perf_counter() - started
        if self.on_batch is not None:
            self.on_batch(size, self.last_commit_seconds)

    def _failed(self, batch: list[Write], exc: BaseException) -> list[Result]:
        """A batch the database refused: every operation in it gets the error."""
        log.error("write of %d operations failed: %r", len(batch), exc)
        return self._refuse(batch, f"the database refused the write: {exc.__class__.__name__}")

    def _refuse(self, batch: list[Write], reason: str) -> list[Result]:
        """A batch not stored: every operation in it gets a StoreError saying why."""
        self.failed_batches += 1
        error = StoreError(reason)
        return [(write, error, None) for write in batch]

    def _deliver(self, results: list[Result]) -> None:
        """On the loop: hand a committed batch to the service."""
        self.pending -= len(results)
        assert self._on_committed is not None
        self._on_committed(results)
        if not self.pending and self._drained is not None:
            self._drained.set_result(None)
            self._drained = None

    async def drained(self) -> None:
        """Until every write submitted so far has been committed (or refused) and handed
        back: the drain of a graceful shutdown."""
        while self.pending:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._drained)

    # -- reads (coroutines on the loop) --------------------------------------------------

    async def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        rows = await self._fetch(sql, params)
        return tuple(rows[0]) if rows else None

    async def page(
        self,
        table: str,
        scope: str | int,
        limit: int,
        *,
        before: int | None = None,
        after: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> Page:
        """One page of a room's messages (`table="messages"`, scope = room) or a post's
        comments (`table="comments"`, scope = post id), always in chronological order.

        Bounds combine: ids strictly between `after` and `before`, times within
        [`since_ms`, `until_ms`]. With a lower bound (`after`/`since_ms`) the page is the
        oldest `limit` items above it (forward paging, resume); otherwise the newest `limit`
        below the upper bound. `has_more` says whether the same query has more beyond the page.
        """
        lo = after if after is not None else 0
        hi = before if before is not None else _MAX_ID
        if since_ms is not None:
            lo = max(lo, await self.first_id_at(table, since_ms) - 1)
        if until_ms is not None:
            hi = min(hi, await self.first_id_at(table, until_ms + 1))
        forward = after is not None or since_ms is not None
        rows = await self._fetch(
            self.page_sql[table].format(order="ASC" if forward else "DESC"),
            self._page_params(table, scope, lo, hi, limit + 1, forward),
        )
        more = len(rows) > limit
        rows = [tuple(r) for r in rows[:limit]]
        if not forward:
            rows.reverse()
        return Page(rows, more, forward)

    def _page_params(
        self, table: str, scope: str | int, lo: int, hi: int, n: int, forward: bool
    ) -> tuple[Any, ...]:
        """The parameters of `page_sql[table]`: a page of `n` strictly between `lo` and
        `hi`, the oldest (`forward`) or the newest."""
        return (scope, lo, hi, n)

    async def recent_messages(
        self, room: str, limit: int, *, before: int | None = None, after: int | None = None
    ) -> tuple[list[Row], bool]:
        page = await self.page("messages", room, limit, before=before, after=after)
        return page.rows, page.has_more

    async def comments(
        self, post_id: int, limit: int, *, before: int | None = None, after: int | None = None
    ) -> tuple[list[Row], bool]:
        page = await self.page("comments", post_id, limit, before=before, after=after)
        return page.rows, page.has_more

    async def first_id_at(self, table: str, ms: int) -> int:
        """The smallest id stored at or after time `ms` (max id + 1 if none).

        Each batch is stamped no earlier than the newest row before it (`_batch_ts`), so ts
        never decreases with id and a binary search over ids needs no index on ts (an index
        costs every insert; this costs ~30 point reads per time-bounded query).
        """
        bounds = await self._one(f"SELECT min(id), max(id) FROM {table}")
        if bounds is None or bounds[0] is None:
            return 1
        lo, hi = bounds[0], bounds[1] + 1  # answer in [lo, hi]
        probe = f"SELECT id, ts FROM {table} WHERE id >= ? ORDER BY id LIMIT 1"
        while lo < hi:
            mid = (lo + hi) // 2
            row = await self._one(probe, (mid,))
            if row is None:
                hi = mid
            elif row[1] >= ms:
                hi = min(mid, row[0])
            else:
                lo = row[0] + 1
        return int(lo)

    async def post(self, post_id: int) -> Row | None:
        return await self._one(f"SELECT {self.post_columns} FROM posts p WHERE id = ?", (post_id,))

    async def post_exists(self, post_id: int) -> bool:
        return await self._one("SELECT 1 FROM posts WHERE id = ?", (post_id,)) is not None

    async def bans(self) -> list[Row]:
        """Every ban and mute (moderation.py keeps them in memory), expired ones included."""
        rows = await self._fetch(f"SELECT {BAN_COLUMNS} FROM bans ORDER BY ts")
        return [tuple(r) for r in rows]

    async def posts(self, limit: int = 100) -> list[Row]:
        """Posts, newest first, each with its comment count."""
        rows = await self._fetch(
            f"SELECT {self.post_columns} FROM posts p ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [tuple(r) for r in rows]

    async def changes(
        self, table: str, scope: str | int, after: int, up_to: int, *, since_ms: int = 0
    ) -> tuple[list[Row], bool]:
        """The items of a room (`table="messages"`) or post changed (edited, deleted) by
        changes after `after` up to `up_to`, and no earlier than `since_ms`: each item once,
        in its current state, its row ending with its newest change's id, in that order; and
        whether there are more (the next page: after the last row's change)."""
        columns, _ = _TABLES[table]
        rows = await self._fetch(
            f"SELECT {columns}, change FROM {table} JOIN (SELECT item_id, max(id) AS change "
            "FROM changes WHERE kind = ? AND scope = ? AND id > ? AND id <= ? AND ts >= ? "
            "GROUP BY item_id ORDER BY change LIMIT ?) ch "
            f"ON ch.item_id = {table}.id ORDER BY change",
            (CHANGE_KIND[table], str(scope), after, up_to, since_ms, CHANGES_PAGE + 1),
        )
        return [tuple(r) for r in rows[:CHANGES_PAGE]], len(rows) > CHANGES_PAGE

    async def search(
        self, terms: list[str], room: str | None, post_id: int | None, offset: int, limit: int
    ) -> list[Row]:
        """Messages (and comments) whose text has every one of `terms`, best match first
        among the newest SEARCH_WINDOW matches of each table,
        deleted ones never: rows (kind "m" or "c", id, room or post id, user, ts, text),
        from `offset`, at most `limit`.
        `room` searches that room's messages only, `post_id` that post's comments only."""
        raise NotImplementedError

    async def sent_at(self, table: str, item_id: int) -> int | None:
        """When item `item_id` was stored (Unix ms), None if there is none."""
        row = await self._one(f"SELECT ts FROM {table} WHERE id = ?", (item_id,))
        return None if row is None else int(row[0])

    async def last_change(self, table: str, scope: str | int) -> int:
        """The newest edit or deletion of an item of a room (`table="messages"`) or post (0:
        none)."""
        row = await self._one(
            "SELECT coalesce(max(id), 0) FROM changes WHERE kind = ? AND scope = ?",
            (CHANGE_KIND[table], str(scope)),
        )
        return 0 if row is None else int(row[0])

    async def counts(self) -> dict[str, int]:
        # max(id) is O(log n) where count(*) scans; ids are never reused or deleted here.
        row = await self._one(
            "SELECT (SELECT coalesce(max(id), 0) FROM messages), "
            "(SELECT coalesce(max(id), 0) FROM comments), (SELECT count(*) FROM posts), "
            "(SELECT coalesce(max(id), 0) FROM changes)"
        )
        assert row is not None
        return {
            "messages": int(row[0]),
            "comments": int(row[1]),
            "posts": int(row[2]),
            "changes": int(row[3]),
        }

    async def check(self) -> None:
        """Raise if the database cannot be read or the writer is gone."""
        await self._fetch("SELECT count(*) FROM posts")
        if not self._writer_alive():
            raise StoreError("the writer is not running")


# The newest stamp already stored: a batch is stamped no earlier (read under the write lock,

LAST_TS_SQL: Final = (
    "SELECT max(ts) FROM (SELECT (SELECT ts FROM messages ORDER BY id DESC LIMIT 1) AS ts "
    "UNION ALL SELECT (SELECT ts FROM comments ORDER BY id DESC LIMIT 1)) AS last"
)


def decide_change(
    write: Write, item: Row | None, table: str, deleting: bool, now: int
) -> Row | EditRefused:
    """Whether `write` (an edit or deletion) may change `item` (its row and author sub, or
    None), decided in the write transaction: the item's row as it will be, or the refusal.
    Authors change their own items within the window; moderators anything, at any time."""
    edit: Edit = write.extra
    what = f"{'message' if table == 'messages' else 'comment'} {edit.item_id}"
    if item is None or (write.scope is not None and item[1] != write.scope):
        where = ""
        if write.scope is not None:
            where = (
                f" in room {write.scope!r}" if table == "messages" else f" on post {write.scope}"
            )
        return EditRefused(f"{what} does not exist{where}", ErrorCode.NOT_FOUND)
    if item[7] is not None:
        return EditRefused(f"{what} was deleted", ErrorCode.NOT_FOUND)
    if not edit.moderator:
        if table == "messages" and edit.silenced and item[1] in edit.silenced:
            code = edit.silenced[item[1]]
            kind = "banned from" if code == ErrorCode.BANNED else "muted in"
            return EditRefused(f"you are {kind} room {item[1]!r}: {what} stays as it is", code)
        if item[8] is None or item[8] != write.sub:
            return EditRefused(
                f"{what} is not yours: only its author (or a moderator) may "
                f"{'delete' if deleting else 'edit'} it",
                ErrorCode.NOT_AUTHOR,
            )
        if now - item[4] > edit.window_ms:
            return EditRefused(
                f"{what} is older than the edit window ({edit.window_ms // 1000} s): "
                "only a moderator may change it now",
                ErrorCode.EDIT_WINDOW_CLOSED,
            )
    if deleting:
        return (*item[:3], "", item[4], item[5], item[6], now)
    return (*item[:3], write.text, item[4], item[5], now, None)


def log_schema(where: str, version: int, newest: int) -> None:
    """The one startup line about what opening the database did to its schema: a new
    database created at `newest`, an older one migrated from `version`; nothing when it
    was at `newest` already."""
    if version == 0:
        log.info("database %s created (schema version %d)", where, newest)
    elif version < newest:
        log.info("database %s migrated from schema version %d to %d", where, version, newest)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
