"""Connections opening and closing: their sessions, counts by URL, log lines (budgeted in
reconnect storms), and the heap given back after a mass disconnect."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from fastchat._hub import Hub, Member
from fastchat.logs import LineBudget
from fastchat.protocol import Limits, Session

log = logging.getLogger("fastchat.service")

# "connection opened" / "connection closed": one line each, up to this many a second; past
# it (a storm of reconnects), counted and told in one line a second (logs.LineBudget).
CONNECTION_LINES_PER_SECOND: Final = 100
# After this many connections closed, the heap the allocator keeps is given back to the
# system (malloc_trim), one second after the first of them, at most once a second. Measured
# (issue 14): 10,000 clients leaving at once left ~30 MB free but mapped in glibc's heap, RSS
# after they had left within 1 % of RSS while connected; malloc_trim(0) returned it
# (104 -> 72 MB) in a few ms. Without glibc (musl) there is no trim and nothing is done.
TRIM_AFTER_CLOSED: Final = 1000
TRIM_DELAY: Final = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class Connections:
    """Every WebSocket connection's start and end; one per process, owned by the service.
    `on_left(key, user)` is told of each chat room a closing connection was in, and
    `on_closed(member)` of the closed connection."""

    def __init__(
        self,
        hub: Hub,
        limits: Limits,
        on_left: Callable[[str, str], None],
        on_closed: Callable[[Member], None],
    ) -> None:
        self.hub = hub
        self.limits = limits
        self._on_left = on_left
        self._on_closed = on_closed
        self._next_conn = 0
        self.opened: Counter[str] = Counter()
        # Open now, by the URL they came in on ("fast": WS_PORT, "http": PORT); the hub counts
        # them by kind of transport, and PORT's `/ws` is a picows transport too.
        self.open: Counter[str] = Counter()
        self.lines = LineBudget(CONNECTION_LINES_PER_SECOND)
        self._all_closed: asyncio.Future[None] | None = None  # see `all_closed`
        self._closed_since_trim = 0
        self._trim = _malloc_trim()
        self.trims = 0
        self._loop = asyncio.get_running_loop()
        hub.on_slow = self.on_slow

    def transport(self, transport: Any, port: str = "fast", peer: str = "") -> Member:
        """A picows connection, from WS_PORT ("fast") or from PORT's `/ws` ("http")."""
        return self._opened(self.hub.attach_transport(transport), port, peer)

    def sink(self, sink: Any, port: str = "sink", peer: str = "") -> Member:
        """A member whose frames go to a hub sink, not a socket (tests observe the service
        through one; an in-process client could too)."""
        return self._opened(self.hub.attach_sink(sink), port, peer)

    def _opened(self, member: Member, port: str, peer: str) -> Member:
        self._next_conn += 1
        self.opened[port] += 1
        self.open[port] += 1
        now = time.monotonic()
        member.state = Session(self.limits, now, self._next_conn, port, peer)
        if log.isEnabledFor(logging.INFO) and self._line(now, "opened"):
            log.info(
                "connection opened", extra={"conn": self._next_conn, "port": port, "peer": peer}
            )
        return member

    def close(self, member: Member) -> None:
        """`member`'s socket has closed: it leaves every room."""
        session: Session = member.state
        names = session.names
        self.open[session.port] -= 1
        rooms = self.hub.detach(member)
        for key in rooms:
            if key[0] == "r":
                self._on_left(key, names.get(key, ""))
        self._on_closed(member)
        if self._all_closed is not None and not self.hub.connection_count:
            self._all_closed.set_result(None)
            self._all_closed = None
        self._closed_since_trim += 1
        if self._closed_since_trim == TRIM_AFTER_CLOSED:
            self._loop.call_later(TRIM_DELAY, self._trim_heap)
        now = time.monotonic()
        if log.isEnabledFor(logging.INFO) and self._line(now, "closed"):
            log.info(
                "connection closed",
                extra={
                    "conn": session.conn_id,
                    "port": session.port,
                    "peer": session.peer,
                    "seconds": round(now - session.opened, 3),
                    "rooms": len(rooms),
                },
            )

    async def all_closed(self) -> None:
        """Until every connection has closed (the end of a graceful shutdown)."""
        while self.hub.connection_count:
            if self._all_closed is None:
                self._all_closed = self._loop.create_future()
            await asyncio.shield(self._all_closed)

    def _trim_heap(self) -> None:
        """A mass disconnect has freed much memory: give the allocator's free pages back.
        On a worker thread (ctypes lets the GIL go): a trim of a fragmented 100 MB heap took
        27 ms here, a stall the loop need not take."""
        self._closed_since_trim = 0
        if self._trim is not None:
            self.trims += 1
            self._loop.run_in_executor(None, self._trim, 0)

    def _line(self, now: float, kind: str) -> bool:
        """Whether this connection's line is logged; if not, it is counted, and the count
        told one period after the first line held back (see CONNECTION_LINES_PER_SECOND)."""
        budget = self.lines
        if budget.take(now, kind):
            return True
        if sum(budget.untold.values()) == 1:
            self._loop.call_later(budget.period, self.tell_untold)
        return False

    def tell_untold(self) -> None:
        untold = self.lines.pop_untold()
        if not untold:
            return
        log.info(
            "connections opened and closed over %d a second: counted, not logged one by one",
            self.lines.lines,
            extra={"opened": untold["opened"], "closed": untold["closed"]},
        )

    def on_slow(self, member: Member) -> None:
        session: Session = member.state
        log.warning(
            "slow consumer dropped",
            extra={"conn": session.conn_id, "port": session.port, "peer": session.peer},
        )
