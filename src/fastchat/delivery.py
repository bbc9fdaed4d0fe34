"""Delivery: committed rows to the hub, and replays of what a client missed.

Database first: a message or comment reaches the hub only in `on_committed`, which the store
calls on the loop after the transaction has committed; the sender's copy of the broadcast is
its acknowledgement. Single process: the committed rows go straight to the hub. Clustered
(a broker relays between nodes): every node, the committing one included, reads a room's new
rows from the shared database in id order (`_catch_up`), so every member on every node sees
the same order, each message once (docs/SCALING.md).

Room keys in the hub: `r:<room>` for chat rooms, `p:<post id>` for a post's live viewers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec

from fastchat import events
from fastchat._hub import Hub, Member
from fastchat._lane import Publisher
from fastchat.broker import Broker
from fastchat.errors import CLOSE_CODE, ErrorCode
from fastchat.events import Comment, CommentEvent, Message, MessageEvent, Post
from fastchat.protocol import NOTHING_REFUSED, Refused
from fastchat.store import (
    CHANGE_OPS,
    OP_COMMENT,
    OP_MESSAGE,
    OP_POST,
    Result,
    Row,
    Store,
    StoreError,
    Write,
)
from fastchat.timeparse import format_ms

T = TypeVar("T")
log = logging.getLogger("fastchat.delivery")
encode: Final = events.encode
# A replay sends this many stored items per loop iteration; a client that reads none of it
# for REPLAY_STALL_SECONDS is dropped (it can resume again).
REPLAY_PAGE: Final = 500
REPLAY_STALL_SECONDS: Final = 30.0
# Clustered, a replay reads every change committed (the local mark lags other nodes').
_MAX_CHANGE: Final = 2**63 - 1
# A replay waiting for its client to read wakes when the socket takes writes again
# (`on_writable`, from picows' resume_writing); at the latest after this many seconds, for
# members whose transport does not tell (the hub's sinks).
WRITABLE_RECHECK: Final = 0.25


# Relayed edits and deletions go to the other nodes under this prefix and their room's key.
CHANGE_RELAY: Final = "!change:"
# A room's (post's) newest events kept as sent, for the resumes that missed no more than
# these (`Delivery.replay_recent`), in this many rooms at most (the most recently filled).
RECENT_ROWS: Final = 64
RECENT_SCOPES: Final = 1024


class Recent:
    """A room's newest events as they were broadcast: (id, payload), oldest first, and
    `floor`: every message of the room with a greater id (up to the published mark) is
    here. Appended as messages are published; dropped when one of the room's items
    changes (an edit or deletion), so each payload is still the item as it is stored."""

    __slots__ = ("changed", "events", "floor")

    def __init__(self, events: list[tuple[int, bytes]], floor: int, changed: int) -> None:
        self.events: deque[tuple[int, bytes]] = deque(events, maxlen=RECENT_ROWS)
        self.floor = floor
        self.changed = changed  # the room's newest change when these were read

    def add(self, item_id: int, payload: bytes) -> None:
        events = self.events
        if len(events) == RECENT_ROWS:
            self.floor = events[0][0]  # the oldest leaves: ids up to it are no longer here
        events.append((item_id, payload))


class _ChangeId(msgspec.Struct):
    change: int


def _from_row(cls: Callable[..., T]) -> Callable[[Row], T]:
    """Build `cls` from a stored row. Every table's row is (id, 3 fields, ts, 1 field) in
    the Struct's field order (store.*_COLUMNS), the ts as Unix ms turned into RFC 3339;
    a message's or comment's then has its edit and deletion times (None: never)."""

    def build(row: Row) -> T:
        return cls(row[0], row[1], row[2], row[3], format_ms(row[4]), row[5])

    return build


def _item_from_row(cls: Callable[..., T]) -> Callable[[Row], T]:
    """`_from_row` for messages and comments: with `edited_at` and `deleted_at`."""

    def build(row: Row) -> T:
        edited, deleted = row[6], row[7]
        return cls(
            row[0],
            row[1],
            row[2],
            row[3],
            format_ms(row[4]),
            row[5],
            None if edited is None else format_ms(edited),
            None if deleted is None else format_ms(deleted),
        )

    return build


def _change_from_row(edited: Callable[..., T], deleted: Callable[..., T]) -> Callable[[Row], T]:
    """A changed item's event: its row (store.decide_change, store.changes) as an edit or a
    deletion, with the change's id (row[8])."""
    as_edit, as_deletion = _item_from_row(edited), _item_from_row(deleted)

    def build(row: Row) -> T:
        event = (as_edit if row[7] is None else as_deletion)(row)
        event.change = row[8]  # type: ignore[attr-defined]
        return event

    return build


