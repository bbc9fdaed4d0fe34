"""Bans and mutes: who may not join (ban) or not post (mute, and ban) where, until when.

Kept in the database (table `bans`, written through the store's writer like any write) and
in memory here, loaded when the store opens: a join or a send asks this module, never the
database. A ban is by token user (`sub`): anonymous clients have no identity to ban. Room
"*" means everywhere, and there a ban or mute covers comments too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple

from fastchat.errors import ErrorCode, FastchatError

EVERYWHERE: Final = "*"
KINDS: Final = ("ban", "mute")


class Ban(NamedTuple):
    """A row of `bans` (store.BAN_COLUMNS)."""

    sub: str
    room: str
    kind: str  # "ban" or "mute"
    until_ms: int | None  # None: for good
    by: str
    reason: str
    ts: int  # when it was set, Unix ms

    def active(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms


class Moderation:
    """The bans and mutes in force; one per process, owned by the service."""

    def __init__(self) -> None:
        self._bans: dict[tuple[str, str, str], Ban] = {}

    def __bool__(self) -> bool:
        return bool(self._bans)

    def load(self, rows: Iterable[tuple[object, ...]]) -> None:
        self._bans = {}
        for row in rows:
            self.put(row)

    def put(self, row: tuple[object, ...]) -> Ban:
        ban = Ban(*row)  # type: ignore[arg-type]
        self._bans[ban.sub, ban.room, ban.kind] = ban
        return ban

    def drop(self, sub: str, room: str, kind: str) -> None:
        self._bans.pop((sub, room, kind), None)

    def find(self, sub: str, room: str, kind: str, now_ms: int) -> Ban | None:
        """The ban or mute of `kind` on `sub` in `room` (or everywhere) in force now."""
        for where in (room, EVERYWHERE):
            ban = self._bans.get((sub, where, kind))
            if ban is not None and ban.active(now_ms):
                return ban
        return None

    def silenced(self, sub: str, now_ms: int) -> dict[str, str]:
        """The rooms (not "*": check_post covers it) where `sub` may not post now, each
        with its refusal's code (`banned` over `muted`)."""
        rooms: dict[str, str] = {}
        for (who, room, kind), ban in self._bans.items():
            if who == sub and room != EVERYWHERE and ban.active(now_ms):
                code = ErrorCode.BANNED if kind == "ban" else ErrorCode.MUTED
                if rooms.get(room) != ErrorCode.BANNED:
                    rooms[room] = code
        return rooms

    def check_join(self, sub: str, room: str, now_ms: int) -> None:
        ban = self.find(sub, room, "ban", now_ms)
        if ban is not None:
            raise refusal(ErrorCode.BANNED, ban, room)

    def check_post(self, sub: str, room: str, now_ms: int) -> None:
        for kind, code in (("ban", ErrorCode.BANNED), ("mute", ErrorCode.MUTED)):
            ban = self.find(sub, room, kind, now_ms)
            if ban is not None:
                raise refusal(code, ban, room)

    def in_force(self, now_ms: int) -> list[Ban]:
        return sorted((b for b in self._bans.values() if b.active(now_ms)), key=lambda b: b.ts)


def refusal(code: str, ban: Ban, room: str) -> FastchatError:
    what = "banned from" if ban.kind == "ban" else "muted in"
    where = "every room" if ban.room == EVERYWHERE else f"room {room!r}"
    until = "" if ban.until_ms is None else " for now"
    reason = f": {ban.reason}" if ban.reason else ""
    return FastchatError(code, f"you are {what} {where}{until}{reason}")
