"""End-to-end load generator: multi-process picows clients against one server on 127.0.0.1.

Scenarios (each prints one JSON object on stdout; progress goes to stderr):

* `fanout`: N clients in one room, a few of them senders keeping a window of messages in
  flight (a sender's own copy of the broadcast frees a slot); counts deliveries/s.
* `ingest`: M rooms with one client each, each sending pipelined messages that come back
  to it alone; counts msgs/s.
* `paced`: N members in one room, one message every `--interval-ms` from a sender in its own
  process; reports latency p50/p99/max from send to receipt over every delivery. The sender
  starts `--warmup-ms` early at the same pace: after the setup's quiet spell, each member's
  TCP connection ACKs its next 16 segments at once (quick-ACK mode, re-entered after any
  idle spell longer than the retransmission timeout), and on loopback those ACKs are
  processed inside the server's `send()`, so the first ~15 messages took 8-15 ms instead of
  5. The warm-up's messages are checked for loss and order like the rest, but neither timed
  nor counted in the rate, and CPU time is sampled from the end of the warm-up. Once joined,
  the members are read by `bench/_recv.pyx`'s Stamper (`--receiver stamp`): recvmsg(2) with
  the kernel's receive timestamps, so each copy is also timed to its arrival in the
  member's socket (`latency_at_socket_ms`), the figure without this generator's own queue.
* `unpipelined`: N clients in M rooms of 1-2 (the first M clients one per room, the rest
  second members), each with one message in flight: one frame per write, the next sent when
  its own echo is back. No warm-up and no settle: each client starts sending as soon as its
  ROOM_JOINED arrives, and the window (server CPU included) opens before the joins. A
  member owes its room-mate's messages from the first one it saw: the mate's sequence
  numbers must then follow one by one up to its last. With `--comments`, the same through
  posts' live comments: each client views a post (JOIN_POST) and comments on it
  (POST_COMMENT); the posts are made first through fastchat's API (`--posts-url`).
* `idle`: N connections that only connect; reports the server's RSS delta per connection.

The join storm and REST under wrk have modules of their own (`bench.storm`, `bench.rest`).

Every scenario counts every delivery and every loss: each member must receive every message
its room committed during the run, exactly once, in id order (expected vs received per
client), and it samples the server's CPU time (utime + stime from /proc/PID/stat) before and
after, so it can report work per server CPU-second. The run is bounded in time and in count and
only ever connects to 127.0.0.1.

    python -m bench.loadgen fanout --port 8081 --server-pid 1234 --clients 1000 --duration 5

Clock: latency is `time.monotonic_ns()` at receipt minus the `time.monotonic_ns()` the sender
embedded in the text; CLOCK_MONOTONIC is one system-wide clock on Linux, so the two may come
from different worker processes.

Cost notes (why the clients look the way they do): a sender tops up its window once per
socket read, all frames in one `write()`; the frames carry an all-zero masking key (RFC 6455
requires a key, not a random one; the server still unmasks), so they are built with one
concatenation instead of one masked `send()` syscall each. Plain receivers never decode JSON:
they check a byte prefix and read the id at a fixed offset, which is enough to verify
exactly-once and in-order delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import sys
import time
import urllib.request
from array import array
from typing import Any

HOST = "127.0.0.1"  # never anything else: this tool only loads the local machine

# Both servers encode the tag first and the id second; receivers read the id at this offset.
CHAT_PREFIX = b'{"type":"CHAT_MESSAGE","id":'
ID_AT = len(CHAT_PREFIX)
JOINED_PREFIX = b'{"type":"ROOM_JOINED"'
# `unpipelined --comments`: the same shape through a post's live comments.
COMMENT_PREFIX = b'{"type":"POST_COMMENT","id":'
POST_JOINED_PREFIX = b'{"type":"POST_JOINED"'
# The chat text (`chat_payload`) follows this key; the timed receivers slice it out.
MESSAGE_KEY = b'"message":"'
MESSAGE_AT = len(MESSAGE_KEY)
ERROR_PREFIX = b'{"type":"ERROR"'


# ---------------------------------------------------------------------------------------------
# Server-side probes (/proc)
# ---------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process `pid`, all threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_rss_kb(pid: int) -> int:
    return proc_status_kb(pid, "VmRSS")


def proc_status_kb(pid: int, field: str) -> int:
    """A kB figure of /proc/PID/status: VmRSS, VmHWM (peak RSS), ..."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cores_busy() -> dict[str, tuple[int, int, int]]:
    """Per-core (busy, irq + softirq, total) jiffies from /proc/stat.

    Busy includes other tenants' work (the machine is shared): a core busier than the
    processes pinned to it says someone else was running there. The irq share is mostly the
    loopback TCP receive path that the servers' writes trigger.
    """
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                nums = [int(v) for v in vals]
                idle = nums[3] + nums[4]
                total = sum(nums[:8])
                out[name] = (total - idle, nums[5] + nums[6], total)
    return out


def busy_share(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> dict:
    share = {}
    for name, (b1, i1, t1) in after.items():
        b0, i0, t0 = before.get(name, (0, 0, 0))
        if t1 > t0:
            share[name] = round((b1 - b0) / (t1 - t0), 3)
            share[name + "_irq"] = round((i1 - i0) / (t1 - t0), 3)
    return share


def server_cpu(cpu0: tuple[float, float], cpu1: tuple[float, float], wall: float) -> dict[str, Any]:
    """The server's CPU over a window (two `proc_cpu` samples `wall` seconds apart)."""
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    return {
        "server_cpu_s": round(user + system, 3),
        "server_user_s": round(user, 3),
        "server_sys_s": round(system, 3),
        "server_core_share": round((user + system) / wall, 3) if wall else None,
        "server_kernel_share": round(system / (user + system), 3) if user + system else None,
    }


def report(scenario: str, args: argparse.Namespace, started: float, result: Any) -> dict[str, Any]:
    """The JSON object a load tool prints (`bench.run` reads it)."""
    params = {k: v for k, v in vars(args).items() if k != "scenario"}
    return {
        "scenario": scenario,
        "label": args.label,
        "started": started,
        "params": params,
        "result": result,
    }


def server_stats(url: str) -> dict[str, Any] | None:
    """fastchat's own counters (GET /api/v1/stats), to see coalescing from the inside."""
    import urllib.request

    if not url:
        return None
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.load(resp))
    except (OSError, ValueError):
        return None