message_of = _item_from_row(Message)
comment_of = _item_from_row(Comment)
message_event_of = _item_from_row(MessageEvent)
comment_event_of = _item_from_row(CommentEvent)
message_change_of = _change_from_row(events.MessageEdited, events.MessageDeleted)
comment_change_of = _change_from_row(events.CommentEdited, events.CommentDeleted)
post_of = _from_row(Post)


class Delivery:
    """Committed rows to the hub, in id order per room; replays."""

    def __init__(
        self,
        hub: Hub,
        store: Store,
        broker: Broker,
        on_error: Callable[[Member, str, str, Refused], None],
    ) -> None:
        self.hub = hub
        self.store = store
        self.broker = broker
        self.clustered = broker.clustered
        self._on_error = on_error
        # Single process: the highest ids already handed to the hub (messages: the
        # publisher's `published`). Ids rise in commit order and commits are handed over in
        # order, so "stored with id <= this" == "already broadcast": a replay bounded by it,
        # followed by a join in the same loop callback, has no gap and no duplicate.
        self._published_comment_id = 0
        # The same for edits and deletions (the `changes` table's ids).
        self._published_change_id = 0
        # Clustered: room key -> last id handed to the hub (the same role, per room).
        self._delivered: dict[str, int] = {}
        self._start_marks = {"r": 0, "p": 0}
        # Clustered: room key -> highest id known committed; one catch-up task per room
        # reads up to it (reads are awaited, so two must never run for one room).
        self._wanted: dict[str, int] = {}
        self._catching: dict[str, asyncio.Task[None]] = {}
        # Room key -> how many times its stored rows changed (here, or on another node as
        # its hints tell), bumped before anything committed is acknowledged: a copy of a
        # room's page read at version v is current while the version is still v.
        self.versions: dict[str, int] = {}
        # Single process: room key -> its newest events (`replay_recent`), for the rooms
        # that were resumed into.
        self._recent: dict[str, Recent] = {}
        # Resumes done (joined), by where their replay came from.
        self.resumes = {"memory": 0, "database": 0}
        self._keeping: dict[str, asyncio.Task[None]] = {}  # reads of rooms' newest events
        # Replays waiting for their member's socket to drain (see `replay`).
        self._writable: dict[Member, asyncio.Future[None]] = {}
        # Single process: the plain chat messages of a committed batch (nearly all of
        # them), published in C (_lane.pyx); on_committed does the rest.
        self._messages = Publisher(
            hub, self.versions, self._recent, encode, MessageEvent, format_ms, OP_MESSAGE
        )

    async def on_store_open(self) -> None:
        counts = await self.store.counts()
        self._messages.published = counts["messages"]
        self._published_comment_id = counts["comments"]
        self._published_change_id = counts["changes"]
        self._start_marks = {"r": counts["messages"], "p": counts["comments"]}

    def mark(self, key: str) -> int:
        """The highest id of room `key` already handed to the hub (or a lower bound of the
        ids not yet handed: everything up to it was broadcast)."""
        if self.clustered:
            return self._delivered.get(key, self._start_marks[key[0]])
        return self._messages.published if key[0] == "r" else self._published_comment_id

    def on_committed(self, results: list[Result]) -> None:
        """Called on the loop with each committed batch, in commit order."""
        hub = self.hub
        clustered = self.clustered
        versions = self.versions
        touched: dict[str, int] = {}  # clustered: room key -> highest id committed here
        publish = None if clustered else self._messages.run
        i, n = 0, len(results)
        while i < n:
            if publish is not None:
                i = publish(results, i)
                if i == n:
                    break
            write, row, duplicate = results[i]
            i += 1
            if isinstance(row, StoreError):
                self._fail(write, row)
                continue
            kind = write.op
            member = write.member
            if kind == OP_MESSAGE:
                # What the publisher leaves: clustered, from REST, a retry, ids gone back.
                payload = encode(
                    MessageEvent(row[0], row[1], row[2], row[3], format_ms(row[4]), row[5])
                )
                if duplicate:
                    self._ack_only(write, payload, row, message_of)
                    continue
                key = "r:" + row[1]
                versions[key] = versions.get(key, 0) + 1
                if clustered:
                    self._committed_here(key, row, payload, touched)
                else:
                    if row[0] > self._messages.published:
                        self._messages.published = row[0]
                    else:  # ids went back: an older copy restored into the live file
                        self._recent.clear()
                    hub.publish(key, payload)
                    recent = self._recent.get(key)
                    if recent is not None:
                        recent.add(row[0], payload)
                if member is not None:
                    if key not in member.rooms:  # left since: the broadcast missed it
                        hub.send(member, payload)
                elif write.future is not None:
                    write.future.set_result(message_of(row))
            elif kind == OP_COMMENT:
                payload = encode(comment_event_of(row))
                if duplicate:
                    self._ack_only(write, payload, row, comment_of)
                    continue
                key = f"p:{row[1]}"
                versions[key] = versions.get(key, 0) + 1
                if clustered:
                    self._committed_here(key, row, payload, touched)
                else:
                    if row[0] > self._published_comment_id:
                        self._published_comment_id = row[0]
                    else:  # ids went back: an older copy restored into the live file
                        self._recent.clear()
                    hub.publish(key, payload)
                    recent = self._recent.get(key)
                    if recent is not None:
                        recent.add(row[0], payload)
                if member is not None:
                    if key not in member.rooms:
                        hub.send(member, payload)  # the sender's acknowledgement
                elif write.future is not None:
                    write.future.set_result(comment_of(row))
            elif kind in CHANGE_OPS:
                self._changed(write, row)
            elif write.future is not None:
                # A post, or a ban added or lifted (its row; None: there was none to lift).
                write.future.set_result(post_of(row) if kind == OP_POST else row)
        for key, max_id in touched.items():
            self._catch_up(key, max_id)
            self.broker.hint(key, max_id)

    def _changed(self, write: Write, row: Row) -> None:
        """An edit or deletion committed: every member of the room (every node's) hears it,
        the asker too (as its answer, even if it is not in the room)."""
        messages = CHANGE_OPS[write.op][0] == "messages"
        key = ("r:" if messages else "p:") + str(row[1])
        self.versions[key] = self.versions.get(key, 0) + 1
        self._recent.pop(key, None)  # its payloads may show the item as it was
        if row[8] > self._published_change_id:
            self._published_change_id = row[8]
        payload = encode((message_change_of if messages else comment_change_of)(row))
        self.hub.publish(key, payload)
        if self.clustered:
            self.broker.relay(CHANGE_RELAY + key, payload)
        member = write.member
        if member is not None:
            if key not in member.rooms:
                self.hub.send(member, payload)
        elif write.future is not None:
            write.future.set_result((message_of if messages else comment_of)(row))

    def on_relayed_change(self, key: str, payload: bytes) -> None:
        """Clustered: another node's edit or deletion in room `key` (already committed)."""
        self.versions[key] = self.versions.get(key, 0) + 1
        change = msgspec.json.decode(payload, type=_ChangeId).change
        if change > self._published_change_id:
            self._published_change_id = change
        self.hub.publish(key, payload)

    def change_mark(self) -> int:
        """The newest edit or deletion handed to the hub here: every change up to it was
        published (single process: all of them; clustered: see `replay`)."""
        return self._published_change_id

    def _committed_here(self, key: str, row: Row, payload: bytes, touched: dict[str, int]) -> None:
        """Clustered: a row this node committed. The store gives the room's previous id
        (row[8], read under the write lock): when everything up to it has been handed out
        here, this row not yet, and no catch-up is reading the room, this row is the room's
        next one and goes out directly; otherwise the catch-up reads the room in id order
        (or already has). Either way the other nodes get a hint."""
        touched[key] = row[0]
        if key in self._catching or len(row) <= 8:
            return
        mark = self.mark(key)
        # Already out: another node's hint for a later row can arrive (Redis) before this
        # commit's own callback (the writer thread), and its catch-up reads this row too.
        if row[0] > mark and row[8] <= mark:
            self.hub.publish(key, payload)
            self._delivered[key] = row[0]

    def on_hint(self, key: str, max_id: int) -> None:
        """Another node committed rows of room `key` up to `max_id`."""
        self.versions[key] = self.versions.get(key, 0) + 1
        if self.hub.count(key) or key in self._delivered:
            self._catch_up(key, max_id)
        else:
            # Nobody here is in that room: nothing to deliver, only remember how far it is.
            self._delivered[key] = max(max_id, self._delivered.get(key, 0))

    def _catch_up(self, key: str, up_to: int) -> None:
        """Hand the hub every row of room `key` after the last one handed, up to `up_to`."""
        if up_to <= self.mark(key) or up_to <= self._wanted.get(key, 0):
            return
        self._wanted[key] = up_to
        if key not in self._catching:
            task = asyncio.get_running_loop().create_task(self._read_up(key))
            self._catching[key] = task

    async def _read_up(self, key: str) -> None:
        """The rows of room `key` up to `_wanted[key]`, read from the shared database in id
        order (every node, the same order), then published; until nothing more is wanted."""
        is_room = key[0] == "r"
        table = "messages" if is_room else "comments"
        scope: str | int = key[2:] if is_room else int(key[2:])
        event_of = message_event_of if is_room else comment_event_of
        try:
            while (up_to := self._wanted.get(key, 0)) > (after := self.mark(key)):
                page = await self.store.page(
                    table, scope, REPLAY_PAGE, after=after, before=up_to + 1
                )
                for row in page.rows:
                    self.hub.publish(key, encode(event_of(row)))
                # Every row of the room up to `up_to` is committed (the hint came after the
                # commit, and commits are serial), so past the last page the room is there.
                self._delivered[key] = page.rows[-1][0] if page.has_more else up_to
        except Exception:
            log.exception("catching up room %s failed; the next commit retries", key)
        finally:
            del self._catching[key]
            self._wanted.pop(key, None)

    def _ack_only(self, write: Write, payload: bytes, row: Row, record: Any) -> None:
        """A retried send that was already stored: answer the sender with the original."""
        if write.member is not None:
            self.hub.send(write.member, payload)
        elif write.future is not None and not write.future.done():
            write.future.set_result(record(row))

    def _fail(self, write: Write, error: StoreError) -> None:
        if write.member is not None:
            # Which send it was (its client_id), so that the sender retries that one.
            if write.op in (OP_MESSAGE, OP_COMMENT) and write.client_id is not None:
                about = Refused(client_id=write.client_id)
            elif write.op in CHANGE_OPS:
                about = Refused(id=write.extra.item_id)  # which edit or deletion
            else:
                about = NOTHING_REFUSED
            self._on_error(write.member, error.code, error.message, about)
        elif write.future is not None and not write.future.done():
            write.future.set_exception(error)

    @property
    def replays_waiting(self) -> int:
        """Replays paused until their client reads (a gauge for stats and metrics)."""
        return len(self._writable)

    def on_writable(self, member: Member) -> None:
        """`member`'s socket drained (or closed): a replay waiting on it goes on."""
        waiter = self._writable.pop(member, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _room_for(self, member: Member, backlog: int) -> bool:
        """Wait while `member` has more than `backlog` bytes queued; False if it closed, or
        was closed for reading nothing for REPLAY_STALL_SECONDS."""
        if member.backlog > backlog:
            # What the hub queued goes to the socket at the end of this tick; past it, a
            # backlog still over the bound is in a paused transport, which says when it
            # drains (resume_writing).
            await asyncio.sleep(0)
        since = time.monotonic()
        while member.backlog > backlog:
            if member.closed:
                return False
            left = REPLAY_STALL_SECONDS - (time.monotonic() - since)
            if left <= 0:
                self.hub.close(
                    member,
                    CLOSE_CODE[ErrorCode.SLOW_CONSUMER],
                    "slow consumer: not reading its replay",
                )
                return False
            await self._until_writable(member, min(left, WRITABLE_RECHECK))
        return not member.closed

    async def _until_writable(self, member: Member, timeout: float) -> None:
        waiter = self._writable.get(member)
        if waiter is None:
            waiter = self._writable[member] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            pass
        finally:
            if self._writable.get(member) is waiter:
                del self._writable[member]

    async def replay(
        self,
        member: Member,
        table: str,
        scope: str | int,
        after: int,
        finish: Callable[[int, int], None],
        backlog: int,
        last_change: int | None = None,
    ) -> None:
        """Replay what was stored after `after`, page by page, and the edits and deletions
        after `last_change` (without it: those since item `after` was sent), then join.

        Ids rise in commit order and commits reach the hub in order, so every id up to the
        published mark has been broadcast and every later one will be; the same holds for
        changes and their mark. Each page reads up to the mark as it is then; when the reads
        come back short and neither mark moved meanwhile, we are caught up, and
        `finish(replayed, last_change)` joins the room in that same loop callback: no gap,
        no duplicate. Between pages the loop serves others, and the replay waits while this
        client's queue is full.
        """
        sent = 0
        key = ("r:" if table == "messages" else "p:") + str(scope)
        encode_row = message_event_of if table == "messages" else comment_event_of
        since_ms = 0
        if last_change is None:
            sent_at = await self.store.sent_at(table, after) if after else None
            # Nothing to go by (a client that never saw the item): every change is older
            # than what it read, or reaches it in the replayed rows themselves.
            last_change, since_ms = (self.change_mark(), 0) if sent_at is None else (0, sent_at)
        while True:
            if not await self._room_for(member, backlog):
                return
            mark = self.mark(key)
            page = await self.store.page(table, scope, REPLAY_PAGE, after=after, before=mark + 1)
            if member.closed:
                return
            if not await self._send_rows(member, page.rows, encode_row, backlog):
                return
            sent += len(page.rows)
            if page.rows:
                after = page.rows[-1][0]
            if page.has_more:
                await asyncio.sleep(0)
                continue
            # The messages are there; now what changed.
            change_mark = self.change_mark()
            up_to = _MAX_CHANGE if self.clustered else change_mark
            rows, more = await self.store.changes(
                table, scope, last_change, up_to, since_ms=since_ms
            )
            if member.closed:
                return
            change_of = message_change_of if table == "messages" else comment_change_of
            if not await self._send_rows(member, rows, change_of, backlog):
                return
            sent += len(rows)
            if rows:
                last_change = rows[-1][8]
            if not more and self.mark(key) == mark and self.change_mark() == change_mark:
                # Caught up, in the same callback: no gap, no duplicate.
                finish(sent, max(last_change, change_mark))
                self.resumes["database"] += 1
                self._keep_later(key, table, scope)
                return
            if not more and not self.clustered:
                last_change = max(last_change, change_mark)  # read up to it, in this room
            # More was broadcast while the reads (or the client) were awaited: read that.
            after = max(after, mark)

    def replay_recent(
        self,
        member: Member,
        table: str,
        scope: str | int,
        after: int,
        finish: Callable[[int, int], None],
        backlog: int,
        last_change: int | None,
    ) -> bool:
        """`replay` from memory, in this callback, when it can be: single process, the room's
        newest events kept (`Recent`, filled by the last replay from the database) reach
        back to `after`, and no item of the room changed after `last_change`. Then the
        events after `after` are sent and the room joined, as `replay` would; False: use
        `replay`. A reconnect storm (every client of a big room back after a deploy, each
        having missed a few messages) reads the database once, not once a client."""
        if self.clustered or last_change is None:
            return False
        recent = self._recent.get(("r:" if table == "messages" else "p:") + str(scope))
        if recent is None or after < recent.floor or last_change < recent.changed:
            return False
        missed = [payload for item_id, payload in recent.events if item_id > after]
        if missed and member.backlog + sum(map(len, missed)) > backlog:
            return False  # `replay` sends them as the client reads
        for payload in missed:
            self.hub.send(member, payload)
        finish(len(missed), max(last_change, self._published_change_id))
        self.resumes["memory"] += 1
        return True

    def _keep_later(self, key: str, table: str, scope: str | int) -> None:
        """After a replay from the database (joined): read the room's newest events for the
        next resumes, in a task of its own. Not in the replay's: the connection's resume of
        the room is over, and another join of it must not wait for this read (or be taken
        for a second join while the first runs)."""
        if self.clustered or key in self._recent or key in self._keeping:
            return
        task = asyncio.get_running_loop().create_task(self._keep_recent(key, table, scope))
        self._keeping[key] = task
        task.add_done_callback(lambda _: self._keeping.pop(key, None))

    async def _keep_recent(self, key: str, table: str, scope: str | int) -> None:
        """The room's newest events, kept for the next resumes (`replay_recent`). Read up to
        the published marks, and kept only if nothing was published meanwhile (a database
        whose reads wait). A read that fails keeps nothing: the next resume reads again."""
        try:
            await self._read_recent(key, table, scope)
        except self.store.read_errors as exc:
            log.debug("newest events of %s not kept: %r", key, exc)

    async def _read_recent(self, key: str, table: str, scope: str | int) -> None:
        if key in self._recent:
            return
        mark, change_mark = self.mark(key), self._published_change_id
        page = await self.store.page(table, scope, RECENT_ROWS, before=mark + 1)
        changed = await self.store.last_change(table, scope)
        if self.mark(key) != mark or self._published_change_id != change_mark:
            return
        if key in self._recent:
            return
        if len(self._recent) >= RECENT_SCOPES:
            del self._recent[next(iter(self._recent))]  # the longest kept
        encode_row = message_event_of if table == "messages" else comment_event_of
        rows = page.rows
        self._recent[key] = Recent(
            [(row[0], encode(encode_row(row))) for row in rows],
            rows[0][0] - 1 if page.has_more else 0,
            changed,
        )

    async def _send_rows(
        self, member: Member, rows: list[Row], encode_row: Callable[[Row], Any], backlog: int
    ) -> bool:
        """Send `rows` as events, row by row against the limit: a page of large messages
        (500 of 4,000 characters: 2 MB) must not go over the hub's outbound limit at once.
        False if the member closed (or was closed) meanwhile."""
        for row in rows:
            if member.backlog > backlog and not await self._room_for(member, backlog):
                return False
            self.hub.send(member, encode(encode_row(row)))
        return True
