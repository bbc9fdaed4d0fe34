"""The messages the SQLite store has not filed yet, kept in memory by room (and its
comments by post: the same, with `comment_posts` and `comment_clients`, schemas 10 and 11).

SQLite keeps each room's message ids in `message_rooms` and each client id's message in
`message_clients` (schemas 6 and 7): tables a commit does not write row by row: one row in
a room's part of a b-tree costs a 4 kB page in the WAL (checkpointed and synced later), and
with small rooms that is about a page a message. So the writer files a room's messages once
it has FILE_ROWS of them unfiled (one page for all of them), and any room whose oldest
unfiled message is more than TRAILING_MAX behind the newest; a quiet store files them all.

Until then they are here: each room's unfiled ids, in order, and their client ids (the
retries the writer must recognise). A page of a room takes the ids it needs from here, up to
`seen` (`candidates`), the filed ones from `message_rooms`, and scans only the rows above
`seen`: what this process's writer has not committed or looked at yet (other workers
sharing the file).

The invariant: every message with `upto` < id <= `seen` is in `message_rooms`, or here, or
both; every message with id <= `upto` is in `message_rooms`. The writer keeps it: a
transaction adds its rows here as it inserts them (`add`), above `seen`, where no reader
looks; after its COMMIT it takes the rooms it filed out and moves `seen` on (`committed`).
A transaction that fails leaves rows here that were never stored: the writer reads the tail
back from the database (`reset`) before its next one. Other workers' rows are read at each
transaction's start, under the write lock. Rows another worker filed may stay here too: they
are filed again (OR IGNORE) when their room is.

Threads: one writer at a time changes it (the loop, or the writer thread while the loop
waits for that batch); pages read it on the loop, with no lock. A reader reads `seen`
first, then a room's ids up to it (one GIL-held slice of an array): a room taken out after
its COMMIT is in `message_rooms` for that reader, and what it misses here is above `seen`.

`ClientKeys`, below: a filter of every client id ever stored, so that a new message's retry
check reads `message_clients` only when the id may be there.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any, Final

from fastchat._keys import add as _add
from fastchat._keys import holds as _holds

# A room's unfiled messages that get it filed: its ids go into one page of message_rooms
# (a page holds ~200), where filing every room at once after 4,096 messages put about 8.
FILE_ROWS: Final = 64
# How far (in ids) a room's oldest unfiled message may trail the newest before the room is
# filed however few it has: bounds this module's memory and the rows read back at start.
TRAILING_MAX: Final = 32768

ClientKey = tuple[Any, str, str]
# (id, room, user, client_id) of a message, as a commit adds it.
Row = tuple[int, Any, str, Any]


class Trailing:
    """The unfiled messages, by room (see the module's docstring)."""

    __slots__ = ("_added", "_full", "_open", "clients", "keys", "rooms", "seen", "upto")

    def __init__(self, keys: ClientKeys | None = None) -> None:
        # room -> its unfiled ids, ascending. Insertion order is the order of each room's
        # oldest unfiled id: a room enters with the newest id so far and leaves when filed.
        self.rooms: dict[Any, array[int]] = {}
        # room -> {(user, client_id): id}, of every unfiled message with a client id: a
        # room filed leaves with its client ids.
        self.clients: dict[Any, dict[tuple[str, str], int]] = {}
        self.seen = 0  # the newest id committed or looked at: up to it, filed or here
        self.upto = -1  # message_rooms_upto as last read or written; -1: never read
        self._full: set[Any] = set()  # rooms with FILE_ROWS unfiled
        self._open = False  # rows added by a transaction not committed yet
        self._added = 0  # ids here
        # Every client id added here goes into `keys` too (the filter of all stored ones).
        self.keys = keys if keys is not None else ClientKeys(8)

    def __len__(self) -> int:
        return len(self.rooms)

    def reset(self, upto: int, seen: int, rows: Iterable[Row]) -> None:
        """Start again from the database's tail: `rows`, in id order, are every message
        after `upto` up to `seen`."""
        fresh = Trailing(self.keys)
        fresh.add(rows)
        # Swapped in whole, `seen` last: a reader never sees a half-built map.
        self.rooms, self.clients, self._added = fresh.rooms, fresh.clients, fresh._added
        self._full, self._open = fresh._full, False
        self.upto = upto
        self.seen = seen

    def add(self, rows: Iterable[Row]) -> None:
        """Messages after `seen`, in id order: a transaction's own as it inserts them, or
        other workers' (then `seen` moves on to the newest of them: `caught_up`)."""
        rooms, clients = self.rooms, self.clients
        n = 0
        for row_id, room, user, client_id in rows:
            ids = rooms.get(room)
            if ids is None:
                rooms[room] = ids = array("q")
            ids.append(row_id)
            if len(ids) >= FILE_ROWS:
                self._full.add(room)
            n += 1
            if client_id is not None:
                of_room = clients.get(room)
                if of_room is None:
                    clients[room] = of_room = {}
                of_room[user, client_id] = row_id
                self.keys.add((room, user, client_id))
        self._added += n
        self._open = True

    def add_run(self, first: int, writes: Iterable[Any]) -> None:
        """`add` for a run of messages inserted with ids from `first` on, given as the
        store's Write objects (their scope, user and client_id): no tuple per row."""
        rooms, clients, full = self.rooms, self.clients, self._full
        row_id = first
        for write in writes:
            room = write.scope
            ids = rooms.get(room)
            if ids is None:
                rooms[room] = ids = array("q")
            ids.append(row_id)
            if len(ids) >= FILE_ROWS:
                full.add(room)
            if write.client_id is not None:
                of_room = clients.get(room)
                if of_room is None:
                    clients[room] = of_room = {}
                of_room[write.user, write.client_id] = row_id
                self.keys.add((room, write.user, write.client_id))
            row_id += 1
        self._added += row_id - first
        self._open = True

    def caught_up(self, rows: Iterable[Row], upto: int, seen: int) -> None:
        """Other workers' messages since `seen`, in id order, up to the new `seen`: those
        after `upto` are unfiled (added here); those up to it another worker has filed
        already, and only their client ids are kept (in `keys`: a retry of one must not
        be taken for a new message)."""
        keys = self.keys
        unfiled = []
        for row in rows:
            if row[0] > upto:
                unfiled.append(row)
            elif row[3] is not None:
                keys.add((row[1], row[2], row[3]))
        self.add(unfiled)
        self.seen = seen

    @property
    def dirty(self) -> bool:
        """Whether a transaction added rows here and never committed (read back the tail)."""
        return self._open

    def due(self, top: int, everything: bool) -> list[Any]:
        """The rooms the open transaction (newest id `top`) files, in key order: each with
        FILE_ROWS unfiled, each whose oldest is more than TRAILING_MAX behind, or,
        `everything`, all of them."""
        rooms = self.rooms
        if everything:
            return sorted(rooms)
        due = set(self._full)
        floor = top - TRAILING_MAX
        for room, ids in rooms.items():  # oldest first
            if ids[0] > floor:
                break
            due.add(room)
        return sorted(due)

    def ids(self, rooms: list[Any]) -> array[int]:
        """The ids of the messages filing `rooms` files: a new array (never empty: a room
        here has at least one)."""
        found = self.rooms
        ids = array("q")
        for room in rooms:
            ids += found[room]
        return ids

    def mark(self, filed: list[Any], top: int) -> int:
        """message_rooms_upto once `filed` are: just below the oldest message left
        unfiled, or `top` if none is."""
        skip = set(filed)
        for room, ids in self.rooms.items():  # oldest first
            if room not in skip:
                return ids[0] - 1
        return top

    def committed(self, filed: list[Any], upto: int, top: int) -> None:
        """After the COMMIT of the open transaction, which filed `filed`, left
        message_rooms_upto at `upto` and added ids up to `top`."""
        rooms, clients = self.rooms, self.clients
        for room in filed:
            self._added -= len(rooms.pop(room))
            clients.pop(room, None)
        self._full.difference_update(filed)
        self._open = False
        self.upto = upto
        self.seen = top

    def client(self, key: ClientKey) -> int | None:
        """The id of the unfiled message with this (room, user, client_id), if any."""
        of_room = self.clients.get(key[0])
        return None if of_room is None else of_room.get((key[1], key[2]))

    def has_clients(self, rooms: list[Any]) -> bool:
        """Whether any of `rooms` has an unfiled message with a client id."""
        clients = self.clients
        return any(room in clients for room in rooms)

    def candidates(
        self, room: Any, lo: int, hi: int, n: int, forward: bool, seen: int
    ) -> array[int]:
        """The room's unfiled ids strictly between `lo` and `hi` and up to `seen` (read
        before this), at most `n`, the oldest (`forward`) or the newest; a copy. None: [0],
        an id no message has (SQLite's carray takes no empty array)."""
        ids = self.rooms.get(room)
        if not ids:
            return array("q", _NONE)
        i = bisect_right(ids, lo)
        j = bisect_left(ids, min(hi, seen + 1))
        if j - i > n:
            if forward:
                j = i + n
            else:
                i = j - n
        if i >= j:
            return array("q", _NONE)
        return ids[i:j]


_NONE: Final = (0,)


class ClientKeys:
    """Every (room, user, client_id) stored (comments have a filter of their own, of
    (post id, user, client_id), and `comment_clients`), as a Bloom filter: a key it does
    not hold was never stored, so a new message's retry check needs no read of
    `message_clients` (a b-tree seek into a table as big as the history: ~2.5 us for each
    message with a client id, nearly all of them misses). A key it holds may be stored: the
    table is read.

    A clean close saves it in the database (`to_bytes`), and every later open reads it back
    (`saved`) with the keys stored since; with none saved the open fills one from
    `message_clients` (`fill`, before the first write: about a second per million keys).
    From then on the writer adds every key it inserts or sees other workers insert
    (`add`). So the bits must mean the same in every process: the key's hash is MurmurHash3
    (`mmh3.hash128` of its parts joined by NUL, computed in C by _keys.pyx; two keys that
    join the same only share spots, a read), not Python's `hash()`, which differs from one
    process to the next. A filter never filled (`ready` False: the file was replaced under
    the store) says "maybe" to every key. A key added for a transaction that was rolled back
    only costs a read later. Only the writer (one thread at a time) calls `add` and
    `may_hold`, so no bit is lost between two threads (that would be a retry stored
    twice)."""

    __slots__ = ("_bits", "_mask", "ready")

    # What `to_bytes` holds: the hash above, three spots a key. Saved with the bits; a saved
    # filter of another scheme is not read back.
    SCHEME: Final = 1
    # The most keys a filter is sized for (16 bits each: 64 MB). Past them the false
    # positives grow, and each costs a walk through its sender's buckets in message_clients
    # (one seek per 65,536 messages stored): bench.historycost, 10 million stored with a
    # 16 MB filter (8 million keys), 9.6 us of the writer a message instead of about 5.
    MAX_KEYS: Final = 1 << 25

    def __init__(self, bits: int = 1 << 23, saved: bytes | None = None) -> None:
        """`bits` zero bits (a power of two), or the `saved` ones (`to_bytes`)."""
        self._bits = bytearray(bits // 8) if saved is None else bytearray(saved)
        self._mask = len(self._bits) * 8 - 1
        self.ready = False

    def to_bytes(self) -> bytes:
        return bytes(self._bits)

    @property
    def bits(self) -> int:
        return len(self._bits) * 8

    @staticmethod
    def size_for(keys: int) -> int:
        """Bits for `keys` keys at 16 or more each (3 probes: under 0.5 % false positives),
        a power of two, at least 2^23 (1 MB)."""
        bits = 1 << 23
        while bits < keys * 16:
            bits <<= 1
        return bits

    def add(self, key: ClientKey) -> None:
        _add(self._bits, self._mask, key)

    def fill(self, keys: Iterable[ClientKey]) -> None:
        """Every key stored: from now on a key it does not hold was never stored."""
        bits, mask = self._bits, self._mask
        for key in keys:
            _add(bits, mask, key)
        self.ready = True

    def may_hold(self, key: ClientKey) -> bool:
        # `add`'s three spots (in C, _keys.pyx): this runs for every new message with a
        # client id.
        return not self.ready or _holds(self._bits, self._mask, key)
