"""Shared fixtures: the real server in a subprocess, on 127.0.0.1 ephemeral ports, with a
real SQLite file in a temp dir."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apsw
import httpx
import pytest

from tests.pg import Postgres

# One scalable unit for every wait in the tests (the websockets model): slow machines
# set FASTCHAT_TEST_TIMEOUT higher.
TIMEOUT = float(os.environ.get("FASTCHAT_TEST_TIMEOUT", "10"))


def copy_database(source: Path, target: Path) -> None:
    """`source`'s whole database into `target` through SQLite's backup API: into a live
    file, the same file with other contents (an older backup restored while it runs)."""
    src, dst = apsw.Connection(str(source)), apsw.Connection(str(target))
    try:
        with dst.backup("main", src, "main") as backup:
            backup.step()
    finally:
        src.close()
        dst.close()


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: each socket stays bound until all are picked (one at a time,
    the kernel may hand out the same port twice, and a server given PORT == WS_PORT refuses
    to start)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    ws_port: int
    db_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ready: str = ""  # the server's ready line

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_fast(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def ws_http(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def ws_urls(self) -> list[str]:
        return [self.ws_fast, self.ws_http]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=TIMEOUT * 2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"server did not stop on signal {sig}; log:\n{self.log()}"
            ) from None
        finally:
            self._close_pipe()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(
    db_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
    port: int | None = None,
    ws_port: int | None = None,
    command: list[str] | None = None,
    cwd: Path | None = None,
    base_env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> ServerProcess:
    """Start `python -m fastchat serve` (or `command`, e.g. an installed wheel's entry point,
    from `cwd` with `base_env`) and wait until it answers its health check. Its stderr goes
    to `log_path` (default: beside the database)."""
    fresh = free_ports(2)
    port = port or next(p for p in fresh if p != ws_port)
    ws_port = ws_port or next(p for p in fresh if p != port)
    full_env = {
        **(base_env if base_env is not None else os.environ),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(db_path),
        "LOG_LEVEL": "info",
        **(env or {}),
    }
    log_path = log_path or db_path.with_suffix(f".{port}.log")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            command or [sys.executable, "-m", "fastchat", "serve", *args],
            env=full_env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    server = ServerProcess(proc, port, ws_port, db_path, log_path, full_env)
    assert proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT * 3
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = b""
        while b"ready" not in line:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"server did not start; log:\n{server.log()}")
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
    server.ready = line.decode(errors="replace").strip()
    # The ready line comes once both ports accept connections (server.py waits for it).
    health = httpx.get(f"{server.http}/api/v1/health", timeout=TIMEOUT)
    if health.status_code != 200:
        server.kill()
        raise AssertionError(f"server not healthy ({health.text}); log:\n{server.log()}")
    return server


# A failed test's report ends with what its servers logged at WARNING and above (the last
# LOG_LINES_SHOWN such lines of each): a failure seen once in CI, on a random input or a
# timing, can then be read from the CI output, whose temporary directories are gone.
LOG_LINES_SHOWN = 40


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, ServerProcess):
            lines = [line for line in value.log().splitlines() if _worth_showing(line)]
            shown = "\n".join(lines[-LOG_LINES_SHOWN:]) or "(nothing at WARNING or above)"
            report.sections.append((f"fixture {name!r}: its server's warnings and errors", shown))


def _worth_showing(line: str) -> bool:
    """A server log line at WARNING or above, or one that is not the server's JSON log at
    all (a traceback or a library writing to stderr)."""
    try:
        record = json.loads(line)
    except ValueError:
        return bool(line.strip())
    return not isinstance(record, dict) or record.get("level") in ("warning", "error", "critical")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session; each fastchat on it gets a database of its own."""
    pg = Postgres(free_port())
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per test module (fast), once on SQLite and once on PostgreSQL: the same
    protocol suite must pass on both stores. Tests use their own room names to stay apart.
    Its rate limit is off: tests push thousands of events down one connection. The limits
    have tests of their own, on servers with their defaults."""
    env = {"RATE_LIMIT": "0"}
    if request.param == "postgres":
        env["DATABASE_URL"] = request.getfixturevalue("postgres").new_database()
    srv = start_server(tmp_path_factory.mktemp("db") / "chat.db", env=env)
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, on a fresh database."""
    srv = start_server(tmp_path / "chat.db")
    yield srv
    srv.kill()
