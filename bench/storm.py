"""Join storm: N clients join one room, K of them connecting at a time, then all leave at once.

The moment every client of a big room reconnects after a deploy. Each client opens a TCP
connection, upgrades it to a WebSocket, sends JOIN_ROOM and waits for its ROOM_JOINED; a
connecting slot is held from the TCP connect to the JOIN_ROOM written (`--concurrency`). Once
all have joined and the server has gone quiet (no byte for `--quiet` s: the presence traffic
a join causes is over), every client sends a close frame and closes its socket, and the run
waits until the server has no connection left (fastchat: its stats; the baseline, which has
none: its open file descriptors back to the count before the storm).

    python -m bench.storm --port 8081 --server-pid 1234 \
        --stats-url http://127.0.0.1:8080/api/v1/stats --clients 10000 --concurrency 200

With `--history N --resume K` the storm is the one fastchat's own clients make after a
deploy: N messages are stored in the room first (through one WebSocket client: both
servers speak it), and each client rejoins as they do, with `last_id` (having missed 0 to K
of the newest messages) and `last_change`. A server that replays from its database reads it
once a client; the replayed messages count in the bytes received.

Prints one JSON object (as `bench.loadgen` does): seconds until all joined (the last
ROOM_JOINED), the server's CPU seconds per phase (join, quiet, leave), its VmRSS before, while
all are connected (after the quiet spell), at its peak (VmHWM), and once all have left.

Where a slow upgrade comes from: each client's connect-to-101 is split into `tcp` (connect
started -> TCP established, the kernel's handshake: a dropped SYN shows here as 1 s, 3 s,
7 s) and `http` (request written -> 101 read: the server's accept, read, handshake and
write, and this process's own loop); `loadgen_lag_s` is how late a 10 ms timer of this
process fired (its loop busy: every reply it reads waits that long); `kernel` holds the
join phase's TCP counters (SYN retransmits, listen queue overflows and drops, timeouts)
and per-core backlog drops (/proc/net/softnet_stat: loopback packets dropped when a
core's input queue passes net.core.netdev_max_backlog).

Why the clients are not picows ones: each join sends USER_JOINED to every member already in
the room, so n joins deliver about n²/2 frames (50 million for 10,000). A client that parsed
them, at a fraction of a microsecond each, would measure itself; these read raw bytes, look for
their own ROOM_JOINED (the first frame a client gets in the room), then only count the bytes.
They answer the pings they see, and send an unsolicited pong every `--heartbeat` s (RFC 6455
allows it; fastchat takes any frame as a sign of life). Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from typing import Any

from bench.loadgen import (
    CHAT_PREFIX,
    HOST,
    JOINED_PREFIX,
    busy_share,
    chat_payload,
    client_frame,
    cores_busy,
    join_payload,
    log,
    proc_cpu,
    proc_status_kb,
    report,
    server_cpu,
    server_stats,
)

# Masked (all-zero key) control frames: an empty pong, and a close with 1001 (going away).
PONG = bytes((0x8A, 0x80, 0, 0, 0, 0))
CLOSE = bytes((0x88, 0x82, 0, 0, 0, 0)) + (1001).to_bytes(2, "big")


class Storm:
    """The clients' shared state: who has joined, when, and the bytes that came in."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.joined = 0
        self.last_joined_ns = 0
        self.all_joined = asyncio.Event()
        self.bytes = 0
        self.dropped = 0  # connections the server closed before we left
        self.leaving = False

    def on_joined(self) -> None:
        self.joined += 1
        self.last_joined_ns = time.monotonic_ns()
        if self.joined == self.clients:
            self.all_joined.set()


