"""PORT's listener: the original's `ws://HOST:PORT/ws` on the compiled path, the rest to Granian.

The original's clients connect to `ws://HOST:PORT/ws`. Served through Granian's ASGI bridge
(a dict per message, str/bytes conversions, a writer task per connection) that URL reached
0.4x the Go original's fan-out (issue 14). So PORT is ours: each connection's request head is
read here, and

- a WebSocket upgrade of `/ws` is handed, with the bytes read so far, to the same picows
  protocol as WS_PORT's (`fastport.protocol_factory`): the same frame rules, limits, close
  codes and hub path, one write per member per tick;
- the few requests that are answered from memory (answers.py: `GET`/`HEAD` of the health
  check and of the newest history pages, what monitors, page loads and `wrk` ask for) are
  answered here, from the same bytes Litestar's handlers answer with: through Granian and
  Litestar they cost about 200 µs each on this machine kind, here a few;
- anything else (pages, REST writes, static files, metrics, errors) is relayed byte for byte
  to Granian, which serves the Litestar app on a Unix socket of its own. From the first
  request that is not answered here, the connection is a relay until either side closes, so
  keep-alive and pipelining work as they do on Granian directly.

Only the first request of a connection may become a WebSocket. A `/ws` upgrade that follows
an HTTP request on the same kept-alive connection (browsers and WebSocket clients open a new
one) is relayed to Granian, which has no WebSocket route and refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from email.utils import formatdate
from functools import partial
from typing import Any, Final

log = logging.getLogger("fastchat.front")

# A request head longer than this is refused (Granian's own limit is of the same order).
HEAD_MAX: Final = 16 * 1024
# Read size while relaying; the kernel hands over at most what is there.
RELAY_CHUNK: Final = 16 * 1024
# A client that has not sent a whole request head by then is dropped (slowloris).
HEAD_TIMEOUT: Final = 10.0
# A connection the front answers itself, silent this long, is closed, as Granian closes its
# own (its HTTP/1 header read timeout, 30 s): idle keep-alive connections must not pile up.
# Checked by one sweep for all of them every IDLE_SWEEP seconds, not a timer per request.
IDLE_TIMEOUT: Final = 30.0
IDLE_SWEEP: Final = 5.0

_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
    b"Content-Length: 75\r\nConnection: close\r\n\r\n"
    b'{"code":"too_large","message":"the request head is over 16 kB; send less"}\n'
)
_UNAVAILABLE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 71\r\nConnection: close\r\n\r\n"
    b'{"code":"store_unavailable","message":"the HTTP server is not running"}\n'
)


def is_ws_upgrade(head: bytes, paths: tuple[bytes, ...] = (b"/ws",)) -> bool:
    """A `GET` of one of `paths` (query allowed) asking to become a WebSocket. picows checks
    the rest of the handshake."""
    target = head[4 : head.find(b" ", 4)] if head.startswith(b"GET ") else b""
    if target.partition(b"?")[0] not in paths:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


# An answer of the front's own (answers.py): its status line; the date header, per second.
_STATUS: Final = {200: b"200 OK", 503: b"503 Service Unavailable"}
_RESPONSE: Final = (
    b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\ndate: %s\r\n%s\r\n"
)
_date: list[Any] = [0, b""]


def _http_date() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]  # type: ignore[no-any-return]


def response(status: int, body: bytes, *, head_only: bool = False, close: bool = False) -> bytes:
    """An HTTP/1.1 response of the front's own, with the headers Granian would send."""
    top = _RESPONSE % (
        _STATUS[status],
        len(body),
        _http_date(),
        b"connection: close\r\n" if close else b"",
    )
    return top if head_only else top + body


# (target, lower-cased header lines) -> what answers it (answers.py `Answers.route`) or None.
RouteFn = Callable[[bytes, bytes], Any]
# Routes by request head: the same client sends the same head again and again (wrk, monitors,
# pollers), and parsing it again cost more than answering it. Bounded: cleared when full.
ROUTES_KEPT: Final = 1024


