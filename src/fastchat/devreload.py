"""`fastchat serve --reload` (and `make dev`): restart on changes, as `air` did for the original.

watchfiles watches the Python sources, templates and static files, and restarts the server
process when one changes; a change to the Cython hub (`.pyx`/`.pxd`) rebuilds the extension
in place first. Development only: production runs `fastchat serve` under systemd or a
container runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import watchfiles

PACKAGE = Path(__file__).resolve().parent
WATCHED_SUFFIXES = (".py", ".pyx", ".pxd", ".html", ".css", ".js", ".svg")


def _source_root() -> Path | None:
    root = PACKAGE.parent.parent
    return root if (root / "setup.py").is_file() else None


def _watch_paths() -> list[Path]:
    root = _source_root()
    if root is None:  # an installed wheel: only the package itself
        return [PACKAGE]
    return [p for p in (root / "src", root / "templates", root / "static") if p.exists()]


def _filter(change: watchfiles.Change, path: str) -> bool:
    return path.endswith(WATCHED_SUFFIXES) and "__pycache__" not in path


def _on_change(changes: set[tuple[watchfiles.Change, str]]) -> None:
    paths = sorted({p for _, p in changes})
    print(f"fastchat: changed {', '.join(Path(p).name for p in paths)}; restarting", flush=True)
    root = _source_root()
    if root is not None and any(p.endswith((".pyx", ".pxd")) for p in paths):
        print("fastchat: rebuilding the Cython hub", flush=True)
        subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=root, check=False
        )


def run(argv: list[str]) -> int:
    """Run `fastchat serve <argv>` in a child process, restarting it on changes."""
    os.environ.pop("RELOAD", None)  # the child serves; only this process watches
    command = [sys.executable, "-m", "fastchat", "serve", *argv]
    return int(
        watchfiles.run_process(
            *_watch_paths(),
            target=subprocess.list2cmdline(command),
            target_type="command",
            watch_filter=_filter,
            callback=_on_change,
        )
        or 0
    )
