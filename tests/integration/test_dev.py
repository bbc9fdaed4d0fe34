"""`fastchat serve --reload` restarts the server when a watched file changes."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TIMEOUT, free_ports

ROOT = Path(__file__).resolve().parents[2]


def read_until(proc: subprocess.Popen[bytes], needle: bytes, deadline: float) -> bytes:
    assert proc.stdout is not None
    seen = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while needle not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                assert line, seen.decode(errors="replace")
                seen += line
    return seen


def test_reload_restarts_on_a_static_file_change(tmp_path: Path) -> None:
    port, ws_port = free_ports(2)
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(tmp_path / "dev.db"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastchat", "serve", "--reload"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    watched = ROOT / "static" / "css" / "app.css"
    try:
        deadline = time.monotonic() + TIMEOUT * 3
        read_until(proc, b"ready", deadline)
        watched.write_bytes(watched.read_bytes())  # same content, a real change event
        out = read_until(proc, b"restarting", deadline)
        assert b"app.css" in out
        read_until(proc, b"ready", deadline)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()
