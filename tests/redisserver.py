"""A real redis-server for the tests and the benchmarks: Debian's package (installed by
.ci/run), on a free port in a temp dir, persistence off, ready when it says so."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self._proc: subprocess.Popen[bytes] | None = None
        self._drain: threading.Thread | None = None

    def start(self) -> None:
        self._proc = proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # redis-server says when it listens: read its log up to that line, no polling.
        assert proc.stdout is not None
        seen = b""
        while b"Ready to accept connections" not in seen:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"redis-server did not start:\n{seen.decode(errors='replace')}")
            seen += line
        # Keep draining its log so it can never block on a full pipe.
        self._drain = threading.Thread(target=proc.stdout.read, daemon=True)
        self._drain.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.wait(timeout=timeout)
        if self._drain is not None:
            self._drain.join(timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