def stats_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    if not before or not after:
        return {}
    out: dict[str, Any] = {}
    for key in (
        "messages_received",
        "comments_received",
        "deliveries",
        "socket_writes",
        "slow_consumers_dropped",
    ):
        if isinstance(after.get(key), int) and isinstance(before.get(key), int):
            out[key] = after[key] - before[key]
    b, a = before.get("store") or {}, after.get("store") or {}
    for key in ("batches", "rows", "failed_batches", "thread_batches"):
        if isinstance(a.get(key), int) and isinstance(b.get(key), int):
            out["store_" + key] = a[key] - b[key]
    hub = hub_flush_delta(before.get("hub_flush"), after.get("hub_flush"))
    if hub:
        out["hub_flush"] = hub
    if out.get("socket_writes"):
        out["frames_per_write"] = round(out.get("deliveries", 0) / out["socket_writes"], 2)
    if out.get("store_batches"):
        out["rows_per_commit"] = round(out.get("store_rows", 0) / out["store_batches"], 1)
    return out


def hub_flush_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The hub's flush timing over the window (fastchat's `hub_flush` stats): how long its
    flushes took, and each flush's wait, from its oldest frame queued (the publish) to the end
    of the flush that wrote it: the server's own share of a delivery's latency, after the
    commit. Percentiles and max come from the histogram (bucket upper bounds, ~9 % apart)."""
    if not before or not after:
        return {}
    n = after["flushes"] - before["flushes"]
    if n <= 0:
        return {"flushes": 0}
    hist: dict[int, int] = {int(b): int(c) for b, c in after["wait_histogram"]}
    for b, c in before["wait_histogram"]:
        hist[int(b)] = hist.get(int(b), 0) - int(c)
    bounds = sorted(b for b, c in hist.items() if c > 0)

    def at(q: float) -> float:
        need, seen = q * n, 0
        for b in bounds:
            seen += hist[b]
            if seen >= need:
                return round(b / 1e6, 3)
        return round(bounds[-1] / 1e6, 3) if bounds else 0.0

    return {
        "flushes": n,
        "flush_mean_ms": round((after["flush_ns_sum"] - before["flush_ns_sum"]) / n / 1e6, 4),
        "flush_max_ms_since_start": round(after["flush_ns_max"] / 1e6, 3),
        "wait_mean_ms": round((after["wait_ns_sum"] - before["wait_ns_sum"]) / n / 1e6, 4),
        "wait_p50_ms": at(0.5),
        "wait_p99_ms": at(0.99),
        "wait_max_ms": round(bounds[-1] / 1e6, 3) if bounds else 0.0,
        "wait_max_ms_since_start": round(after["wait_ns_max"] / 1e6, 3),
    }


# ---------------------------------------------------------------------------------------------
# Frames and messages (client side)
# ---------------------------------------------------------------------------------------------


def client_frame(payload: bytes) -> bytes:
    """A masked FIN+TEXT client frame with an all-zero masking key (payload unchanged)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126, n >> 8, n & 0xFF))
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def chat_payload(
    room: str, user: str, seq: int, pad: str, client_ids: bool = False, comments: bool = False
) -> bytes:
    # Text: "<seq> <send monotonic ns> <padding>" (names and padding are plain ASCII). With
    # `client_ids`, a client_id as fastchat's own clients send with every message (for the
    # server to store a retry once): 32 random hex digits, as the JS client's
    # crypto.randomUUID() without its dashes and the Python client's uuid4().hex. With
    # `comments`, a POST_COMMENT to post `room` (its id) instead.
    cid = f',"client_id":"{os.urandom(16).hex()}"' if client_ids else ""
    kind, scope, text = (
        ("POST_COMMENT", "post_id", "comment") if comments else ("CHAT_MESSAGE", "room", "message")
    )
    return (
        f'{{"type":"{kind}","{scope}":"{room}","user":"{user}",'
        f'"{text}":"{seq} {time.monotonic_ns()} {pad}"{cid}}}'
    ).encode()


def join_payload(room: str, user: str) -> bytes:
    return f'{{"type":"JOIN_ROOM","room":"{room}","user":"{user}"}}'.encode()


def join_post_payload(post: str, user: str) -> bytes:
    return f'{{"type":"JOIN_POST","post_id":"{post}"}}'.encode()


