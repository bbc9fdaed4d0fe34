"""Smoke test of an installed fastchat: `make wheel` runs it in each fresh venv, cibuildwheel
as its test command. It starts `fastchat serve` on free loopback ports with a temporary
database, checks a page, REST, a WebSocket message on both URLs and a clean SIGTERM, then that
a setting whose extra is missing is refused with the extra's name.

Needs only the installed wheel and `websockets`; run it from outside the source tree, so the
installed package is the one imported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

import fastchat
import fastchat._hub
import fastchat._keys
import fastchat._lane
import fastchat._listener

TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, data: dict[str, Any] | None = None) -> tuple[int, bytes]:
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
        return r.status, r.read()


def next_of(ws: Any, type_: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event["type"] == type_:
            return event


def serve_and_talk(tmp: Path) -> None:
    port, ws_port = free_port(), free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(tmp / "chat.db"),
        "LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastchat", "serve"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # one line when both ports listen
        assert " ready: " in ready, f"no ready line: {ready!r} (exit {proc.poll()})"
        http = f"http://127.0.0.1:{port}"
        status, page = fetch(f"{http}/chat")
        assert status == 200 and b"<html" in page, status
        status, body = fetch(f"{http}/api/v1/health")
        assert status == 200, body
        status, body = fetch(f"{http}/api/v1/messages/smoke", {"user": "rest", "message": "one"})
        assert status == 201, body
        last = json.loads(body)["id"]
        for url in (f"ws://127.0.0.1:{ws_port}/ws", f"ws://127.0.0.1:{port}/ws"):
            with connect(url, open_timeout=TIMEOUT) as ws:
                ws.send(json.dumps({"type": "JOIN_ROOM", "room": "smoke", "user": "ws"}))
                next_of(ws, "ROOM_JOINED")
                chat = {"type": "CHAT_MESSAGE", "room": "smoke", "user": "ws", "message": url}
                ws.send(json.dumps(chat))
                echoed = next_of(ws, "CHAT_MESSAGE")
                assert echoed["message"] == url and echoed["id"] > last, echoed
                last = echoed["id"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0, "SIGTERM did not end in exit 0"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def missing_extra_is_named(tmp: Path) -> str:
    if find_spec("redis") is not None:
        return "redis installed: missing-extra check skipped"
    env = {**os.environ, "BROKER_URL": "redis://127.0.0.1:6379/0", "DB_PATH": str(tmp / "x.db")}
    out = subprocess.run(
        [sys.executable, "-m", "fastchat", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    expected = "fastchat: BROKER_URL needs the redis extra: pip install 'fastchat-server[redis]'\n"
    assert (out.returncode, out.stderr) == (2, expected), (out.returncode, out.stderr)
    return "missing redis extra named"


def main() -> None:
    package = Path(fastchat.__file__).resolve().parent
    hub = Path(fastchat._hub.__file__ or "")
    assert "site-packages" in package.parts, f"not an installed copy: {package}"
    for compiled in (
        hub,
        Path(fastchat._listener.__file__ or ""),
        Path(fastchat._lane.__file__ or ""),
        Path(fastchat._keys.__file__ or ""),
    ):
        assert compiled.suffix == ".so", f"{compiled.name} is not compiled"
        debug = b".debug_info" in compiled.read_bytes()
        assert not debug, f"{compiled.name} carries debug information"
    with tempfile.TemporaryDirectory(prefix="fastchat-smoke-") as tmp:
        serve_and_talk(Path(tmp))
        extra = missing_extra_is_named(Path(tmp))
    print(
        f"smoke ok: fastchat {fastchat.__version__}, Python {sys.version.split()[0]}, "
        f"{hub.name} {hub.stat().st_size:,} bytes; pages, REST, WebSocket on both ports, "
        f"SIGTERM; {extra}"
    )


if __name__ == "__main__":
    main()
