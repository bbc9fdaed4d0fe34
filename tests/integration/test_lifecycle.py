"""Start, stop and restart the real server: history survives, shutdown is graceful."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import TIMEOUT, start_server
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


def test_version_and_module_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("fastchat, version ")
