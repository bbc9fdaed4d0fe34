"""Operating it: metrics move by the right amounts, logs are structured and never hold bodies."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TIMEOUT, ServerProcess, start_server
from tests.integration.wsclient import Client, raw_handshake


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{server.http}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    values = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_metrics_count_traffic(tmp_path: Path) -> None:
    server = start_server(tmp_path / "m.db")
    try:
        before = scrape(server)
        room = "metrics-" + uuid.uuid4().hex[:6]
        async with (
            await Client.connect(server.ws_fast) as a,
            await Client.connect(server.ws_http) as b,
        ):
            await a.join(room, "a")
            await b.join(room, "b")
            for i in range(5):
                await a.say(room, "a", f"m{i}")
            for _ in range(5):
                await a.expect("CHAT_MESSAGE", skip=("USER_JOINED",))
                await b.expect("CHAT_MESSAGE")
            await a.send("{broken")
            await a.expect("ERROR")
            await a.send({"type": "POST_COMMENT", "post_id": 1, "user": "a", "comment": "c"})
            await a.expect("POST_COMMENT")
        after = scrape(server)
        assert delta(before, after, "fastchat_connections_opened_total", port="fast") == 1
        assert delta(before, after, "fastchat_connections_opened_total", port="http") == 1
        assert delta(before, after, "fastchat_joins_total") == 2
        assert delta(before, after, "fastchat_received_total", kind="message") == 5
        assert delta(before, after, "fastchat_received_total", kind="comment") == 1
        # 5 messages x 2 members + USER_JOINED to a + the comment's ack to its sender.
        assert delta(before, after, "fastchat_deliveries_total") >= 10
        assert delta(before, after, "fastchat_errors_total", code="invalid_json") == 1
        assert delta(before, after, "fastchat_store_rows_total") == 6
        assert delta(before, after, "fastchat_store_batch_size_count") == delta(
            before, after, "fastchat_store_batches_total"
        )
        assert delta(before, after, "fastchat_store_batch_size_sum") == 6
        # Each flush that wrote the traffic above is in the fan-out histogram, in time order.
        flushes = delta(before, after, "fastchat_fanout_seconds_count")
        assert flushes >= 5
        assert delta(before, after, "fastchat_fanout_seconds_bucket", le="+Inf") == flushes
        assert 0 < delta(before, after, "fastchat_fanout_seconds_sum") < flushes * 1.0
        cumulative = [
            value
            for (name, labels), value in sorted(
                after.items(),
                key=lambda item: float(dict(item[0][1]).get("le", "0").replace("+Inf", "inf")),
            )
            if name == "fastchat_fanout_seconds_bucket"
        ]
        assert cumulative == sorted(cumulative)
        stats = httpx.get(f"{server.http}/api/v1/stats").json()["hub_flush"]
        assert stats["flushes"] == after[("fastchat_fanout_seconds_count", ())]
        assert 0 < stats["flush_ns_max"] <= stats["wait_ns_max"]
        assert sum(count for _, count in stats["wait_histogram"]) == stats["flushes"]
        info = [dict(labels) for name, labels in after if name == "fastchat_info"]
        assert len(info) == 1 and info[0]["node"] and info[0]["version"]
    finally:
        server.stop()


async def test_connections_pass_without_the_collector_walking_them(tmp_path: Path) -> None:
    # Once up, the server collects young objects every 50,000 allocations (server.settle_gc):
    # 300 clients joining a room and leaving cost at most one pass of the cycle collector,
    # where Python's default (every 700) made 9, each walking the objects of every connection
    # already in (a 10,000-client join storm spent 6-7 % of its CPU there).
    server = start_server(tmp_path / "g.db", env={"RATE_LIMIT": "0"})
    try:
        before = scrape(server)
        room = "gc-" + uuid.uuid4().hex[:6]
        clients = [await Client.connect(server.ws_fast) for _ in range(300)]
        for i, client in enumerate(clients):
            await client.join(room, f"u{i}")
        for client in clients:
            await client.close()
        after = scrape(server)
        assert delta(before, after, "fastchat_joins_total") == 300
        for generation in "012":
            passes = delta(before, after, "python_gc_collections_total", generation=generation)
            assert passes <= 1, f"generation {generation}: {passes} passes"
    finally:
        server.stop()


async def test_checkpoints_run_beside_the_writer_and_show_in_metrics(tmp_path: Path) -> None:
    # 3,000 messages of 4,000 characters, each committed alone (each waits for the one
    # before): a page of the table each and the pages above it, past the 4,000 WAL pages
    # that wake the checkpointer thread. The writer never checkpoints here.
    server = start_server(tmp_path / "c.db", env={"RATE_LIMIT": "0"})
    try:
        room = "ckpt-" + uuid.uuid4().hex[:6]
        async with await Client.connect(server.ws_fast) as a:
            await a.join(room, "a")
            for i in range(3000):
                await a.say(room, "a", f"message {i} " + "x" * 3980)
                await a.expect("CHAT_MESSAGE", skip=("USER_JOINED",))
        # The checkpointer runs beside the writer, so ask until it has (each ask is a scrape).
        deadline = time.monotonic() + TIMEOUT
        while True:
            after = scrape(server)
            if after.get(("fastchat_store_checkpoints_total", (("by", "checkpointer"),))):
                break
            assert time.monotonic() < deadline, "no checkpoint after 3,000 single-row commits"
        assert after[("fastchat_store_checkpoints_total", (("by", "writer"),))] == 0
        stats = httpx.get(f"{server.http}/api/v1/stats").json()["store"]
        assert stats["checkpoints"] >= 1 and stats["batches"] >= 3000
    finally:
        server.stop()


async def test_logs_are_json_lines_one_per_lifecycle_event_without_bodies(tmp_path: Path) -> None:
    server = start_server(tmp_path / "l.db", env={"LOG_FORMAT": "json"})
    secret = "body-" + uuid.uuid4().hex
    try:
        async with await Client.connect(server.ws_fast) as c:
            await c.join("logs", "u")
            await c.say("logs", "u", secret)
            await c.expect("CHAT_MESSAGE")
        httpx.get(f"{server.http}/api/v1/test/message", params={"room": "logs", "message": secret})
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(entry) for entry in lines)
    opened = [e for e in lines if e["msg"] == "connection opened"]
    closed = [e for e in lines if e["msg"] == "connection closed"]
    assert len(opened) == 1 and len(closed) == 1
    assert opened[0]["port"] == "fast" and opened[0]["conn"] == closed[0]["conn"]
    assert closed[0]["rooms"] == 1 and closed[0]["seconds"] >= 0
    assert secret not in server.log()


def test_backup_of_the_live_database(tmp_path: Path) -> None:
    import subprocess
    import sys

    import apsw

    server = start_server(tmp_path / "live.db")
    try:
        for i in range(25):
            httpx.get(
                f"{server.http}/api/v1/test/message", params={"room": "bk", "message": f"m{i}"}
            )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fastchat",
                "backup",
                "--db-path",
                str(server.db_path),
                str(tmp_path / "copy.db"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        # The server kept serving during and after the copy.
        assert httpx.get(f"{server.http}/api/v1/health").status_code == 200
    finally:
        server.stop()
    copy = apsw.Connection(str(tmp_path / "copy.db"))
    rows = copy.execute("SELECT message FROM messages WHERE room = 'bk' ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [f"m{i}" for i in range(25)]
    assert copy.execute("PRAGMA user_version").fetchone()[0] >= 1
    copy.close()


def test_ready_beside_health(tmp_path: Path) -> None:
    server = start_server(tmp_path / "r.db")
    try:
        ready = httpx.get(f"{server.http}/api/v1/ready")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        # Liveness keeps the original's body.
        health = httpx.get(f"{server.http}/api/v1/health")
        assert health.status_code == 200
        assert set(health.json()) == {"status", "database", "timestamp"}
    finally:
        server.stop()


def test_ready_is_503_while_draining(tmp_path: Path) -> None:
    """A SIGTERM starts the drain: readiness answers 503 from its start, while the server
    still serves HTTP. A client that never answers the close frame keeps the drain busy
    (the server gives it a grace second) so it can be seen."""
    server = start_server(tmp_path / "d.db")
    sock = raw_handshake(server.ws_port)
    try:
        assert httpx.get(f"{server.http}/api/v1/ready").status_code == 200
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert time.monotonic() < deadline, "ready never went 503 during the drain"
            try:
                ready = httpx.get(f"{server.http}/api/v1/ready", timeout=TIMEOUT)
            except httpx.TransportError:
                raise AssertionError(
                    f"HTTP stopped before ready said 503; log:\n{server.log()}"
                ) from None
            if ready.status_code == 503:
                break
        assert ready.json()["status"] == "draining"
        assert ready.json()["reason"].startswith("draining")
        assert server.stop() == 0
    finally:
        sock.close()
        server.kill()


def test_process_metrics(tmp_path: Path) -> None:
    server = start_server(tmp_path / "p.db")
    try:
        values = scrape(server)
        assert values[("process_resident_memory_bytes", ())] > 10 * 2**20
        assert values[("process_open_fds", ())] >= 4  # the ports, the database, the log
        assert values[("process_cpu_seconds_total", ())] > 0
        started = values[("process_start_time_seconds", ())]
        assert time.time() - TIMEOUT * 3 - 5 < started <= time.time()
    finally:
        server.stop()
