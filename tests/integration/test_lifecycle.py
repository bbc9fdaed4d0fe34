"""Start, stop and restart the real server: history survives, shutdown is graceful."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import apsw
import httpx
import pytest
import websockets

from tests.conftest import TIMEOUT, free_port, start_server
from tests.integration.wsclient import Client


async def test_restart_on_the_same_db_keeps_history(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    first = start_server(db)
    try:
        async with await Client.connect(first.ws_fast) as client:
            await client.join("keep", "alice")
            for i in range(20):
                await client.say("keep", "alice", f"m{i}")
            acked = [(await client.expect("CHAT_MESSAGE"))["id"] for _ in range(20)]
        r = httpx.post(f"{first.http}/api/v1/posts", json={"title": "T", "content": "C"})
        post_id = r.json()["id"]
    finally:
        assert first.stop() == 0
    second = start_server(db)
    try:
        history = httpx.get(f"{second.http}/api/v1/messages/keep").json()["messages"]
        assert [m["id"] for m in history] == acked
        assert [m["message"] for m in history] == [f"m{i}" for i in range(20)]
        assert httpx.get(f"{second.http}/api/v1/posts/{post_id}").status_code == 200
        # Sample posts are created once, not again on restart.
        titles = [p["title"] for p in httpx.get(f"{second.http}/api/v1/posts").json()["posts"]]
        assert titles.count("Welcome to fastchat") == 1
        # New ids continue after the old ones.
        r = httpx.get(f"{second.http}/api/v1/test/message", params={"room": "keep", "message": "x"})
        assert r.json()["message"]["id"] > acked[-1]
    finally:
        second.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_with_1001_and_exits_0(tmp_path: Path, sig: int) -> None:
    server = start_server(tmp_path / "chat.db")
    fast = await Client.connect(server.ws_fast)
    legacy = await Client.connect(server.ws_http)
    await fast.join("bye", "a")
    await legacy.join("bye", "b")
    server.proc.send_signal(sig)
    for client in (fast, legacy):
        with pytest.raises(websockets.ConnectionClosed) as info:
            while True:
                await client.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1001
    assert server.stop() == 0
    assert "Traceback" not in server.log()


async def test_repeated_sigterm_during_the_drain_still_exits_0(tmp_path: Path) -> None:
    """systemd, Kubernetes and impatient people send SIGTERM more than once: every repeat,
    up to the process's last instant, must leave the clean stop clean (exit 0, not -15)."""
    server = start_server(tmp_path / "chat.db")
    client = await Client.connect(server.ws_fast)
    await client.join("again", "a")
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + TIMEOUT * 2
    while server.proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.001)
    assert server.stop() == 0, server.log()
    with pytest.raises(websockets.ConnectionClosed) as info:
        while True:
            await client.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1001


def serve_once(tmp_path: Path, port: int, ws_port: int) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(tmp_path / "second.db"),
    }
    return subprocess.run(
        [sys.executable, "-m", "fastchat", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )


@pytest.mark.parametrize("which", ["PORT", "WS_PORT"])
def test_a_port_another_fastchat_serves_stops_a_second_one(tmp_path: Path, which: str) -> None:
    """Granian listens with SO_REUSEPORT: without a check, a second server on the same PORT
    runs beside the first, each with its own database, and the kernel splits the clients."""
    first = start_server(tmp_path / "first.db")
    try:
        port, ws_port = (
            (first.port, free_port()) if which == "PORT" else (free_port(), first.ws_port)
        )
        out = serve_once(tmp_path, port, ws_port)
        assert out.returncode == 1, out
        assert "ready" not in out.stdout
        taken = port if which == "PORT" else ws_port
        assert out.stderr.strip() == (
            f"fastchat: cannot listen on {which} {taken}: another program (or another "
            "fastchat) is already listening on it"
        ), out.stderr
        assert httpx.get(f"{first.http}/api/v1/health").status_code == 200
    finally:
        assert first.stop() == 0


@pytest.mark.parametrize("which", ["PORT", "WS_PORT"])
def test_a_port_held_by_another_program_is_one_readable_line(tmp_path: Path, which: str) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        held = other.getsockname()[1]
        port, ws_port = (held, free_port()) if which == "PORT" else (free_port(), held)
        out = serve_once(tmp_path, port, ws_port)
    assert out.returncode == 1, out
    assert "ready" not in out.stdout and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{which} {held}" in lines[0], out.stderr


def test_startup_prints_both_urls(tmp_path: Path) -> None:
    server = start_server(tmp_path / "chat.db")
    try:
        assert server.ws_port != server.port
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("env", "args", "needle"),
    [
        ({"PORT": "not-a-port"}, (), "PORT"),
        ({"PORT": "70000"}, (), "70000"),
        ({}, ("--ws-port", "-1"), "ws-port"),
        ({"SQLITE_SYNCHRONOUS": "sometimes"}, (), "sometimes"),
        ({"MAX_FRAME_BYTES": "10"}, (), "10"),
        ({"PORT": "18555", "WS_PORT": "18555"}, (), "differ"),
    ],
)
def test_bad_settings_fail_fast_with_a_clear_message(
    tmp_path: Path, env: dict[str, str], args: tuple[str, ...], needle: str
) -> None:
    full_env = {**os.environ, "DB_PATH": str(tmp_path / "x.db"), **env}
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "serve", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 2, out
    assert "Error" in out.stderr and needle in out.stderr, out.stderr
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("PRAGMA user_version=1; CREATE TABLE foo(x)", "no table messages"),
        (
            "PRAGMA user_version=1; CREATE TABLE messages(a, b); CREATE TABLE posts(x); "
            "CREATE TABLE comments(y)",
            "table messages has columns (a, b)",
        ),
        ("CREATE TABLE foo(x)", "it has tables (foo) but no schema version"),
    ],
)
def test_someone_elses_database_stops_the_start_with_one_line(
    tmp_path: Path, sql: str, problem: str
) -> None:
    db = tmp_path / "theirs.db"
    conn = apsw.Connection(str(db))
    conn.execute(sql)
    conn.close()
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "serve"],
        env={
            **os.environ,
            "DB_PATH": str(db),
            "PORT": str(free_port()),
            "WS_PORT": str(free_port()),
        },
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
        check=False,
    )
    assert out.returncode == 1, out
    assert out.stdout == ""  # no ready line
    [line] = out.stderr.splitlines()  # no traceback, no log record beside it
    assert line.startswith(f"fastchat: {db} is not a fastchat database: ") and problem in line


def test_version_and_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("fastchat, version ")