class StormClient(asyncio.Protocol):
    """One raw WebSocket client: handshake, JOIN_ROOM, then its ROOM_JOINED; the rest is
    counted, never parsed."""

    def __init__(self, storm: Storm, request: bytes, join: bytes) -> None:
        self.storm = storm
        self.request = request
        self.join = join
        self.transport: Any = None
        self.buf = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.joined = False
        self.closed = False
        self.times = [0, 0, 0, 0]  # ns: connect started, upgraded, ROOM_JOINED, TCP up

    def connection_made(self, transport: Any) -> None:
        self.times[3] = time.monotonic_ns()
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.storm.bytes += len(data)
        if b"\x89" in data and self.upgraded.done():
            self.pong(data)
        if self.joined:
            return
        buf = self.buf + data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(buf[:80].decode(errors="replace")))
                return
            self.upgraded.set_result(None)
            self.times[1] = time.monotonic_ns()
            buf = buf[end + 4 :]
        if JOINED_PREFIX in buf:
            self.joined = True
            self.times[2] = time.monotonic_ns()
            self.buf = b""
            self.storm.on_joined()
        else:  # keep enough for a marker split across two reads
            self.buf = buf[-len(JOINED_PREFIX) :]

    def pong(self, data: bytes) -> None:
        """Answer the pings in `data`. Every payload here is ASCII JSON, so 0x89 can only
        be a ping's first byte (or, rarely, a byte of a long frame's length: then the
        pong is unsolicited, which RFC 6455 allows). The baseline (websockets) closes a
        connection whose pong does not echo its ping within 20 s."""
        i = data.find(b"\x89")
        while 0 <= i < len(data) - 1:
            n = data[i + 1]
            if n <= 125 and i + 2 + n <= len(data):
                self.transport.write(bytes((0x8A, 0x80 | n, 0, 0, 0, 0)) + data[i + 2 : i + 2 + n])
            i = data.find(b"\x89", i + 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.storm.leaving:
            self.storm.dropped += 1

    def leave(self) -> None:
        if self.transport is not None and not self.closed:  # None: never connected
            self.transport.write(CLOSE)
            self.transport.close()


def quantiles(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    s = sorted(xs)
    return {f"p{q}": round(s[min(len(s) - 1, int(q / 100 * len(s)))], 4) for q in (50, 90, 99)} | {
        "max": round(s[-1], 4)
    }


def raise_fd_limit(need: int) -> int:
    """Raise this process's descriptor limit to its hard limit; fail clearly if too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < need:
        raise SystemExit(
            f"storm: {need} descriptors needed, the hard limit is {hard} (ulimit -Hn); "
            "run with fewer --clients"
        )
    return hard


TCP_COUNTERS = (
    "TCPSynRetrans",
    "ListenOverflows",
    "ListenDrops",
    "TCPTimeouts",
    "TCPReqQFullDrop",
    "TCPReqQFullDoCookies",
)


def kernel_counters() -> dict[str, int]:
    """This network namespace's TCP counters that a stalled connect would raise, the TCP
    retransmits, and each core's backlog drops (softnet_stat's second column)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith("TcpExt:"):
                names, nums = head.split()[1:], vals.split()[1:]
                got = dict(zip(names, nums, strict=False))
                out |= {k: int(got[k]) for k in TCP_COUNTERS if k in got}
        with open("/proc/net/snmp") as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith("Tcp:"):
                got = dict(zip(head.split()[1:], vals.split()[1:], strict=False))
                out["RetransSegs"] = int(got.get("RetransSegs", 0))
        with open("/proc/net/softnet_stat") as f:
            for cpu, line in enumerate(f):
                out[f"softnet_dropped_cpu{cpu}"] = int(line.split()[1], 16)
    return out


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


class LoopLag:
    """How late a `period` timer of this process's loop fires: the time each reply it
    reads waits before it is looked at."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.lags: list[float] = []
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + period
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.lags.append(now - self._due)
        self._due = now + self.period
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> dict[str, float]:
        self._handle.cancel()
        return quantiles(self.lags)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connections_left(pid: int, stats_url: str, fds_before: int) -> int:
    """Connections the server still holds: fastchat's stats, else its descriptors beyond the
    count before the storm (the baseline has no stats)."""
    if stats_url:
        stats = server_stats(stats_url)
        if stats is not None:
            conns = stats["connections"]
            return max(int(conns["ws_fast"]) + int(conns["ws_http"]), int(conns["total"]))
    return max(0, open_fds(pid) - fds_before)


class Phases:
    """Server CPU, load-generator CPU and core shares, phase by phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.marks: list[tuple[str, int, tuple[float, float], float, Any]] = []

    def mark(self, name: str, at_ns: int | None = None) -> None:
        t = os.times()
        cpu = proc_cpu(self.pid) if self.pid else (0.0, 0.0)
        self.marks.append(
            (name, at_ns or time.monotonic_ns(), cpu, t.user + t.system, cores_busy())
        )

    def between(self, a: str, b: str) -> dict[str, Any]:
        m = {name: rest for name, *rest in self.marks}
        (t0, cpu0, gen0, busy0), (t1, cpu1, gen1, busy1) = m[a], m[b]
        wall = (t1 - t0) / 1e9
        return {
            "wall_s": round(wall, 3),
            **server_cpu(cpu0, cpu1, wall),
            "loadgen_cpu_s": round(gen1 - gen0, 3),
            "loadgen_core_share": round((gen1 - gen0) / wall, 3) if wall else None,
            "cores_busy": busy_share(busy0, busy1),
        }


async def seed_history(port: int, request: bytes, room: str, n: int) -> int:
    """Store `n` messages in `room` through one WebSocket client of the server's (both
    servers speak it; the baseline has no REST), each echo awaited in the end; the newest
    id stored."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"storm: seeding {room}: {head[:80]!r}")
        writer.write(client_frame(join_payload(room, "seed")))
        for i in range(n):
            writer.write(client_frame(chat_payload(room, "seed", i, "x" * 48)))
            if i % 100 == 99:
                await writer.drain()
        newest, seen = 0, 0
        while seen < n:
            b0, b1 = await asyncio.wait_for(reader.readexactly(2), 30)
            size = b1 & 0x7F
            if size == 126:
                size = int.from_bytes(await reader.readexactly(2), "big")
            elif size == 127:
                size = int.from_bytes(await reader.readexactly(8), "big")
            payload = await reader.readexactly(size)
            if b0 & 0x0F == 1 and payload.startswith(CHAT_PREFIX):
                seen += 1
                newest = max(newest, int(json.loads(payload)["id"]))
        return newest
    finally:
        writer.close()


def resume_payload(room: str, user: str, last_id: int) -> bytes:
    """JOIN_ROOM as fastchat's own clients send it when they reconnect: the newest message
    they hold (`last_id`) and the newest change (`last_change`: none here)."""
    return (
        f'{{"type":"JOIN_ROOM","room":"{room}","user":"{user}",'
        f'"last_id":{last_id},"last_change":0}}'
    ).encode()


async def storm(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pid = args.server_pid
    st = Storm(args.clients)
    request = (
        f"GET {args.path} HTTP/1.1\r\nHost: {HOST}:{args.port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    newest = await seed_history(args.port, request, args.room, args.history) if args.history else 0
    # With --resume K, client i missed the newest i % (K + 1) messages (a reconnect after a
    # deploy: the clients were cut off at different moments of it).
    joins = [
        resume_payload(args.room, f"u{i}", newest - i % (args.resume + 1))
        if args.resume is not None
        else join_payload(args.room, f"u{i}")
        for i in range(args.clients)
    ]
    clients = [StormClient(st, request, client_frame(join)) for join in joins]
    failed: list[str] = []
    slots = asyncio.Semaphore(args.concurrency)

    async def connect(c: StormClient) -> None:
        async with slots:  # a slot from the TCP connect to the JOIN_ROOM written
            c.times[0] = time.monotonic_ns()
            try:
                await loop.create_connection(lambda: c, HOST, args.port)
                await asyncio.wait_for(c.upgraded, 30)
            except Exception as exc:  # counted, not fatal
                failed.append(f"{type(exc).__name__}: {exc}")
                return
            c.transport.write(c.join)

    def heartbeat() -> None:
        for c in clients:
            if c.upgraded.done() and not c.closed and not st.leaving:
                c.transport.write(PONG)
        loop.call_later(args.heartbeat, heartbeat)

    loop.call_later(args.heartbeat, heartbeat)
    rss0 = proc_status_kb(pid, "VmRSS") if pid else None
    fds0 = open_fds(pid) if pid else 0
    phases = Phases(pid)
    kernel0 = kernel_counters()
    lag = LoopLag()
    phases.mark("start")
    t0 = time.monotonic_ns()
    connecting = asyncio.gather(*(connect(c) for c in clients))
    deadline = loop.time() + args.timeout
    while not st.all_joined.is_set() and loop.time() < deadline:
        if connecting.done() and st.joined + len(failed) + st.dropped >= args.clients:
            break  # everyone has joined, failed or been dropped
        await asyncio.sleep(0.005)
    phases.mark("joined", st.last_joined_ns if st.all_joined.is_set() else None)
    kernel_join = counters_delta(kernel0, kernel_counters())
    lag_join = lag.stop()
    if not connecting.done():  # out of time: the clients still waiting for a slot give up
        connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await connecting
    last_s = (st.last_joined_ns - t0) / 1e9 if st.joined else None
    joined_s = last_s if st.all_joined.is_set() else None  # None: not all within --timeout
    log(f"{st.joined}/{args.clients} joined, the last after {last_s} s, {len(failed)} failed")

    # Quiet: the presence traffic the joins caused is over (no byte for --quiet s).
    deadline = loop.time() + args.timeout
    last, still = -1, loop.time()
    while loop.time() < deadline:
        if st.bytes != last:
            last, still = st.bytes, loop.time()
        elif loop.time() - still >= args.quiet:
            break
        await asyncio.sleep(0.05)
    phases.mark("quiet")
    rss_connected = proc_status_kb(pid, "VmRSS") if pid else None
    rss_peak = proc_status_kb(pid, "VmHWM") if pid else None
    bytes_in = st.bytes
    dropped = st.dropped

    # Leave, all at once; then wait for the server to hold no connection.
    st.leaving = True
    for c in clients:
        c.leave()
    phases.mark("leave")
    left = args.clients
    leave_deadline = loop.time() + args.timeout
    while loop.time() < leave_deadline:
        left = connections_left(pid, args.stats_url, fds0) if pid else 0
        if left == 0:
            break
        await asyncio.sleep(0.05)
    phases.mark("left")
    rss_after = proc_status_kb(pid, "VmRSS") if pid else None
    await asyncio.sleep(args.after)
    rss_later = proc_status_kb(pid, "VmRSS") if pid else None

    join = phases.between("start", "joined")
    done = [c.times for c in clients if c.joined]
    spans = {
        "started_at": [(t[0] - t0) / 1e9 for t in done],
        "upgrade": [(t[1] - t[0]) / 1e9 for t in done],
        "tcp": [(t[3] - t[0]) / 1e9 for t in done],
        "http": [(t[1] - t[3]) / 1e9 for t in done],
        "join": [(t[2] - t[1]) / 1e9 for t in done],
        "joined_at": [(t[2] - t0) / 1e9 for t in done],
    }
    out: dict[str, Any] = {
        "clients": args.clients,
        "concurrency": args.concurrency,
        "history": args.history,
        "resume": args.resume,
        "joined": st.joined,
        "connect_failed": len(failed),
        "failure_samples": failed[:5],
        "dropped_by_server": dropped,
        "joined_s": round(joined_s, 3) if joined_s is not None else None,
        "last_joined_s": round(last_s, 3) if last_s is not None else None,
        "quiet_s": phases.between("joined", "quiet")["wall_s"],
        "left_s": phases.between("leave", "left")["wall_s"],
        "connections_left": left,
        "bytes_received": bytes_in,
        "server_cpu_join_s": join["server_cpu_s"],
        "server_cpu_quiet_s": phases.between("joined", "quiet")["server_cpu_s"],
        "server_cpu_leave_s": phases.between("leave", "left")["server_cpu_s"],
        "server_cpu_s": phases.between("start", "left")["server_cpu_s"],
        "server_rss_before_kb": rss0,
        "server_rss_connected_kb": rss_connected,
        "server_rss_peak_kb": rss_peak,
        "server_rss_after_kb": rss_after,
        f"server_rss_after_{args.after:g}s_kb": rss_later,
        # The join phase's shares, for "what limited it".
        "wall_s": join["wall_s"],
        "server_core_share": join["server_core_share"],
        "server_kernel_share": join["server_kernel_share"],
        "loadgen_cpu_s": join["loadgen_cpu_s"],
        "loadgen_core_share": join["loadgen_core_share"],
        "cores_busy": join["cores_busy"],
        # Per client, seconds: connect started (from t0), connect to upgrade (= tcp + http:
        # connect to TCP established, then request written to 101 read), upgrade to
        # ROOM_JOINED, ROOM_JOINED (from t0): p50 / p90 / p99 / max.
        "client_s": {k: quantiles(v) for k, v in spans.items()},
        # Join phase: how late this process's 10 ms timer fired, and the kernel's counters.
        "loadgen_lag_s": lag_join,
        "kernel": kernel_join,
        "phases": {
            "join": join,
            "quiet": phases.between("joined", "quiet"),
            "leave": phases.between("leave", "left"),
        },
    }
    out["zero_loss"] = st.joined == args.clients and not failed and dropped == 0 and left == 0
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="server port on 127.0.0.1")
    parser.add_argument("--path", default="/ws")
    parser.add_argument("--server-pid", type=int, default=0, help="for CPU, RSS and fds")
    parser.add_argument(
        "--stats-url", default="", help="fastchat's /api/v1/stats (connections left)"
    )
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200, help="clients connecting at once")
    parser.add_argument("--room", default="storm")
    parser.add_argument(
        "--quiet", type=float, default=0.5, help="seconds without a byte before leaving"
    )
    parser.add_argument(
        "--after", type=float, default=1.0, help="a last RSS sample this long after all left"
    )
    parser.add_argument(
        "--history", type=int, default=0, help="messages stored in the room before the storm"
    )
    parser.add_argument(
        "--resume",
        type=int,
        default=None,
        metavar="K",
        help="each client rejoins with last_id, having missed 0 to K of the newest messages",
    )
    parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between pongs")
    parser.add_argument("--timeout", type=float, default=60.0, help="bound on each phase, s")
    parser.add_argument("--label", default="", help="free text copied into the JSON")
    args = parser.parse_args(argv)
    if args.resume is not None and args.history <= args.resume:
        parser.error("--resume K needs a --history of more than K messages")
    raise_fd_limit(args.clients + 64)
    import uvloop

    started = time.time()
    return report("storm", args, started, uvloop.run(storm(args)))


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
    sys.exit(0)
