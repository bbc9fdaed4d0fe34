"""A bounded soak: thousands of clients joining, chatting and leaving in churn.

    python -m bench.soak [--seconds 180] [--clients 2000] [--rooms 50]   (make soak)

Starts its own fastchat on 127.0.0.1 (temporary database), then for a fixed time keeps
`--clients` WebSocket clients connected, replacing a share of them every second; every client
sends now and then (with a client id) and must get its own copy back (the acknowledgement).
One observer per room stays connected throughout and must receive every message its room
stored. Server RSS and open file descriptors are sampled every few seconds. Reports, as JSON
and a short table: RSS over time (flat after warm-up), descriptors (back to the baseline once
everyone left), messages lost (zero). Bounded in time and count; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

from tests.conftest import free_ports

ROOT = Path(__file__).resolve().parents[1]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    def __init__(self, args: argparse.Namespace, ws_url: str, http: str) -> None:
        self.args = args
        self.ws_url = ws_url
        self.http = http
        self.rooms = [f"soak-{i}" for i in range(args.rooms)]
        self.sent = 0
        self.acked: set[str] = set()
        self.unacked: set[str] = set()
        self.connects = 0
        self.errors: dict[str, int] = {}
        self.observed: dict[str, list[int]] = {r: [] for r in self.rooms}
        self.stop = asyncio.Event()
        self.stopped_at = float("inf")
        self.all_sent: set[str] = set()

    async def observer(self, room: str, ready: asyncio.Event) -> None:
        async with websockets.connect(self.ws_url, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "JOIN_ROOM", "room": room, "user": "observer"}))
            ready.set()
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 1.0)
                except TimeoutError:
                    if self.stop.is_set() and self.draining_done():
                        return
                    continue
                event = json.loads(raw)
                if event["type"] == "CHAT_MESSAGE":
                    self.observed[room].append(event["id"])

    def draining_done(self) -> bool:
        # Every sent message answered, or a bounded wait after the stop: a message that never
        # comes back is then counted as lost, not waited for forever.
        return not self.unacked or time.monotonic() > self.stopped_at + 15

    async def client(self, n: int, lifetime: float) -> None:
        room = random.choice(self.rooms)
        user = f"u{n}"
        self.connects += 1
        try:
            async with websockets.connect(self.ws_url, max_queue=None) as ws:
                await ws.send(json.dumps({"type": "JOIN_ROOM", "room": room, "user": user}))
                deadline = time.monotonic() + lifetime
                next_send = time.monotonic() + random.uniform(0, self.args.send_every)
                pending: set[str] = set()
                while time.monotonic() < deadline and not self.stop.is_set():
                    timeout = max(0.0, min(deadline, next_send) - time.monotonic())
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout)
                        event = json.loads(raw)
                        if event["type"] == "CHAT_MESSAGE" and event.get("client_id") in pending:
                            pending.discard(event["client_id"])
                            self.unacked.discard(event["client_id"])
                            self.acked.add(event["client_id"])
                        elif event["type"] == "ERROR":
                            self.errors[event["code"]] = self.errors.get(event["code"], 0) + 1
                    except TimeoutError:
                        pass
                    if time.monotonic() >= next_send and time.monotonic() < deadline:
                        cid = f"{user}-{self.sent}"
                        self.sent += 1
                        self.all_sent.add(cid)
                        pending.add(cid)
                        self.unacked.add(cid)
                        await ws.send(
                            json.dumps(
                                {
                                    "type": "CHAT_MESSAGE",
                                    "room": room,
                                    "user": user,
                                    "message": f"soak {cid}",
                                    "client_id": cid,
                                }
                            )
                        )
                        next_send = time.monotonic() + self.args.send_every
                # Leave only once our sends are acknowledged (bounded wait).
                end = time.monotonic() + 15
                while pending and time.monotonic() < end:
                    event = json.loads(await asyncio.wait_for(ws.recv(), end - time.monotonic()))
                    if event["type"] == "CHAT_MESSAGE" and event.get("client_id") in pending:
                        pending.discard(event["client_id"])
                        self.unacked.discard(event["client_id"])
                        self.acked.add(event["client_id"])
        except (OSError, TimeoutError, websockets.ConnectionClosed) as exc:
            self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1


async def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="fastchat-soak-"))
    port, ws_port = free_ports(2)  # distinct: the server refuses PORT == WS_PORT
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(tmp / "soak.db"),
        "SEED_POSTS": "0",
        "LOG_LEVEL": "warning",
        "MAX_CONNECTIONS": str(args.clients * 2 + args.rooms + 100),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastchat", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    while b"ready" not in proc.stdout.readline():
        if proc.poll() is not None:
            raise SystemExit("the server did not start")
    http = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{http}/api/v1/health").status_code == 200:
                break
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    soak = Soak(args, f"ws://127.0.0.1:{ws_port}/ws", http)
    base_fds, base_rss = fds(proc.pid), rss_kb(proc.pid)
    samples = []
    try:
        readies = [asyncio.Event() for _ in soak.rooms]
        observers = [
            asyncio.create_task(soak.observer(r, e))
            for r, e in zip(soak.rooms, readies, strict=True)
        ]
        await asyncio.gather(*(e.wait() for e in readies))
        started = time.monotonic()
        clients: set[asyncio.Task] = set()
        n = 0
        next_sample = started
        while time.monotonic() - started < args.seconds:
            # Keep the population up: new clients with random lifetimes (churn).
            while len(clients) < args.clients:
                n += 1
                lifetime = random.uniform(args.seconds / 20, args.seconds / 4)
                task = asyncio.create_task(soak.client(n, lifetime))
                clients.add(task)
                task.add_done_callback(clients.discard)
                if n % 200 == 0:
                    await asyncio.sleep(0)
            if time.monotonic() >= next_sample:
                samples.append(
                    {
                        "t": round(time.monotonic() - started, 1),
                        "rss_kb": rss_kb(proc.pid),
                        "fds": fds(proc.pid),
                        "clients": len(clients),
                        "sent": soak.sent,
                    }
                )
                next_sample += args.sample_every
            await asyncio.sleep(0.2)
        soak.stop.set()
        soak.stopped_at = time.monotonic()
        await asyncio.gather(*clients, return_exceptions=True)
        await asyncio.gather(*observers, return_exceptions=True)
        # Everyone left: descriptors should be back where they started.
        for _ in range(50):
            if fds(proc.pid) <= base_fds + 2:
                break
            await asyncio.sleep(0.1)
        end_fds, end_rss = fds(proc.pid), rss_kb(proc.pid)
        # Every acknowledged message is stored, and every observer saw all of its room.
        stored_by_room: dict[str, list[int]] = {}
        stored_cids: set[str] = set()
        async with httpx.AsyncClient(base_url=http, timeout=30) as client:
            for room in soak.rooms:
                ids: list[int] = []
                params: dict = {"limit": 1000, "after": 0}
                while True:
                    body = (await client.get(f"/api/v1/messages/{room}", params=params)).json()
                    ids += [m["id"] for m in body["messages"]]
                    stored_cids.update(m.get("client_id") for m in body["messages"])
                    if body["next"] is None:
                        break
                    params = {"limit": 1000, **body["next"]}
                stored_by_room[room] = ids
        stored_total = sum(len(v) for v in stored_by_room.values())
        missed_by_observers = sum(
            len(set(stored_by_room[r]) - set(soak.observed[r])) for r in soak.rooms
        )
        duplicates = sum(len(v) - len(set(v)) for v in soak.observed.values())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    warm = [s for s in samples if s["t"] >= args.seconds / 4]
    result = {
        "seconds": args.seconds,
        "clients": args.clients,
        "rooms": args.rooms,
        "connections_made": soak.connects,
        "messages_sent": soak.sent,
        "acknowledged": len(soak.acked),
        # Sent, stored and broadcast, but the sending client did not read its copy in time
        # (the soak's own single process falls behind at this size): late, not lost.
        "unacknowledged_in_time": len(soak.unacked),
        "acknowledged_not_stored": len(soak.acked - stored_cids),
        "sent_not_stored": len(soak.all_sent - stored_cids),
        "stored": stored_total,
        "observer_missed": missed_by_observers,
        "observer_duplicates": duplicates,
        "errors": soak.errors,
        "fds": {"baseline": base_fds, "end": end_fds},
        "rss_kb": {
            "baseline": base_rss,
            "end": end_rss,
            "warm_min": min((s["rss_kb"] for s in warm), default=0),
            "warm_max": max((s["rss_kb"] for s in warm), default=0),
        },
        "samples": samples,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument(
        "--send-every", type=float, default=5.0, help="seconds between a client's sends"
    )
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(f"{'t(s)':>6} {'clients':>8} {'RSS MB':>8} {'fds':>6} {'sent':>8}")
    for s in result["samples"]:
        print(
            f"{s['t']:>6} {s['clients']:>8} {s['rss_kb'] / 1024:>8.1f} {s['fds']:>6} {s['sent']:>8}"
        )
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    lost = result["acknowledged_not_stored"] + result["sent_not_stored"] + result["observer_missed"]
    print(
        f"lost: {lost}  (acknowledged but not stored {result['acknowledged_not_stored']}, "
        f"sent but not stored {result['sent_not_stored']}, missed by observers "
        f"{result['observer_missed']}); acks the load process read late "
        f"{result['unacknowledged_in_time']}; fds {result['fds']['baseline']} -> "
        f"{result['fds']['end']}"
    )
    sys.exit(1 if lost or result["observer_duplicates"] else 0)


if __name__ == "__main__":
    main()
