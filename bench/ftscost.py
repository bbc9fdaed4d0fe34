"""What the SQLite search index costs per message: the indexer's CPU (`ftsindex.Indexer`) to
index N messages, with its settings (FTS5 `hashsize` and `automerge`, ftsindex.TUNING, in
transactions of ftsindex.CHUNK rows) beside FTS5's defaults in transactions of 5,000 rows
(the indexer before), on the same messages, in one invocation.

Each message is 8 words from a vocabulary of 20,000, in one of 500 rooms. The messages are
stored `--step` at a time, and the indexer catches up after each step, as on a busy server
(which lets the index trail by up to ftsindex.LAG_ROWS, then catches up). The figure is the
CPU time (`time.process_time`) of the catch-ups per message; the last column, a one-word
search (newest 50 first) on the index built.

    .venv/bin/python -m bench.ftscost --rows 200000 1000000
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import apsw

from fastchat import ftsindex
from fastchat.sqlitestore import SqliteStore

VOCABULARY = 20_000
WORDS = 8
ROOMS = 500


def run(folder: Path, n: int, step: int, tuned: bool) -> tuple[float, float]:
    """(CPU seconds per message to index `n`, seconds of one search), on a new database."""
    path = folder / f"{'tuned' if tuned else 'defaults'}-{n}.db"
    SqliteStore(str(path), seed=False).prepare()
    rng = random.Random(1)  # the same messages for both
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(VOCABULARY)]
    saved = ftsindex.CHUNK, ftsindex.TUNING
    if not tuned:  # the indexer before: FTS5's defaults, 5,000 rows a transaction
        ftsindex.CHUNK, ftsindex.TUNING = 5000, ()  # type: ignore[misc]
    conn = apsw.Connection(str(path))
    indexer = ftsindex.Indexer(apsw.Connection(str(path)))
    used = 0.0
    try:
        for first in range(1, n + 1, step):
            with conn:
                conn.executemany(
                    'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, "u", ?, 1)',
                    (
                        (i, f"room-{rng.randrange(ROOMS)}", " ".join(rng.choices(words, k=WORDS)))
                        for i in range(first, min(first + step, n + 1))
                    ),
                )
            started = time.process_time()
            indexer.catch_up()
            used += time.process_time() - started
    finally:
        indexer.stop()
        ftsindex.CHUNK, ftsindex.TUNING = saved  # type: ignore[misc]
    assert indexer.indexed == n, (indexer.indexed, n)
    searched = time.perf_counter()
    conn.execute(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT 50",
        (f'message : "{words[0]}"',),
    ).fetchall()
    took = time.perf_counter() - searched
    conn.close()
    return used / n, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--step", type=int, default=ftsindex.LAG_ROWS)
    args = parser.parse_args()
    print(
        "| messages | FTS5 defaults, 5,000 a transaction | fastchat's | ratio "
        "| search (defaults / fastchat's) |"
    )
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fastchat-ftscost-") as tmp:
        for n in args.rows:
            before, search_before = run(Path(tmp), n, args.step, tuned=False)
            after, search_after = run(Path(tmp), n, args.step, tuned=True)
            print(
                f"| {n:,} | {before * 1e6:.2f} us | {after * 1e6:.2f} us | "
                f"{before / after:.2f}x less | {search_before * 1e3:.2f} / "
                f"{search_after * 1e3:.2f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
