"""Who is in which room, on this node and across the cluster. Pure state, no I/O.

Presence is by user name: a name with two tabs open is one user with two sessions. Each node
counts its own connections exactly; other nodes' counts arrive through the broker, as deltas
when they change and as a full snapshot with every heartbeat, so a node that started late or
missed a message converges within one heartbeat. A node that stops sending heartbeats is
forgotten after `ttl` seconds, and its users leave (docs/SCALING.md).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from typing import Final

# A node's view of one room: (connections, {user: sessions})
RoomView = tuple[int, dict[str, int]]
Snapshot = dict[str, RoomView]
Departure = tuple[str, str, int, int]  # room key, user, sessions left, members left

USERS_LISTED: Final = 100


class Presence:
    def __init__(self) -> None:
        self.local: dict[str, Counter[str]] = {}
        self.local_members: Counter[str] = Counter()
        self.remote: dict[str, Snapshot] = {}  # node -> its rooms
        self.heard: dict[str, float] = {}  # node -> when we last heard from it
        self.remote_connections: dict[str, int] = {}  # node -> its open connections
        # users(key) as last built, with its names as a set: every ROOM_JOINED carries the
        # list, and rebuilding it per join was ~5 % of the loop's time in a 10,000-client
        # storm (issue 14). Dropped when the list may have changed (see `join`, `leave`).
        self._listed: dict[str, tuple[list[str], frozenset[str]]] = {}

    # -- this node -------------------------------------------------------------------------

    def join(self, key: str, user: str) -> tuple[int, int]:
        """A local connection joined `key` as `user`: (user's sessions, room members), all
        nodes."""
        room = self.local.get(key)
        if room is None:
            room = self.local[key] = Counter()  # not setdefault: a Counter per join
        sessions = room[user]
        room[user] = sessions + 1
        if not sessions and len(room) <= USERS_LISTED:
            # A new name among this node's first 100: the list changed. Past them it did
            # not (this node's names come first), which is every join of a big room.
            self._listed.pop(key, None)
        self.local_members[key] += 1
        return self.sessions(key, user), self.members(key)

    def leave(self, key: str, user: str) -> tuple[int, int]:
        room = self.local.get(key)
        if room is not None and room[user] > 0:
            room[user] -= 1
            if room[user] <= 0:
                del room[user]
                listed = self._listed.get(key)
                if listed is not None and user in listed[1]:
                    del self._listed[key]  # a listed name left (a name past them: no change)
            if not room:
                del self.local[key]
                self._listed.pop(key, None)
        if self.local_members[key] > 0:
            self.local_members[key] -= 1
            if not self.local_members[key]:
                del self.local_members[key]
        return self.sessions(key, user), self.members(key)

    def local_view(self, key: str) -> RoomView:
        return self.local_members.get(key, 0), dict(self.local.get(key, {}))

    def snapshot(self) -> Snapshot:
        return {key: self.local_view(key) for key in self.local_members}

    # -- the cluster -----------------------------------------------------------------------

    def apply(
        self, node: str, key: str, view: RoomView, now: float, connections: int | None = None
    ) -> None:
        """Another node's room changed (and, with it, maybe its total connections)."""
        self.heard[node] = now
        if connections is not None:
            self.remote_connections[node] = connections
        self._listed.pop(key, None)
        rooms = self.remote.setdefault(node, {})
        if view[0] or view[1]:
            rooms[key] = view
        else:
            rooms.pop(key, None)

    def apply_snapshot(self, node: str, snapshot: Snapshot, now: float) -> None:
        """A node's heartbeat: its rooms, and under the key "" its total connections."""
        self.heard[node] = now
        self.remote_connections[node] = snapshot.get("", (0, {}))[0]
        self._listed.clear()  # every few seconds, per node: rebuilt on the next join
        self.remote[node] = {k: v for k, v in snapshot.items() if k and (v[0] or v[1])}

    def expire(self, now: float, ttl: float) -> list[Departure]:
        """Forget nodes silent for `ttl` seconds; their users leave."""
        departures: list[Departure] = []
        for node in [n for n, t in self.heard.items() if now - t > ttl]:
            del self.heard[node]
            self.remote_connections.pop(node, None)
            self._listed.clear()
            rooms = self.remote.pop(node, {})
            for key, (_, users) in rooms.items():
                for user in users:
                    departures.append((key, user, self.sessions(key, user), self.members(key)))
        return departures

    # -- totals ----------------------------------------------------------------------------

    def sessions(self, key: str, user: str) -> int:
        room = self.local.get(key)
        total = room.get(user, 0) if room is not None else 0
        for rooms in self.remote.values():
            view = rooms.get(key)
            if view is not None:
                total += view[1].get(user, 0)
        return total

    def members(self, key: str) -> int:
        total = self.local_members.get(key, 0)
        for rooms in self.remote.values():
            view = rooms.get(key)
            if view is not None:
                total += view[0]
        return total

    def page(self, key: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        """Up to `limit` distinct names of the room after `after`, in name order, and the
        `after` of the next page (None: no more). One pass over the room's names, keeping
        the `limit` smallest: O(n log limit) for a room of n names, on request only."""
        names: set[str] = set(self.local.get(key, ()))
        for rooms in self.remote.values():
            view = rooms.get(key)
            if view is not None:
                names.update(view[1])
        if after is not None:
            names = {name for name in names if name > after}
        page = heapq.nsmallest(limit + 1, names)
        if len(page) > limit:
            return page[:limit], page[limit - 1]
        return page, None

    def users(self, key: str) -> list[str]:
        """Distinct names in the room, this node's first (in join order), at most 100.
        The same list until it changes: callers must not modify it."""
        listed = self._listed.get(key)
        if listed is not None:
            return listed[0]
        names = self._users(key)
        if names:
            self._listed[key] = (names, frozenset(names))
        return names

    def _users(self, key: str) -> list[str]:
        # Never a copy of the whole room: a join into a room of n members would cost O(n),
        # and a join storm O(n²) (issue 14).
        names = dict.fromkeys(itertools.islice(self.local.get(key, ()), USERS_LISTED))
        for rooms in self.remote.values():
            view = rooms.get(key)
            if view is None:
                continue
            for name in view[1]:
                if len(names) >= USERS_LISTED:
                    return list(names)
                names[name] = None
        return list(names)
