"""Stored messages and comments read back: history pages (REST and the HISTORY event) and the
replay of what a resuming client missed (JOIN_ROOM / JOIN_POST with `last_id`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastchat import events
from fastchat._hub import Hub, Member
from fastchat.delivery import Delivery, comment_of, message_of
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import GetHistory, HistoryPage
from fastchat.protocol import ProtocolError, Refused, Session, post_id_of, time_of
from fastchat.store import Store, StoreError

encode: Final = events.encode

# Runs an event's database work as a task, answering what it raises (Chat.spawn).
Spawn = Callable[[Member, Coroutine[Any, Any, None], Refused], None]


class NotFoundError(FastchatError):
    """A post that does not exist: `post_not_found`."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.POST_NOT_FOUND, message)


def unreadable(exc: BaseException) -> str:
    """A failed database operation, for the client: our own errors say it already."""
    if isinstance(exc, StoreError):
        return str(exc)
    return f"the database could not be read ({exc.__class__.__name__}: {exc})"


class History:
    """Pages and replays; one per process, owned by the service."""

    def __init__(
        self, hub: Hub, store: Store, delivery: Delivery, spawn: Spawn, replay_backlog: int
    ) -> None:
        self.hub = hub
        self.store = store
        self.delivery = delivery
        self._spawn = spawn
        self.replay_backlog = replay_backlog
        # A read that fails raises the store's own error or its driver's (APSW, psycopg).
        self.read_errors = store.read_errors

    async def page(
        self,
        *,
        room: str | None = None,
        post_id: int | None = None,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        since: str | int | float | None = None,
        until: str | int | float | None = None,
    ) -> HistoryPage:
        """A page of a room's messages or a post's comments (REST and the HISTORY event).
        Raises ProtocolError (bad time) or NotFoundError (no such post)."""
        since_ms, until_ms = time_of(since), time_of(until)
        if post_id is not None and not await self.store.post_exists(post_id):
            raise NotFoundError(f"post {post_id} does not exist")
        table, scope = ("comments", post_id) if post_id is not None else ("messages", room)
        assert scope is not None
        page = await self.store.page(
            table, scope, limit, before=before, after=after, since_ms=since_ms, until_ms=until_ms
        )
        if post_id is not None:
            return HistoryPage(
                has_more=page.has_more,
                next=page.next,
                post_id=post_id,
                comments=[comment_of(r) for r in page.rows],
            )
        return HistoryPage(
            has_more=page.has_more,
            next=page.next,
            room=room,
            messages=[message_of(r) for r in page.rows],
        )

    def request(self, member: Member, ev: GetHistory) -> None:
        """The HISTORY event: checked now (in order with other replies), read as a task."""
        if (ev.room is None) == (ev.post_id is None):
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, "HISTORY needs exactly one of `room`, `post_id`"
            )
        post_id = post_id_of(ev.post_id) if ev.post_id is not None else None
        for bound in (ev.since, ev.until):
            time_of(bound)
        self._spawn(
            member,
            self._answer(member, ev, post_id),
            Refused(request_id=ev.request_id, room=ev.room, post_id=post_id),
        )

    async def _answer(self, member: Member, ev: GetHistory, post_id: int | None) -> None:
        page = await self.page(  # NotFoundError is answered by the spawner
            room=ev.room,
            post_id=post_id,
            limit=ev.limit,
            before=ev.before,
            after=ev.after,
            since=ev.since,
            until=ev.until,
        )
        if ev.request_id is not None:
            page.request_id = ev.request_id
        if not member.closed:
            self.hub.send(member, encode(page))

    def resume(
        self,
        member: Member,
        key: str,
        table: str,
        scope: str | int,
        last_id: int,
        last_change: int | None,
        finish: Callable[[int, int], None],
    ) -> None:
        """Replay what `member` missed in `key` after `last_id` (and the edits and deletions
        after `last_change`), then `finish(replayed, last_change)` (the join itself). One
        replay per room per connection at a time: a second join while one
        runs is answered by the first."""
        session: Session = member.state
        if not session.resume_started(key):
            return
        if self.delivery.replay_recent(
            member, table, scope, last_id, finish, self.replay_backlog, last_change
        ):
            session.resume_ended(key)
            return
        what = f"room {scope!r}" if table == "messages" else f"post {scope}"

        async def resume() -> None:
            try:
                await self.delivery.replay(
                    member, table, scope, last_id, finish, self.replay_backlog, last_change
                )
            except self.read_errors as exc:
                # Not joined: `finish` (the join itself) runs only once the replay has caught
                # up, so a failed read leaves the connection's rooms as they were before this
                # join. What was replayed before the failure was real and in order; the
                # client sends the join again, with the last id it saw.
                raise StoreError(
                    f"cannot resume {what} after id {last_id}: {unreadable(exc)}; "
                    "not joined: send the join again"
                ) from exc
            finally:
                session.resume_ended(key)

        about = Refused(room=str(scope)) if table == "messages" else Refused(post_id=int(scope))
        self._spawn(member, resume(), about)
