"""Logging: JSON lines in production, readable text in a terminal.

`LOG_FORMAT=auto` (the default) picks text when stderr is a terminal and JSON lines otherwise
(systemd, containers, log shippers). Lifecycle events carry their fields as `extra=` (conn,
port, peer, ...); message bodies are never logged.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Any, Final

import msgspec

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD: Final = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_encode: Final = msgspec.json.Encoder().encode


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def configure(level: str, fmt: str = "auto") -> None:
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, existing in logging.root.manager.loggerDict.items():
        if name.startswith("fastchat") and isinstance(existing, logging.Logger):
            existing.disabled = False  # a library's dictConfig may have disabled it
    # Granian and picows configure or use their own loggers; route them through ours.
    for name in ("granian", "_granian", "picows"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True
    if level.lower() != "debug":
        # picows logs every connection at INFO; the one line per connection is ours.
        logging.getLogger("picows").setLevel(logging.WARNING)


class LineBudget:
    """At most `lines` log lines per `period` seconds for events that come one per
    connection; the rest are counted by kind (`untold`) for one summary line.

    One line per connection opened and closed is what an operator wants, until 10,000
    clients reconnect at once: then those lines were ~9 % of the loop's time in the join
    storm (issue 14), and a log nobody reads line by line."""

    __slots__ = ("_left", "_window_end", "lines", "period", "untold")

    def __init__(self, lines: int, period: float = 1.0) -> None:
        self.lines = lines
        self.period = period
        self._window_end = float("-inf")
        self._left = 0
        self.untold: Counter[str] = Counter()

    def take(self, now: float, kind: str) -> bool:
        """True: log this one; False: it was counted in `untold[kind]` instead."""
        if now >= self._window_end:
            self._window_end = now + self.period
            self._left = self.lines
        if self._left > 0:
            self._left -= 1
            return True
        self.untold[kind] += 1
        return False

    def pop_untold(self) -> Counter[str]:
        untold, self.untold = self.untold, Counter()
        return untold
