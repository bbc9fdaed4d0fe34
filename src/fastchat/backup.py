"""`fastchat backup DEST`: a consistent copy of the live database, while the server runs.

Uses SQLite's online backup API (through APSW): pages are copied in steps, writers are not
blocked for the whole copy, and the result is a standalone database file (not WAL pieces).
"""

from __future__ import annotations

from pathlib import Path

import apsw


def backup(source: str | Path, dest: str | Path, pages_per_step: int = 1024) -> int:
    """Copy `source` into `dest` (replaced if present); returns the number of pages copied."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = apsw.Connection(
        f"file:{source}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )
    try:
        dst = apsw.Connection(str(dest))
        try:
            with dst.backup("main", src, "main") as job:
                while not job.done:
                    job.step(pages_per_step)
                total = job.page_count
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            return int(total)
        finally:
            dst.close()
    finally:
        src.close()