class Front(asyncio.BufferedProtocol):
    """One PORT connection. The first request head may hand it to picows (a WebSocket
    upgrade of `paths`). Then each request `answer` knows (answers.py: health, the newest
    history pages) is answered here, in order, pipelined or not; the first one it does not
    know turns the connection into a relay to Granian from that request on, for good (a
    browser's first request is a page: its connections are relays from the start)."""

    __slots__ = (
        "_buffer",
        "_first",
        "_heard",
        "_idle",
        "_paths",
        "_picows",
        "_read",
        "_relay",
        "_route",
        "_routes",
        "_timer",
        "_transport",
        "_upstream",
        "_waiting",
    )

    def __init__(
        self,
        picows: Callable[[], Any],
        upstream: str,
        paths: tuple[bytes, ...],
        route: RouteFn | None = None,
        routes: dict[bytes, Any] | None = None,
        idle: Idle | None = None,
    ) -> None:
        self._picows = picows
        self._paths = paths  # the upgrade paths picows takes
        self._upstream = upstream  # Granian's Unix socket
        self._route = route
        self._routes = routes if routes is not None else {}  # shared by the connections
        self._idle = idle  # the sweep that closes silent connections
        self._heard = 0  # the sweep's tick when this connection last sent something
        self._buffer = bytearray(2048)
        self._read = 0
        self._first = True
        self._transport: Any = None
        self._relay: Relay | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: asyncio.Future[Any] | None = None  # an answer being built

    def connection_made(self, transport: Any) -> None:
        self._transport = transport  # uvloop's, not an asyncio.Transport subclass
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, transport.abort)
        if self._idle is not None:
            self._idle.served.add(self)
            self._heard = self._idle.tick

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._read == len(self._buffer):
            self._buffer.extend(bytes(len(self._buffer)))
        return memoryview(self._buffer)[self._read :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._relay is not None:  # relaying already (only until the hand-over below)
            self._relay.from_client(bytes(self._buffer[:nbytes]))
            return
        self._read += nbytes
        if self._idle is not None:
            self._heard = self._idle.tick
        if self._waiting is None:
            self._serve()

    def idle_for(self, tick: int) -> int:
        """Sweeps since this connection last sent something (none while an answer is being
        built for it)."""
        return 0 if self._waiting is not None else tick - self._heard

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _serve(self) -> None:
        """Answer the complete request heads in the buffer, in order, until one must wait
        or be relayed; keep what is left (a partial head, or the one waited for) at the
        buffer's start."""
        transport = self._transport
        buffer = self._buffer
        start = 0
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n", start, self._read)
            if end < 0:
                break
            head = bytes(buffer[start:end])
            if self._first:
                self._first = False
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                if is_ws_upgrade(head, self._paths):
                    self._to_picows(transport, bytes(buffer[start : self._read]))
                    return
            known = self._routes.get(head)
            if known is None:
                known = self._route_for(head)
            route, head_only, close = known
            answer = route() if route is not None else None
            if answer is None:
                self._write(out)
                self._start_relay(bytes(buffer[start : self._read]))
                return
            if type(answer) is not tuple:  # built later; the head stays in the buffer
                size = end + 4 - start  # at the buffer's start once it is compacted below
                self._waiting = waiting = asyncio.ensure_future(answer)
                waiting.add_done_callback(partial(self._answered, size, head_only, close))
                transport.pause_reading()
                break
            out.append(response(*answer, head_only=head_only, close=close))
            start = end + 4
            if close:
                break
        self._write(out)
        if close and self._waiting is None:
            transport.close()
            return
        left = self._read - start
        if start:
            buffer[:left] = buffer[start : self._read]  # same size: no resize while exported
            self._read = left
        if self._read >= HEAD_MAX and self._waiting is None:
            transport.write(_TOO_LARGE)
            transport.close()

    def _route_for(self, head: bytes) -> tuple[Any, bool, bool]:
        """(route or None, HEAD?, close after?) for one request head; kept for the next
        request with the same head."""
        known: tuple[Any, bool, bool] = (None, False, False)
        line_end = head.find(b"\r\n")
        if line_end < 0:
            line_end = len(head)
        method, _, rest = head[:line_end].partition(b" ")
        target, _, version = rest.rpartition(b" ")
        headers = head[line_end:].lower()
        if (
            self._route is None
            or version != b"HTTP/1.1"
            or (method != b"GET" and method != b"HEAD")
            # A body, a continue or an upgrade: Granian's to handle.
            or b"\r\ncontent-length:" in headers
            or b"\r\ntransfer-encoding:" in headers
            or b"\r\nupgrade:" in headers
            or b"\r\nexpect:" in headers
        ):
            return known
        known = (
            self._route(target, headers),
            method == b"HEAD",
            b"\r\nconnection: close" in headers,
        )
        if len(self._routes) >= ROUTES_KEPT:
            self._routes.clear()
        self._routes[head] = known
        return known

    def _answered(self, size: int, head_only: bool, close: bool, done: asyncio.Future[Any]) -> None:
        self._waiting = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        answer = None if done.cancelled() or done.exception() else done.result()
        if answer is None:  # not ours after all: Granian answers it, and what follows
            self._start_relay(bytes(self._buffer[: self._read]))
            return
        transport.write(response(*answer, head_only=head_only, close=close))
        if close:
            transport.close()
            return
        left = self._read - size
        self._buffer[:left] = self._buffer[size : self._read]
        self._read = left
        transport.resume_reading()
        self._serve()

    def _write(self, out: list[bytes]) -> None:
        if len(out) == 1:
            self._transport.write(out[0])
        elif out:
            self._transport.writelines(out)

    def _start_relay(self, data: bytes) -> None:
        self._leave_idle()  # Granian times its own connections out
        self._relay = Relay(self._transport, self._upstream, data)
        self._buffer = bytearray(RELAY_CHUNK)
        self._read = 0

    def _to_picows(self, transport: Any, data: bytes) -> None:
        """picows' protocol takes the connection as if it had accepted it, then reads what
        was already read here, through the same buffer calls the loop would make."""
        self._leave_idle()  # picows' keepalive sweep watches WebSockets
        protocol = self._picows()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        view = memoryview(data)
        while view:
            buffer = protocol.get_buffer(-1)
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]

    def eof_received(self) -> bool:
        if self._relay is not None:
            return self._relay.client_eof()
        return False

    def pause_writing(self) -> None:
        if self._relay is not None:
            self._relay.pause_upstream()
        elif self._transport is not None:  # a client that does not read its answers
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._relay is not None:
            self._relay.resume_upstream()
        elif self._transport is not None and self._waiting is None:
            self._transport.resume_reading()

    def _leave_idle(self) -> None:
        if self._idle is not None:
            self._idle.served.discard(self)
            self._idle = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave_idle()
        if self._timer is not None:
            self._timer.cancel()
        if self._waiting is not None:
            self._waiting.cancel()
        if self._relay is not None:
            self._relay.client_lost()
        self._transport = None


