"""Who is in which room, and what the members hear of it: joins and leaves of chat rooms and
of posts' live viewers, presence (coalesced per room per tick; clustered, from the other
nodes' heartbeats too), TYPING and MEMBERS.

Room keys in the hub: `r:<room>` for chat rooms, `p:<post id>` for a post's live viewers.
Refusals are raised as ProtocolError; the service answers them (service.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from fastchat import events
from fastchat._hub import Hub, Member
from fastchat.broker import Broker
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import (
    ErrorEvent,
    GetMembers,
    LeavePost,
    LeaveRoom,
    MembersPage,
    PostJoined,
    PostLeft,
    PresenceChange,
    PresenceEvent,
    RoomJoined,
    RoomLeft,
    TypingEvent,
    TypingStoppedEvent,
    UserJoined,
    UserLeft,
)
from fastchat.presence import Presence, RoomView, Snapshot
from fastchat.protocol import Limits, ProtocolError, Session, post_id_of

encode: Final = events.encode
# A room over Limits.presence_list_max members hears of presence at most this often. (Tried:
# in big rooms, at most 4,000 count frames a second, 2.5 s apart at 10,000 members: the
# 10,000-client storm was no faster within this machine's noise, and RSS after all left
# rose above RSS connected in 2 of 3 runs; bench/RESULTS.md.)
PRESENCE_INTERVAL: Final = 0.5
# Clustered: how often each node sends its whole presence; a node silent for three of
# these is taken for dead and its users leave.
HEARTBEAT_SECONDS: Final = 2.0
# A member's TYPING is relayed at most once per this many seconds (never stored).
TYPING_INTERVAL: Final = 1.0


def not_joined(room: str) -> ProtocolError:
    return ProtocolError(ErrorCode.NOT_JOINED, f"not in room {room!r}")


class Rooms:
    """Memberships and presence; one per process, owned by the service."""

    def __init__(self, hub: Hub, limits: Limits, broker: Broker) -> None:
        self.hub = hub
        self.limits = limits
        self.broker = broker
        self.clustered = broker.clustered
        self.joins = 0
        # Who is in which chat room, here and (clustered) on the other nodes.
        self.presence = Presence()
        # Presence changes waiting for the end of the tick, and when big rooms last heard.
        self._pending: dict[str, _PendingPresence] = {}
        self._sent: dict[str, float] = {}
        self._loop = asyncio.get_running_loop()

    def check_budget(self, member: Member, key: str) -> None:
        if key not in member.rooms and len(member.rooms) >= self.limits.max_rooms:
            raise ProtocolError(
                ErrorCode.TOO_MANY_ROOMS,
                f"a connection may be in at most {self.limits.max_rooms} rooms and posts; "
                "leave one first",
            )

    # -- chat rooms -------------------------------------------------------------------------

    def join(self, member: Member, room: str, user: str, replayed: int, last_change: int) -> None:
        """`member` joins `room` as `user` (again, maybe under another name), once its
        replay, if any, has caught up; answered with ROOM_JOINED, which carries the newest
        edit or deletion accounted for (`last_change`)."""
        key = "r:" + room
        self.joins += 1
        session: Session = member.state
        previous = session.names.get(key)
        if key not in member.rooms or previous != user:
            if previous is not None and key in member.rooms:  # rejoined under another name
                self.left(key, previous, member)
            self.hub.join(member, key)
            self.presence.join(key, user)
            self._announce(key, user, +1, member)
        session.joined(key, user)
        reply = RoomJoined(
            room=room,
            user=user,
            members=self.presence.members(key),
            users=self.presence.users(key),
            replayed=replayed,
            last_change=last_change,
        )
        self.hub.send(member, encode(reply))

    def leave(self, member: Member, ev: LeaveRoom) -> None:
        room = ev.room
        key = "r:" + room
        if key not in member.rooms:
            raise not_joined(room)
        self.hub.leave(member, key)
        self.left(key, member.state.left(key))
        self.hub.send(member, encode(RoomLeft(room=room, members=self.presence.members(key))))

    def kick(self, member: Member, room: str, refusal: FastchatError) -> None:
        """Take `member` out of `room` ("*": every chat room it is in), by a moderator's
        ban: it is told with an ERROR carrying `refusal`, then ROOM_LEFT for each room."""
        keys = [k for k in member.rooms if k[0] == "r"] if room == "*" else ["r:" + room]
        for key in keys:
            if key not in member.rooms:
                continue
            self.hub.leave(member, key)
            self.left(key, member.state.left(key))
            self.hub.send(member, encode(ErrorEvent(code=refusal.code, message=refusal.message)))
            self.hub.send(
                member, encode(RoomLeft(room=key[2:], members=self.presence.members(key)))
            )

    def left(self, key: str, user: str, exclude: Member | None = None) -> None:
        """`user` has left chat room `key` (a LEAVE_ROOM, a rejoin under another name, a
        closed connection): presence is told."""
        self.presence.leave(key, user)
        self._announce(key, user, -1, exclude)

    def members(self, member: Member, ev: GetMembers) -> None:
        """A page of a room's names, for its members only: in a room over PRESENCE_LIST_MAX
        members, presence events carry counts alone, and this is how a client lists who is
        there (docs/PROTOCOL.md)."""
        key = "r:" + ev.room
        if key not in member.rooms:
            raise not_joined(ev.room)
        users, after = self.presence.page(key, ev.after, ev.limit)
        page = MembersPage(
            room=ev.room,
            members=self.presence.members(key),
            users=users,
            next=after,
            request_id=ev.request_id,
        )
        self.hub.send(member, encode(page))

    def typing_stopped(self, member: Member, room: str, user: str) -> None:
        key = "r:" + room
        if key not in member.rooms:
            raise not_joined(room)
        if member.state.stopped_typing(key):
            self.ephemeral(key, encode(TypingStoppedEvent(room=room, user=user)), member)
        # else nothing was announced: nothing to take back

    def typing(self, member: Member, room: str, user: str) -> None:
        key = "r:" + room
        if key not in member.rooms:
            raise not_joined(room)
        if member.state.may_type(key, time.monotonic(), TYPING_INTERVAL):
            self.ephemeral(key, encode(TypingEvent(room=room, user=user)), member)
        # else throttled: silently, typing is a hint

    # -- posts' live viewers ----------------------------------------------------------------

    def join_post(
        self, member: Member, post_id: int, user: str, replayed: int, last_change: int
    ) -> None:
        key = f"p:{post_id}"
        self.joins += 1
        self.hub.join(member, key)
        member.state.joined(key, user)
        reply = PostJoined(
            post_id=post_id,
            viewers=self.hub.count(key),
            replayed=replayed,
            last_change=last_change,
        )
        self.hub.send(member, encode(reply))

    def leave_post(self, member: Member, ev: LeavePost) -> None:
        post_id = post_id_of(ev.post_id)
        key = f"p:{post_id}"
        if key not in member.rooms:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"not viewing post {post_id}")
        self.hub.leave(member, key)
        member.state.left(key)
        self.hub.send(member, encode(PostLeft(post_id=post_id, viewers=self.hub.count(key))))

    # -- presence to the members: coalesced -------------------------------------------------

    def _announce(
        self, key: str, user: str, delta: int, exclude: Member | None = None, local: bool = True
    ) -> None:
        """`user`'s sessions in room `key` changed: tell the room, coalesced. Each join sent a
        USER_JOINED to every member, so n clients joining cost n*n/2 frames (50 million for
        10,000: 18.7 s to join them all, issue 14) and a mass disconnect queued as many
        USER_LEFTs to members on their way out. Now a room's changes wait for the end of
        the loop tick and go out as one event: the classic USER_JOINED / USER_LEFT when
        there was one, a PRESENCE with every change when more; a room over
        PRESENCE_LIST_MAX members gets a PRESENCE with its count alone, at most every
        PRESENCE_INTERVAL. `local`: the change is this node's (the other nodes are told,
        once per room per flush).
        `delta`: +1 a session joined, -1 one left."""
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _PendingPresence()
            delay = 0.0
            members = self.presence.members(key)
            if members > self.limits.presence_list_max:
                last = self._sent.get(key)
                if last is not None:
                    delay = max(0.0, last + PRESENCE_INTERVAL - time.monotonic())
            if delay:
                self._loop.call_later(delay, self._flush, key)
            else:  # this tick, after the events being handled now: no timer's extra turn
                self._loop.call_soon(self._flush, key)
        pending.users[user] = pending.users.get(user, 0) + delta
        pending.exclude = exclude if len(pending.users) == 1 else None
        pending.local = pending.local or local

    def _flush(self, key: str) -> None:
        pending = self._pending.pop(key)
        members = self.presence.members(key)
        if self.hub.count(key):  # nobody here to tell (all left): no event is even built
            event = self._presence_event(key, members, pending)
            if event is not None:
                self.hub.publish(key, encode(event), pending.exclude)
        if pending.local and self.clustered:
            self.broker.presence(key, self.presence.local_view(key), self.connections())
        if not members:
            self._sent.pop(key, None)

    def _presence_event(self, key: str, members: int, pending: _PendingPresence) -> Any:
        room = key[2:]
        if members > self.limits.presence_list_max:
            self._sent[key] = time.monotonic()
            return PresenceEvent(room=room, members=members)
        changed = [(u, d) for u, d in pending.users.items() if d]  # joined-and-left: none
        if len(changed) == 1:
            user, delta = changed[0]
            kind = UserJoined if delta > 0 else UserLeft
            return kind(
                room=room, user=user, members=members, sessions=self.presence.sessions(key, user)
            )
        if changed:
            changes = [PresenceChange(u, self.presence.sessions(key, u)) for u, _ in changed]
            return PresenceEvent(room=room, members=members, changes=changes)
        return None

    def ephemeral(self, key: str, payload: bytes, exclude: Member | None = None) -> None:
        """Presence and typing: to this node's members now, to the other nodes' by relay."""
        self.hub.publish(key, payload, exclude)
        if self.clustered:
            self.broker.relay(key, payload)

    # -- presence on the other nodes (clustered) -------------------------------------------

    def connections(self) -> int:
        return int(self.hub.fast_members + self.hub.sink_members)

    def on_presence(self, node: str, key: str, view: RoomView, connections: int) -> None:
        """Another node's presence in room `key` changed: apply it, tell our members."""
        before = self.presence.remote.get(node, {}).get(key, (0, {}))[1]
        self.presence.apply(node, key, view, time.monotonic(), connections)
        if not self.hub.count(key):
            return
        after = view[1]
        for user in after.keys() | before.keys():
            delta = after.get(user, 0) - before.get(user, 0)
            if delta:
                self._announce(key, user, delta, local=False)

    def on_snapshot(self, node: str, snapshot: Snapshot) -> None:
        self.presence.apply_snapshot(node, snapshot, time.monotonic())

    def on_relay(self, key: str, payload: bytes) -> None:
        """Another node's ephemeral event (typing) for room `key`."""
        self.hub.publish(key, payload)

    async def heartbeat(self, period: float = HEARTBEAT_SECONDS) -> None:
        """Clustered: send our presence every `period`; forget nodes silent for 3 periods,
        and tell our members their users left."""
        while True:
            snapshot = self.presence.snapshot()
            snapshot[""] = (self.connections(), {})
            self.broker.snapshot(snapshot)
            for key, user, _sessions, _members in self.presence.expire(
                time.monotonic(), 3 * period
            ):
                self._announce(key, user, -1, local=False)
            await asyncio.sleep(period)

    def cluster_stats(self) -> dict[str, int]:
        """Nodes alive and connections on all of them (from the last heartbeats)."""
        return {
            "nodes": 1 + len(self.presence.heard),
            "connections": self.connections() + sum(self.presence.remote_connections.values()),
        }


class _PendingPresence:
    """One room's presence changes of this tick: the users whose sessions changed (their
    counts are read at the flush), the joiner who must not hear of its own join (when
    there was one change), and whether any change was this node's."""

    __slots__ = ("exclude", "local", "users")

    def __init__(self) -> None:
        self.users: dict[str, int] = {}  # user -> sessions joined minus left, this tick
        self.exclude: Member | None = None
        self.local = False
