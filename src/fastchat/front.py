"""PORT's listener: the original's `ws://HOST:PORT/ws` on the compiled path, the rest to Granian.

The original's clients connect to `ws://HOST:PORT/ws`. Served through Granian's ASGI bridge
(a dict per message, str/bytes conversions, a writer task per connection) that URL reached
0.4x the Go original's fan-out (issue 14). So PORT is ours: each connection's request head is
read here, and

- a WebSocket upgrade of `/ws` is handed, with the bytes read so far, to the same picows
  protocol as WS_PORT's (`fastport.protocol_factory`): the same frame rules, limits, close
  codes and hub path, one write per member per tick;
- anything else (pages, REST, static files, metrics) is relayed byte for byte to Granian,
  which serves the Litestar app on a Unix socket of its own. The relay runs until either side
  closes, so keep-alive and pipelining work as they do on Granian directly.

The first request of a connection decides. A `/ws` upgrade that follows an HTTP request on
the same kept-alive connection (browsers and WebSocket clients open a new one) reaches the
Litestar route that served the URL before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger("fastchat.front")

# A request head longer than this is refused (Granian's own limit is of the same order).
HEAD_MAX: Final = 16 * 1024
# Read size while relaying; the kernel hands over at most what is there.
RELAY_CHUNK: Final = 16 * 1024
# A client that has not sent a whole request head by then is dropped (slowloris).
HEAD_TIMEOUT: Final = 10.0

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


class Front(asyncio.BufferedProtocol):
    """One PORT connection until its first request head is read; then a relay to Granian,
    or nothing (picows' protocol has taken the transport)."""

    __slots__ = (
        "_buffer",
        "_paths",
        "_picows",
        "_read",
        "_relay",
        "_timer",
        "_transport",
        "_upstream",
    )

    def __init__(self, picows: Callable[[], Any], upstream: str, paths: tuple[bytes, ...]) -> None:
        self._picows = picows
        self._paths = paths  # the upgrade paths picows takes
        self._upstream = upstream  # Granian's Unix socket
        self._buffer = bytearray(2048)
        self._read = 0
        self._transport: Any = None
        self._relay: Relay | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport  # uvloop's, not an asyncio.Transport subclass
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT, transport.abort)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._read == len(self._buffer):
            self._buffer.extend(bytes(len(self._buffer)))
        return memoryview(self._buffer)[self._read :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._relay is not None:  # relaying already (only until the hand-over below)
            self._relay.from_client(bytes(self._buffer[:nbytes]))
            return
        self._read += nbytes
        end = self._buffer.find(b"\r\n\r\n", 0, self._read)
        transport = self._transport
        assert transport is not None
        if end < 0:
            if self._read >= HEAD_MAX:
                transport.write(_TOO_LARGE)
                transport.close()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        data = bytes(self._buffer[: self._read])
        if is_ws_upgrade(data[:end], self._paths):
            self._to_picows(transport, data)
        else:
            self._relay = Relay(transport, self._upstream, data)
            self._buffer = bytearray(RELAY_CHUNK)
            self._read = 0

    def _to_picows(self, transport: Any, data: bytes) -> None:
        """picows' protocol takes the connection as if it had accepted it, then reads what
        was already read here, through the same buffer calls the loop would make."""
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

    def resume_writing(self) -> None:
        if self._relay is not None:
            self._relay.resume_upstream()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
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


async def start_front(
    host: str,
    port: int,
    picows: Callable[[], Any],
    upstream: str,
    *,
    paths: tuple[bytes, ...] = (b"/ws",),
    reuse_port: bool = False,
) -> asyncio.Server:
    return await asyncio.get_running_loop().create_server(
        lambda: Front(picows, upstream, paths),
        host,
        port,
        backlog=4096,
        reuse_address=True,
        reuse_port=reuse_port,
    )
