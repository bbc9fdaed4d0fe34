"""Start, stop and restart the real server: history survives, shutdown is graceful."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