class Relay(asyncio.Protocol):
    """The Granian side of one relayed connection; the Front feeds it the client's bytes."""

    __slots__ = ("_client", "_closed", "_connecting", "_pending", "_upstream")

    def __init__(self, client: Any, path: str, first: bytes) -> None:
        self._client = client
        self._pending: list[bytes] | None = [first]  # until Granian's socket is connected
        self._upstream: Any = None
        self._closed = False
        client.pause_reading()
        # Held: the loop keeps only a weak reference to a task.
        self._connecting = asyncio.get_running_loop().create_task(self._connect(path))

    async def _connect(self, path: str) -> None:
        try:
            await asyncio.get_running_loop().create_unix_connection(lambda: self, path)
        except OSError as exc:
            log.error("cannot reach the HTTP server on %s: %s", path, exc)
            if not self._client.is_closing():
                self._client.write(_UNAVAILABLE)
                self._client.close()

    def connection_made(self, transport: Any) -> None:
        self._upstream = transport
        if self._closed:  # the client left while we connected
            transport.close()
            return
        pending, self._pending = self._pending, None
        transport.writelines(pending or ())
        if not self._client.is_closing():
            self._client.resume_reading()

    def from_client(self, data: bytes) -> None:
        if self._upstream is not None:
            self._upstream.write(data)
        elif self._pending is not None:
            self._pending.append(data)

    def client_eof(self) -> bool:
        if self._upstream is not None and self._upstream.can_write_eof():
            self._upstream.write_eof()
        return True  # keep our side open for the answer

    def client_lost(self) -> None:
        self._closed = True
        if self._upstream is not None:
            self._upstream.close()

    def pause_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    # Granian's side
    def data_received(self, data: bytes) -> None:
        self._client.write(data)

    def eof_received(self) -> bool:
        if self._client.can_write_eof() and not self._client.is_closing():
            self._client.write_eof()
        return False

    def pause_writing(self) -> None:
        self._client.pause_reading()

    def resume_writing(self) -> None:
        if not self._client.is_closing():
            self._client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client.close()


class Idle:
    """The connections the front answers itself, and one sweep every `every` seconds that
    closes those silent for `timeout` (rounded up to whole sweeps). The sweep stops once the
    server is closed and the last of them is gone."""

    def __init__(self, timeout: float = IDLE_TIMEOUT, every: float = IDLE_SWEEP) -> None:
        self.served: set[Front] = set()
        self.tick = 0  # sweeps so far: a coarse clock a request reads for nothing
        self._every = every
        self._sweeps = max(1, -int(-timeout // every))
        self.server: asyncio.Server | None = None

    def start(self, server: asyncio.Server) -> None:
        self.server = server
        asyncio.get_running_loop().call_later(self._every, self._sweep)

    def _sweep(self) -> None:
        self.tick += 1
        for front in [f for f in self.served if f.idle_for(self.tick) >= self._sweeps]:
            front.close()
        if self.served or (self.server is not None and self.server.is_serving()):
            asyncio.get_running_loop().call_later(self._every, self._sweep)


async def start_front(
    host: str,
    port: int,
    picows: Callable[[], Any],
    upstream: str,
    *,
    paths: tuple[bytes, ...] = (b"/ws",),
    route: RouteFn | None = None,
    reuse_port: bool = False,
    idle: Idle | None = None,
) -> asyncio.Server:
    routes: dict[bytes, Any] = {}
    idle = idle or Idle()
    server = await asyncio.get_running_loop().create_server(
        lambda: Front(picows, upstream, paths, route, routes, idle),
        host,
        port,
        backlog=4096,
        reuse_address=True,
        reuse_port=reuse_port,
    )
    idle.start(server)
    return server
