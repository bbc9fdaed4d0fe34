"""Imports point one way (STYLE.md): events -> protocol -> hub / store -> service -> answers ->
app / fastport -> server -> cli. Checked on the source, so a wrong import fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "fastchat"

# A module may import fastchat modules of a strictly lower rank only.
RANK = {
    "errors": 0,
    "events": 0,
    "timeparse": 0,
    "protocol": 1,
    "client": 1,  # fastchat.client: events and errors only, never a server module
    "config": 2,
    "ftsindex": 1.5,  # the SQLite store's search index, kept off the write path
    "trailing": 1.5,  # the SQLite store's unfiled messages, kept in memory by room
    "store": 2,
    "_hub": 2,
    "_listener": 2.5,  # the first step of every frame, in C (it cimports _hub)
    "_lane": 2.5,  # a chat message's way in, in C (it cimports _hub)
    "_keys": 0,  # the client-id filter's per-key step, in C
    "logs": 2,
    "lifecycle": 2,
    "workermetrics": 2,
    "backup": 2,
    "broker": 2,
    "presence": 1,
    "framing": 1,  # sans-I/O WebSocket message rules
    "sqliteschema": 0,  # the SQLite schema: migrations, the check of an opened file
    "sqlitestore": 3,  # the embedded default store
    "pgstore": 3,
    "auth": 3,  # tokens (PyJWT) and room rules, from the settings
    "moderation": 1,  # bans and mutes in memory (sans-I/O)
    "delivery": 3,
    "rooms": 3.5,  # the service's parts: memberships and presence,
    "history": 3.5,  # pages and replays,
    "connections": 3.5,  # opening and closing,
    "health": 3.5,  # the store's health as last observed
    "search": 3.5,  # full-text search: queries, rules, pages (the stores match)
    "service": 4,
    "answers": 4.5,  # REST answers from memory, for app and front
    "metrics": 5,
    "app": 5,
    "fastport": 5,
    "front": 5,
    "devreload": 5,
    "server": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": -1,  # the package itself: __version__ and DISTRIBUTION only
}
PACKAGE_NAMES = {"__version__", "DISTRIBUTION"}
NO_IO = {"asyncio", "socket", "apsw", "picows", "litestar", "granian", "uvloop"}


def modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def name_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def fastchat_imports(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text())
    ours, others = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "fastchat":
                if len(parts) > 1:
                    ours.add(parts[1])
                else:
                    ours.update(alias.name for alias in node.names)
            else:
                others.add(parts[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (ours if parts[0] == "fastchat" else others).add(
                    parts[1] if parts[0] == "fastchat" and len(parts) > 1 else parts[0]
                )
    return ours, others


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(path: Path) -> None:
    me = name_of(path)
    assert me in RANK, f"{me}: give the new module a rank in this test"
    ours, _ = fastchat_imports(path)
    # Names from the package itself (`from fastchat import __version__`) are not modules.
    for dep in ours - {me, *PACKAGE_NAMES}:
        assert dep in RANK, dep
        assert RANK[dep] < RANK[me] or (me == "app" and dep == "app"), (
            f"{path.relative_to(SRC)} imports fastchat.{dep}, which is not below it"
        )


@pytest.mark.parametrize("module", ["events", "protocol", "timeparse"])
def test_the_sans_io_core_imports_no_io_library(module: str) -> None:
    _, others = fastchat_imports(SRC / f"{module}.py")
    assert not others & NO_IO, others & NO_IO


def test_the_http_app_never_touches_picows() -> None:
    for path in (SRC / "app").glob("*.py"):
        ours, others = fastchat_imports(path)
        assert "picows" not in others and "fastport" not in ours, path.name