def post_json(url: str, doc: dict[str, Any]) -> Any:
    """POST `doc` as JSON to fastchat's REST API; the 201's document."""
    req = urllib.request.Request(
        url, data=json.dumps(doc).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 201:
            raise SystemExit(f"POST {url} answered {resp.status}")
        return json.loads(resp.read())


def create_posts(base_url: str, n: int) -> list[str]:
    """`n` posts created through fastchat's REST API (`base_url`: http://127.0.0.1:PORT);
    their ids. Without an API (the baseline), posts 1..n are taken as given."""
    if not base_url:
        return [str(i + 1) for i in range(n)]
    doc = {"content": "load test", "author": "loadgen"}
    return [
        str(post_json(f"{base_url}/api/v1/posts/", {**doc, "title": f"post {i}"})["id"])
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# Worker process: a share of the clients on its own uvloop
# ---------------------------------------------------------------------------------------------


def worker_main(cmd: Any, conn: Any, wid: int, spec: dict[str, Any]) -> None:
    # Imported here: the coordinator itself needs none of them.
    import uvloop

    try:
        uvloop.run(_worker(cmd, conn, wid, spec))
    except Exception as exc:  # report instead of hanging the coordinator
        with contextlib.suppress(OSError):
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        raise


async def _worker(cmd: Any, conn: Any, wid: int, spec: dict[str, Any]) -> None:
    # Two one-way pipes: `cmd` is watched by the loop (so non-blocking), `conn` carries results
    # back and stays blocking (a result with latency samples is megabytes).
    import msgspec
    from picows import WSListener, WSMsgType, ws_connect

    loop = asyncio.get_running_loop()
    # Watchdog: a worker never outlives its budget, whatever the coordinator does.
    loop.call_later(spec["max_lifetime"], os._exit, 3)
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    def on_pipe() -> None:
        # The loop made the pipe non-blocking, and a command larger than the pipe's buffer
        # (`unpipelined`'s "expect" names every sender) arrives in parts: recv() then raised
        # BlockingIOError mid-message. Blocking while a message is read waits for its rest.
        os.set_blocking(cmd.fileno(), True)
        try:
            while cmd.poll():
                inbox.put_nowait(cmd.recv())
        except BaseException:  # the coordinator is gone, or worse: never spin on it
            os._exit(4)
        finally:
            os.set_blocking(cmd.fileno(), False)

    loop.add_reader(cmd.fileno(), on_pipe)

    class Chat(msgspec.Struct):
        id: int
        user: str
        message: str

    class Comment(msgspec.Struct, rename={"message": "comment"}):
        id: int
        user: str
        message: str

    # `--comments` (unpipelined only): posts' live comments instead of rooms' messages.
    comments = spec["comments"]
    decode_chat = msgspec.json.Decoder(Comment if comments else Chat).decode
    item_prefix = COMMENT_PREFIX if comments else CHAT_PREFIX
    joined_prefix = POST_JOINED_PREFIX if comments else JOINED_PREFIX
    join_of = join_post_payload if comments else join_payload
    pad = "x" * spec["pad"]
    ids = spec["client_ids"]
    state = {"t_end": 0, "max_msgs": spec["max_msgs"]}
    monotonic_ns = time.monotonic_ns
    TEXT = WSMsgType.TEXT
    error_samples: list[str] = []

    class Client(WSListener):  # type: ignore[misc]
        """Counts CHAT_MESSAGE frames and checks their ids rise (exactly once, in order)."""

        def __init__(self, room: str, user: str) -> None:
            super().__init__()
            self.room = room
            self.user = user
            self.transport: Any = None
            self.joined: asyncio.Future[None] | None = None
            self.n = 0
            self.last_id = 0
            self.disorder = 0
            self.errors = 0
            self.frames = 0  # every frame, before `go` too (to see when setup traffic stops)
            self.disconnected = False

        def on_ws_connected(self, transport: Any) -> None:
            self.transport = transport

        def on_ws_disconnected(self, transport: Any) -> None:
            self.disconnected = True
            if self.joined is not None and not self.joined.done():
                self.joined.set_exception(ConnectionError("disconnected before ROOM_JOINED"))

        def other(self, p: bytes) -> None:
            if p.startswith(joined_prefix):
                if self.joined is not None and not self.joined.done():
                    self.joined.set_result(None)
            elif p.startswith(ERROR_PREFIX):
                self.errors += 1
                if len(error_samples) < 5:
                    error_samples.append(f"{self.user}: {p[:200].decode(errors='replace')}")

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.frames += 1
            if frame.msg_type is not TEXT:
                return
            p = frame.get_payload_as_bytes()
            if p.startswith(CHAT_PREFIX):
                i = int(p[ID_AT : p.index(b",", ID_AT)])
                if i <= self.last_id:
                    self.disorder += 1
                self.last_id = i
                self.n += 1
            else:
                self.other(p)

    class Sender(Client):
        """A member that also sends, keeping `window` of its own messages in flight."""

        def __init__(self, room: str, user: str, window: int) -> None:
            super().__init__(room, user)
            self.window = window
            self.sent = 0
            self.acked = 0
            self.bad_echo = 0
            self.running = False
            self.warmup = 0  # paced: messages sent before the measured window
            self.lat = array("q")

        def top_up(self) -> None:
            if not self.running:
                return
            want = self.window - (self.sent - self.acked)
            if want <= 0:
                return
            if monotonic_ns() >= state["t_end"]:
                self.running = False
                return
            want = min(want, state["max_msgs"] - self.sent)
            if want <= 0:
                self.running = False
                return
            room, user, seq = self.room, self.user, self.sent
            frames = [
                client_frame(chat_payload(room, user, seq + k, pad, ids, comments))
                for k in range(want)
            ]
            self.sent += want
            self.transport.underlying_transport.write(b"".join(frames))

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.frames += 1
            if frame.msg_type is TEXT:
                now = monotonic_ns()
                p = frame.get_payload_as_bytes()
                if p.startswith(item_prefix):
                    msg = decode_chat(p)
                    if msg.id <= self.last_id:
                        self.disorder += 1
                    self.last_id = msg.id
                    self.n += 1
                    if msg.user == self.user:
                        seq, sent_ns, _ = msg.message.split(" ", 2)
                        if int(seq) != self.acked:
                            self.bad_echo += 1
                        self.acked += 1
                        self.lat.append(now - int(sent_ns))
                    else:
                        self.peer(msg)
                else:
                    self.other(p)
            if frame.last_in_buffer:
                self.top_up()

        def peer(self, msg: Any) -> None:
            """Another sender's message (counted in `n`; `Pinger` also checks its order)."""

        def due(self, peers: list[tuple[str, int]]) -> int:
            """What this member owes (`unpipelined`): its own messages, and each room-mate's
            from the first one it saw (the mate may have sent before this one joined)."""
            return self.sent

    class Pinger(Sender):
        """`unpipelined`: one message in flight (one frame per write), from its join on."""

        def __init__(self, room: str, user: str) -> None:
            super().__init__(room, user, 1)
            self.peer_first: dict[str, int] = {}
            self.peer_next: dict[str, int] = {}

        def peer(self, msg: Any) -> None:
            seq = int(msg.message.partition(" ")[0])
            want = self.peer_next.get(msg.user)
            if want is None:
                self.peer_first[msg.user] = seq
            elif seq != want:  # a gap or a repeat in the mate's sequence
                self.disorder += 1
            self.peer_next[msg.user] = seq + 1

        def due(self, peers: list[tuple[str, int]]) -> int:
            # A mate never heard from owes everything it sent: counted as lost.
            return self.sent + sum(
                n - self.peer_first.get(u, 0) for u, n in peers if u != self.user
            )

    class PyTimed(Client):
        """A member that records the latency of every message it receives, in Python
        (`--receiver python`; the others use `CTimed` from bench/_recv.pyx, the same checks
        in C). No JSON decode, no str.split: the id is at ID_AT, the send time follows
        `"message":"` and the sequence number (`chat_payload`), sliced from one bytes copy.
        Latencies go into an array preallocated at `go`. `frames` counts non-chat frames
        only; `quiet()` adds `n`.
        """

        def __init__(self, room: str, user: str) -> None:
            super().__init__(room, user)
            self.lat = array("q")
            self.timed = 0
            self.seq_from = 0

        def prepare(self, capacity: int, seq_from: int) -> None:
            self.lat = array("q", bytes(8 * capacity))
            self.timed = 0
            self.seq_from = seq_from

        def finish(self) -> None:
            del self.lat[self.timed :]

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            now = monotonic_ns()
            if frame.msg_type is not TEXT:
                self.frames += 1
                return
            p = frame.get_payload_as_bytes()
            if p.startswith(CHAT_PREFIX):
                j = p.index(44, ID_AT)  # the "," after the id
                i = int(p[ID_AT:j])
                if i <= self.last_id:
                    self.disorder += 1
                self.last_id = i
                # Past "<seq> " to the send time, which ends at the next space.
                q = p.index(MESSAGE_KEY, j) + MESSAGE_AT
                t = p.index(32, q) + 1
                sent = int(p[t : p.index(32, t)])
                self.n += 1
                if int(p[q : t - 1]) < self.seq_from:
                    return  # a warm-up message: counted, not timed
                k = self.timed
                try:
                    self.lat[k] = now - sent
                except IndexError:  # more than expected: still counted (as extra)
                    self.lat.append(now - sent)
                self.timed = k + 1
            else:
                self.frames += 1
                self.other(p)

    Timed: type[Client]
    stamper: Any = None  # `--receiver stamp`: reads the timed members from `go` on
    if spec["receiver"] in ("c", "stamp"):
        try:
            from bench._recv import CTimed  # type: ignore[import-not-found]
        except ImportError as exc:
            raise SystemExit(
                "bench/_recv.pyx is not built: `make bench` builds it "
                "(or: .venv/bin/cythonize -i bench/_recv.pyx), or use --receiver python"
            ) from exc

        class CTimedClient(CTimed, Client):  # type: ignore[misc]
            """`Client` with the frame path of bench/_recv.pyx (CTimed's fields win)."""

            def __init__(self, room: str, user: str) -> None:
                Client.__init__(self, room, user)
                self.lat = array("q")

            def prepare(self, capacity: int, seq_from: int) -> None:
                socket_lat = array("q", bytes(8 * capacity)) if stamper is not None else None
                self.bind(array("q", bytes(8 * capacity)), seq_from, socket_lat)

            def finish(self) -> None:
                self.unbind()

        Timed = CTimedClient
        if spec["receiver"] == "stamp":
            from bench._recv import Stamper

            stamper = Stamper()
            stamper.pong = lambda c, payload: c.transport.send_pong(payload)
    else:
        Timed = PyTimed

    def cpu() -> tuple[float, float]:
        t = os.times()
        return t.user, t.system

    async def until(t_end: int) -> None:
        await asyncio.sleep(max(0.0, (t_end - monotonic_ns()) / 1e9))
        await asyncio.sleep(0.01)  # let any top-up in progress finish (none can pass t_end)

    def report_sent(senders: list[Sender]) -> None:
        """Stop the senders and tell what each room and each sender sent."""
        for c in senders:
            c.running = False
        sent: dict[str, int] = {}
        timed: dict[str, int] = {}
        for c in senders:
            sent[c.room] = sent.get(c.room, 0) + c.sent
            timed[c.room] = timed.get(c.room, 0) + c.sent - c.warmup
        conn.send(("sent", sent, timed, [(c.room, c.user, c.sent) for c in senders]))

    # ---------------------------------------------------------------- connect and join
    url = spec["url"]
    clients: list[Client] = []
    failed: list[str] = []
    sem = asyncio.Semaphore(spec["connect_concurrency"])

    secret = spec.get("token_secret")

    def url_of(c: Client) -> str:
        if not secret:
            return url
        import jwt  # only with --token-secret (fastchat's dependency)

        claims = {"sub": c.user, "name": c.user, "exp": int(time.time()) + 3600}
        return f"{url}{'&' if '?' in url else '?'}token={jwt.encode(claims, secret)}"

    async def connect_one(c: Client, into: list[tuple[int, Client]], g: int) -> None:
        async with sem:
            try:
                await ws_connect(
                    lambda: c,
                    url_of(c),
                    read_buffer_init_size=spec["read_buffer"],
                    websocket_handshake_timeout=30,
                    use_aiofastnet=False,
                    max_frame_size=1 << 24,
                )
            except Exception as exc:  # counted, not fatal
                failed.append(f"{type(exc).__name__}: {exc}")
                return
            into.append((g, c))

    async def join_one(c: Client, at_ns: int) -> None:
        delay = at_ns - monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        try:
            c.joined = loop.create_future()
            c.transport.send(TEXT, join_of(c.room, c.user))
            await asyncio.wait_for(c.joined, 30)
        except Exception as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            return
        clients.append(c)
        if eager and isinstance(c, Sender):  # no warm-up: from the join on
            c.running = True
            c.top_up()

    connected: list[tuple[int, Client]] = []
    kinds = {"send": Sender, "paced": Sender, "timed": Timed, "ping": Pinger}
    made: list[tuple[int, Client]] = []
    for role, room, user, g in spec["clients"]:
        if role == "send":
            made.append((g, Sender(room, user, spec["window"])))
        elif role == "paced":
            made.append((g, Sender(room, user, 0)))
        else:
            made.append((g, kinds.get(role, Client)(room, user)))
    await asyncio.gather(*(connect_one(c, connected, g) for g, c in made))
    connected.sort(key=lambda gc: gc[0])
    conn.send(("connected", len(connected)))
    op, t0, spacing, eager_end = await inbox.get()
    assert op == "join", op
    # `unpipelined`: each sender starts at its own join and stops at eager_end; no "go".
    eager = eager_end > 0
    state["t_end"] = eager_end
    cpu0 = cpu()
    if spec["join"]:
        # Member i joins at t0 + i * spacing, so the server's room order (the order it writes
        # the members in) follows the global index across worker processes.
        await asyncio.gather(*(join_one(c, t0 + g * spacing) for g, c in connected))
    else:
        clients.extend(c for _, c in connected)
    # Keep the global order (it is the server's write order when joins were spaced).
    order = {id(c): g for g, c in connected}
    clients.sort(key=lambda c: order[id(c)])
    conn.send(("ready", len(clients), failed[:5], len(failed)))
    if eager:
        await until(eager_end)
        report_sent([c for c in clients if isinstance(c, Sender)])

    async def quiet(gap: float, limit: float) -> None:
        """Wait until no frame has arrived for `gap` seconds (setup traffic drained)."""
        deadline = loop.time() + limit
        last = -1
        still_since = loop.time()
        while loop.time() < deadline:
            total = sum(c.frames + c.n for c in clients)
            if total != last:
                last = total
                still_since = loop.time()
            elif loop.time() - still_since >= gap:
                return
            await asyncio.sleep(0.05)

    # ---------------------------------------------------------------- commands
    while True:
        op, *args = await inbox.get()
        if op == "settle":
            await quiet(*args)
            conn.send(("settled",))
        elif op == "go":
            # Paced messages go from t_start; the measured window is [t_go, t_end): latencies,
            # and CPU time, from t_go on (t_start < t_go: a warm-up at the same pace).
            t_start, t_go, t_end = args
            state["t_end"] = t_end
            at_go: list[tuple[float, float]] = []  # this process's CPU time at t_go
            loop.call_later(
                max(0.0, (t_go - monotonic_ns()) / 1e9), lambda box=at_go: box.append(cpu())
            )
            interval = max(1, int(spec["interval_ms"] * 1e6))
            # Room for every message the pacer can send (plus a few): no growth while timed.
            capacity = min((t_end - t_go) // interval + 16, spec["max_msgs"] + 16)
            # The pacer's first timed message: its sequence numbers count from t_start.
            seq_from = -(-(t_go - t_start) // interval)
            for c in clients:
                c.n = 0
                c.disorder = 0
                if isinstance(c, Timed):
                    c.prepare(capacity, seq_from)
            timed_here = [c for c in clients if isinstance(c, Timed)]
            if stamper is not None and timed_here:
                # picows has read the setup's frames; from here on the stamper reads.
                for c in timed_here:
                    sock = c.transport.underlying_transport
                    sock.pause_reading()
                    stamper.add(c, sock.get_extra_info("socket").fileno())
                loop.add_reader(stamper.fileno(), stamper.drain)
            await asyncio.sleep(max(0.0, (t_start - monotonic_ns()) / 1e9))
            senders = [c for c in clients if isinstance(c, Sender)]
            paced = [c for c in senders if c.window == 0]
            for c in senders:
                if c.window:
                    c.running = True
                    c.top_up()
            if paced:
                await _paced(paced[0], spec, t_start, t_go, t_end, pad)
            else:
                await until(t_end)
            report_sent(senders)
            cpu0 = at_go[0]  # t_go is past: the run lasts until t_end
        elif op == "expect":
            (expected, timed, drain, peers) = args
            # Per client: its room's messages, or (`unpipelined`, `peers`: room -> [(user,
            # sent)]) what it owes from its join on.
            due = [
                c.due(peers.get(c.room, []))
                if peers and isinstance(c, Sender)
                else expected.get(c.room, 0)
                for c in clients
            ]
            deadline = monotonic_ns() + int(drain * 1e9)
            while True:
                now = monotonic_ns()
                if all(c.n >= d for c, d in zip(clients, due, strict=True)) or now >= deadline:
                    break
                await asyncio.sleep(0.002)
            t_done = now
            cpu1 = cpu()
            lat = array("q")
            socket_lat = array("q")
            echo_lat = array("q")
            for c in clients:
                if isinstance(c, Timed):
                    c.finish()
                    lat.extend(c.lat)
                    if stamper is not None:
                        socket_lat.extend(c.lat_socket)
                elif isinstance(c, Sender) and c.window:
                    echo_lat.extend(c.lat)
            # Per message, across this worker's members: when the first and the last copy
            # arrived (members that got every message, in order, so index = message).
            whole = [
                c.lat
                for c in clients
                if isinstance(c, Timed) and c.disorder == 0 and len(c.lat) == timed.get(c.room, 0)
            ]
            firsts = array("q", map(min, zip(*whole, strict=True))) if whole else array("q")
            lasts = array("q", map(max, zip(*whole, strict=True))) if whole else array("q")
            per_client_lost = [max(0, d - c.n) for c, d in zip(clients, due, strict=True)]
            conn.send(
                (
                    "result",
                    {
                        "t_done": t_done,
                        "received": sum(c.n for c in clients),
                        "expected": sum(due),
                        "lost": sum(per_client_lost),
                        "clients_short": sum(1 for x in per_client_lost if x),
                        "extra": sum(max(0, c.n - d) for c, d in zip(clients, due, strict=True)),
                        "disorder": sum(c.disorder for c in clients),
                        "bad_echo": sum(getattr(c, "bad_echo", 0) for c in clients),
                        "errors": sum(c.errors for c in clients),
                        "error_samples": error_samples,
                        "disconnected": sum(1 for c in clients if c.disconnected),
                        "cpu_s": cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1],
                        "user_s": cpu1[0] - cpu0[0],
                        "lat": lat.tobytes(),
                        "socket_lat": socket_lat.tobytes(),
                        "unstamped": stamper.unstamped if stamper is not None else 0,
                        "echo_lat": echo_lat.tobytes(),
                        "firsts": firsts.tobytes(),
                        "lasts": lasts.tobytes(),
                        "late_max_ns": max(
                            (getattr(c, "late_max_ns", 0) for c in clients), default=0
                        ),
                    },
                )
            )
        elif op == "count":  # idle: how many are still connected
            conn.send(("count", sum(1 for c in clients if not c.disconnected)))
        elif op == "exit":
            for c in clients:
                if c.transport is not None and not c.disconnected:
                    c.transport.disconnect(graceful=False)
            await asyncio.sleep(0)
            return


async def _paced(
    c: Any, spec: dict[str, Any], t_start: int, t_go: int, t_end: int, pad: str
) -> None:
    """One message every interval on an absolute schedule (lateness does not accumulate),
    from t_start; those due before t_go are the warm-up (`c.warmup` of them)."""
    from picows import WSMsgType

    interval = int(spec["interval_ms"] * 1e6)
    transport = c.transport
    seq = 0
    late_max = 0
    c.warmup = 0
    while seq < spec["max_msgs"]:
        due = t_start + seq * interval
        if due >= t_end:
            break
        if due < t_go:
            c.warmup += 1
        wait = due - time.monotonic_ns()
        if wait > 0:
            await asyncio.sleep(wait / 1e9)
        else:
            late_max = max(late_max, -wait)
        transport.send(WSMsgType.TEXT, chat_payload(c.room, c.user, seq, pad, spec["client_ids"]))
        seq += 1
        c.sent = seq
    c.late_max_ns = late_max


# ---------------------------------------------------------------------------------------------
# Coordinator
# ---------------------------------------------------------------------------------------------


class Coordinator:
    def __init__(self, args: argparse.Namespace, groups: list[list[Spec]], join: bool) -> None:
        self.args = args
        self.pid = args.server_pid
        ctx = mp.get_context("spawn")
        budget = args.setup_timeout + args.duration + args.drain + 60
        self.pipes: list[Any] = []  # results, worker -> coordinator
        self.cmds: list[Any] = []  # commands, coordinator -> worker
        self.procs: list[Any] = []
        for wid, clients in enumerate(groups):
            spec = {
                "url": f"ws://{HOST}:{args.port}{args.path}",
                "token_secret": getattr(args, "token_secret", None),
                "clients": clients,
                "join": join,
                "window": getattr(args, "window", 0),
                "pad": args.pad,
                "client_ids": getattr(args, "client_ids", False),
                "comments": getattr(args, "comments", False),
                "max_msgs": args.max_msgs,
                "interval_ms": getattr(args, "interval_ms", 10.0),
                "receiver": getattr(args, "receiver", "stamp"),
                "read_buffer": args.read_buffer,
                "connect_concurrency": args.connect_concurrency,
                "max_lifetime": budget,
            }
            cmd_r, cmd_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            p = ctx.Process(target=worker_main, args=(cmd_r, res_w, wid, spec), daemon=True)
            self.pipes.append(res_r)
            self.cmds.append(cmd_w)
            self.procs.append((p, (cmd_r, res_w)))

    def start(self) -> None:
        for p, child_ends in self.procs:
            p.start()
            for end in child_ends:  # so that a dead worker reads as EOF here
                end.close()

    def gather(self, expect: str, timeout: float) -> list[Any]:
        out = []
        deadline = time.monotonic() + timeout
        for pipe, (proc, _) in zip(self.pipes, self.procs, strict=True):
            left = deadline - time.monotonic()
            if left <= 0 or not pipe.poll(left):
                raise TimeoutError(f"workers did not answer {expect!r} within {timeout:.0f} s")
            try:
                msg = pipe.recv()
            except EOFError:
                proc.join(1)
                raise RuntimeError(
                    f"a worker died before answering {expect!r} (exit code {proc.exitcode}: "
                    "3 is its watchdog, 4 a broken command pipe, negative a signal)"
                ) from None
            if msg[0] == "failed":
                raise RuntimeError(f"a worker failed: {msg[1]}")
            if msg[0] != expect:
                raise RuntimeError(f"expected {expect!r} from a worker, got {msg[0]!r}")
            out.append(msg[1:])
        return out

    def tell(self, *msg: Any) -> None:
        for pipe in self.cmds:
            pipe.send(msg)

    def stop(self) -> None:
        for pipe in self.cmds:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for p, _ in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(2)

    # --------------------------------------------------------------- one measured run
    def setup(self) -> dict[str, Any]:
        self.start()
        self.gather("connected", self.args.setup_timeout)
        spacing = int(getattr(self.args, "join_spacing_ms", 0.0) * 1e6)
        self.tell("join", time.monotonic_ns() + 100_000_000, spacing, 0)
        return self.joined(self.gather("ready", self.args.setup_timeout))

    def joined(self, ready: list[Any]) -> dict[str, Any]:
        connected = sum(r[0] for r in ready)
        failures = sum(r[2] for r in ready)
        samples = [s for r in ready for s in r[1]]
        log(f"connected {connected} clients, {failures} failed {samples[:2]}")
        return {"connected": connected, "connect_failed": failures, "failure_samples": samples}

    def measure(self) -> dict[str, Any]:
        args = self.args
        self.tell("settle", 0.3, 20.0)
        self.gather("settled", 30.0)
        warmup = int(getattr(args, "warmup_ms", 0.0) * 1e6)
        # The server's counters are read before the warm-up, so they include it: an HTTP
        # request to the server inside the window delayed the next few messages (measured).
        stats0 = server_stats(args.stats_url)
        t_start = time.monotonic_ns() + 50_000_000
        t_go = t_start + warmup
        t_end = t_go + int(args.duration * 1e9)
        self.tell("go", t_start, t_go, t_end)
        # The window opens at t_go (= t_start without a warm-up): CPU time from then on.
        time.sleep(max(0.0, (t_go - time.monotonic_ns()) / 1e9))
        cpu0 = proc_cpu(self.pid) if self.pid else None
        busy0 = cores_busy()
        sent_parts = self.gather("sent", args.duration + warmup / 1e9 + 30)
        return self.collect(sent_parts, t_go, cpu0, busy0, stats0, peers=False)

    def eager(self) -> dict[str, Any]:
        """Setup and run in one (`unpipelined`): each client sends from its own ROOM_JOINED
        until t0 + duration, with no settle and no warm-up; the window, the server's CPU time
        included, opens at t0, when the joins start."""
        args = self.args
        self.start()
        self.gather("connected", args.setup_timeout)
        stats0 = server_stats(args.stats_url)
        t0 = time.monotonic_ns() + 100_000_000
        self.tell("join", t0, 0, t0 + int(args.duration * 1e9))
        time.sleep(max(0.0, (t0 - time.monotonic_ns()) / 1e9))
        cpu0 = proc_cpu(self.pid) if self.pid else None
        busy0 = cores_busy()
        out = self.joined(self.gather("ready", args.setup_timeout))
        sent_parts = self.gather("sent", args.duration + 30)
        out.update(self.collect(sent_parts, t0, cpu0, busy0, stats0, peers=True))
        return out

    def collect(
        self,
        sent_parts: list[Any],
        t_go: int,
        cpu0: tuple[float, float] | None,
        busy0: dict[str, tuple[int, int, int]],
        stats0: dict[str, Any] | None,
        peers: bool,
    ) -> dict[str, Any]:
        """Tell the workers what was sent, wait for their counts, and sum up the window.
        `peers`: each member owes its room-mates' messages from its own join on only."""
        args = self.args
        expected: dict[str, int] = {}
        timed: dict[str, int] = {}
        by_room: dict[str, list[tuple[str, int]]] = {}
        for part, part_timed, part_senders in sent_parts:
            for room, n in part.items():
                expected[room] = expected.get(room, 0) + n
            for room, n in part_timed.items():
                timed[room] = timed.get(room, 0) + n
            for room, user, n in part_senders:
                by_room.setdefault(room, []).append((user, n))
        self.tell("expect", expected, timed, args.drain, by_room if peers else None)
        results = [r[0] for r in self.gather("result", args.drain + 30)]
        cpu1 = proc_cpu(self.pid) if self.pid else None
        busy1 = cores_busy()
        stats1 = server_stats(args.stats_url)
        wall = (max(r["t_done"] for r in results) - t_go) / 1e9
        out: dict[str, Any] = {
            "messages_sent": sum(expected.values()),
            "messages_timed": sum(timed.values()),
            "received": sum(r["received"] for r in results),
            "expected": sum(r["expected"] for r in results),
            "lost": sum(r["lost"] for r in results),
            "clients_short": sum(r["clients_short"] for r in results),
            "duplicates_or_extra": sum(r["extra"] for r in results),
            "out_of_order": sum(r["disorder"] for r in results),
            "bad_echo": sum(r["bad_echo"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "error_samples": [e for r in results for e in r["error_samples"]][:5],
            "disconnected": sum(r["disconnected"] for r in results),
            "wall_s": round(wall, 4),
            "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 3),
            "loadgen_user_s": round(sum(r.get("user_s", 0.0) for r in results), 3),
        }
        out["loadgen_core_share"] = round(out["loadgen_cpu_s"] / wall, 3) if wall else None
        out["zero_loss"] = (
            out["lost"] == 0
            and out["duplicates_or_extra"] == 0
            and out["out_of_order"] == 0
            and out["bad_echo"] == 0
            and out["disconnected"] == 0
            and out["errors"] == 0
        )
        if cpu0 and cpu1:
            out.update(server_cpu(cpu0, cpu1, wall))
        out["cores_busy"] = busy_share(busy0, busy1)
        if args.stats_url:
            out["server_counters"] = stats_delta(stats0, stats1)
        lat = array("q")
        echo = array("q")
        socket_lat = array("q")
        for r in results:
            lat.frombytes(r["lat"])
            echo.frombytes(r["echo_lat"])
            socket_lat.frombytes(r["socket_lat"])
        # `--receiver stamp`: the same copies up to their arrival in the socket, by the
        # kernel's receive timestamp (a read without one, -1, is counted, not timed).
        stamped = array("q", (x for x in socket_lat if x >= 0))
        if socket_lat:
            out["unstamped_reads"] = sum(r["unstamped"] for r in results)
        if stamped:
            out["latency_at_socket_ms"] = percentiles(stamped)
        if lat:
            out["latency_ms"] = percentiles(lat)
            out["sender_late_max_ms"] = round(max(r["late_max_ns"] for r in results) / 1e6, 3)
            firsts: array | None = None
            lasts: array | None = None
            for r in results:
                f, la = array("q"), array("q")
                f.frombytes(r["firsts"])
                la.frombytes(r["lasts"])
                if not la:
                    continue
                if lasts is None or firsts is None:
                    firsts, lasts = f, la
                elif len(la) == len(lasts):
                    firsts = array("q", map(min, firsts, f))
                    lasts = array("q", map(max, lasts, la))
            if lasts and firsts:
                # Per message: first copy received, and the last (fan-out complete).
                out["per_message_first_ms"] = percentiles(firsts)
                out["per_message_last_ms"] = percentiles(lasts)
                if getattr(args, "per_message", ""):
                    with open(args.per_message, "w") as f:  # for a look at the time series
                        json.dump(
                            {
                                "t_go_ns": t_go,
                                "interval_ns": int(getattr(args, "interval_ms", 0) * 1e6),
                                "first_ns": list(firsts),
                                "last_ns": list(lasts),
                            },
                            f,
                        )
        if echo:
            out["sender_echo_latency_ms"] = percentiles(echo)
        return out


def percentiles(samples: array) -> dict[str, Any]:
    s = sorted(samples)
    n = len(s)

    def at(q: float) -> float:
        return round(s[min(n - 1, int(q * n))] / 1e6, 3)

    return {
        "n": n,
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": round(s[-1] / 1e6, 3),
    }


Spec = tuple[str, str, str, int]  # role, room, user, global index (join order)


def numbered(clients: list[tuple[str, str, str]]) -> list[Spec]:
    return [(*c, i) for i, c in enumerate(clients)]


def split(clients: list[Spec], workers: int) -> list[list[Spec]]:
    groups: list[list[Spec]] = [[] for _ in range(workers)]
    for i, c in enumerate(clients):
        groups[i % workers].append(c)
    return [g for g in groups if g]


def log(msg: str) -> None:
    print(f"[loadgen] {msg}", file=sys.stderr, flush=True)


def per_cpu(out: dict[str, Any], count: float, key: str) -> None:
    cpu_s = out.get("server_cpu_s")
    if cpu_s:
        out[key + "_per_server_cpu_s"] = round(count / cpu_s)


# --------------------------------------------------------------------------------- scenarios


def run_fanout(args: argparse.Namespace) -> dict[str, Any]:
    room = "fanout"
    senders = [("send", room, f"s{i}") for i in range(args.senders)]
    others = [("recv", room, f"u{i}") for i in range(args.clients - args.senders)]
    groups = split(numbered(senders + others), args.workers)
    co = Coordinator(args, groups, join=True)
    try:
        out = co.setup()
        out.update(co.measure())
    finally:
        co.stop()
    out["deliveries_per_s"] = round(out["received"] / out["wall_s"])
    per_cpu(out, out["received"], "deliveries")
    return out


def run_ingest(args: argparse.Namespace) -> dict[str, Any]:
    clients = [("send", f"ingest{i}", f"s{i}") for i in range(args.rooms)]
    co = Coordinator(args, split(numbered(clients), args.workers), join=True)
    try:
        out = co.setup()
        out.update(co.measure())
    finally:
        co.stop()
    out["msgs_per_s"] = round(out["received"] / out["wall_s"])
    per_cpu(out, out["received"], "msgs")
    return out


def run_unpipelined(args: argparse.Namespace) -> dict[str, Any]:
    if not args.rooms <= args.clients <= 2 * args.rooms:
        raise SystemExit("unpipelined: rooms of 1-2 need rooms <= clients <= 2 * rooms")
    # The first `rooms` clients one per room, the rest second members of the first rooms.
    if args.comments:  # rooms are posts
        posts = create_posts(args.posts_url, args.rooms)
        clients = [("ping", posts[i % args.rooms], f"p{i}") for i in range(args.clients)]
    else:
        clients = [("ping", f"ping{i % args.rooms}", f"p{i}") for i in range(args.clients)]
    co = Coordinator(args, split(numbered(clients), args.workers), join=True)
    try:
        out = co.eager()
    finally:
        co.stop()
    # Messages stored and echoed (each room-mate's copy is a delivery, not a message).
    out["msgs_per_s"] = round(out["messages_sent"] / out["wall_s"])
    out["deliveries_per_s"] = round(out["received"] / out["wall_s"])
    per_cpu(out, out["messages_sent"], "msgs")
    return out


def run_paced(args: argparse.Namespace) -> dict[str, Any]:
    room = "paced"
    # The sender has a process to itself so its schedule does not wait on receivers.
    everyone = numbered(
        [("paced", room, "pacer")] + [("timed", room, f"u{i}") for i in range(1, args.clients)]
    )
    groups = [everyone[:1]]
    members = everyone[1:]
    k = args.timed_every
    if k <= 1:
        groups += split(members, args.workers)
    else:
        # A sample of members, in a process of their own, time their copies; the rest only
        # count theirs. An experiment, not the default: reading 1,000 sockets costs this load
        # generator more per delivery than writing them costs fastchat, so with every member
        # timed the tail partly measures the load generator's own queue; but splitting the
        # receivers over more processes adds wake-ups on both sides (measured: the server's
        # CPU per message rose ~30 %). Use with --join-spacing-ms so the sample is spread
        # evenly over the server's write order.
        groups.append([m for m in members if m[3] % k == 0])
        groups += split([("recv", *m[1:]) for m in members if m[3] % k], args.workers)
    co = Coordinator(args, groups, join=True)
    try:
        out = co.setup()
        out.update(co.measure())
    finally:
        co.stop()
    # The window's deliveries: every member (the sender included) gets each timed message;
    # the warm-up's are checked for loss and order like the rest but not counted here.
    timed = out["messages_timed"] * args.clients
    out["deliveries_per_s"] = round(timed / out["wall_s"])
    out["target_deliveries_per_s"] = round(args.clients * 1000 / args.interval_ms)
    per_cpu(out, timed, "deliveries")
    return out


def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    pid = args.server_pid
    rss0 = proc_rss_kb(pid) if pid else None
    clients = [("idle", f"idle{i}", f"i{i}") for i in range(args.clients)]
    co = Coordinator(args, split(numbered(clients), args.workers), join=args.join)
    try:
        out = co.setup()
        time.sleep(args.settle)
        rss1 = proc_rss_kb(pid) if pid else None
        co.tell("count")
        alive = sum(r[0] for r in co.gather("count", 30))
    finally:
        co.stop()
    out["still_connected"] = alive
    out["lost"] = args.clients - alive
    out["zero_loss"] = alive == args.clients
    if pid:
        out["server_rss_before_kb"] = rss0
        out["server_rss_after_kb"] = rss1
        if out["connected"]:
            out["rss_per_connection_kb"] = round((rss1 - rss0) / out["connected"], 2)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="scenario", required=True)

    def common(
        p: argparse.ArgumentParser, workers: int, duration: float, spacing: float = 0.0
    ) -> None:
        p.add_argument("--port", type=int, required=True, help="server port on 127.0.0.1")
        p.add_argument("--path", default="/ws")
        p.add_argument(
            "--server-pid",
            type=int,
            default=0,
            help="server PID for CPU (/proc/PID/stat) and RSS figures",
        )
        p.add_argument("--workers", type=int, default=workers, help="client processes")
        p.add_argument("--duration", type=float, default=duration, help="seconds of sending")
        p.add_argument(
            "--drain",
            type=float,
            default=10.0,
            help="seconds to wait for outstanding deliveries before counting losses",
        )
        p.add_argument("--max-msgs", type=int, default=1_000_000, help="cap per sender")
        p.add_argument("--pad", type=int, default=48, help="characters of padding per message")
        p.add_argument(
            "--client-ids",
            action="store_true",
            help="each message carries a client_id, as fastchat's own clients send",
        )
        p.add_argument(
            "--read-buffer", type=int, default=4096, help="picows read buffer per client"
        )
        p.add_argument("--connect-concurrency", type=int, default=64)
        p.add_argument(
            "--token-secret",
            default=None,
            help="each client connects with its own token (HS256, this secret; name = its user)",
        )
        p.add_argument("--setup-timeout", type=float, default=120.0)
        p.add_argument("--label", default="", help="free text copied into the JSON")
        p.add_argument(
            "--join-spacing-ms",
            type=float,
            default=spacing,
            help="member i joins at t0 + i * this, so the server's room order is the index order",
        )
        p.add_argument(
            "--stats-url",
            default="",
            help="fastchat's http://127.0.0.1:PORT/api/v1/stats, sampled with the CPU time",
        )

    p = sub.add_parser("fanout", help="N clients in one room, a few senders")
    common(p, 1, 5.0)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--window", type=int, default=8, help="messages in flight per sender")

    p = sub.add_parser("ingest", help="M rooms, one client each, echo to sender")
    common(p, 1, 5.0)
    p.add_argument("--rooms", type=int, default=500)
    p.add_argument("--window", type=int, default=8, help="messages in flight per client")

    p = sub.add_parser(
        "unpipelined", help="N clients in M rooms of 1-2, one message in flight, no warm-up"
    )
    common(p, 1, 10.0)
    p.add_argument("--clients", type=int, default=750)
    p.add_argument("--rooms", type=int, default=500, help="at most 2 clients per room")
    p.add_argument(
        "--comments",
        action="store_true",
        help="comment on posts (JOIN_POST, POST_COMMENT) instead of chatting in rooms",
    )
    p.add_argument(
        "--posts-url",
        default="",
        help="with --comments: fastchat's http://127.0.0.1:PORT, to create the posts "
        "(without it, posts 1..rooms are taken as existing: the baseline's case)",
    )

    p = sub.add_parser("paced", help="N members, one message per interval, latency")
    common(p, 1, 10.0)
    p.add_argument("--clients", type=int, default=1000, help="members, the sender included")
    p.add_argument("--interval-ms", type=float, default=10.0)
    p.add_argument(
        "--warmup-ms",
        type=float,
        default=500.0,
        help="send at the same pace for this long before the timed window (default 500: "
        "a fresh or idle TCP connection ACKs its first 16 segments at once, which loopback "
        "charges to the server's send; see bench/RESULTS.md)",
    )
    p.add_argument(
        "--receiver",
        choices=("stamp", "c", "python"),
        default="stamp",
        help="how the timed members are read once joined: stamp (the default: bench/_recv.pyx's "
        "Stamper, recvmsg on its own epoll set, with the kernel's receive timestamps: also "
        "reports latency_at_socket_ms), c (picows on uvloop, frames parsed in C: ~1 us more "
        "of load-generator CPU a delivery) or python (picows, frames parsed in Python)",
    )
    p.add_argument(
        "--per-message",
        default="",
        metavar="FILE",
        help="write each timed message's first and last copy latency (ns, in send order) here",
    )
    p.add_argument(
        "--timed-every",
        type=int,
        default=1,
        help="time every Kth member only, in a process of its own (default 1: all members)",
    )

    p = sub.add_parser("idle", help="N idle connections, server RSS per connection")
    common(p, 2, 0.0)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--settle", type=float, default=1.0, help="seconds before sampling RSS")
    p.add_argument("--join", action="store_true", help="each connection joins its own room")

    args = parser.parse_args(argv)
    started = time.time()
    runner = {
        "fanout": run_fanout,
        "ingest": run_ingest,
        "unpipelined": run_unpipelined,
        "paced": run_paced,
        "idle": run_idle,
    }[args.scenario]
    return report(args.scenario, args, started, runner(args))


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
