"""What a chat message costs the SQLite writer as the history grows: the loop thread's time
per message in commits of 200 (`SqliteStore._commit`, as the loop runs it), on a database
already holding N messages in 500 rooms from 750 users, each with a client_id, filed.

The client ids are random (as fastchat's clients send them: `--ids random`) or ascending per
user (`--ids ascending`): with random ones each filed id lands on its own page of its
user's part of `message_clients` once that part spans many pages (schema 6), so the cost
grew with the history. The search indexer is told the history is indexed (it indexes only
the new messages, on its thread, as in production). The last two columns are how long the
store took to open: first with no filter saved (after a crash, or a database from before
migration 8: it reads every stored client id into its filter), then after a clean close
(which saved the filter: it reads it back, and the ids stored after it).

    .venv/bin/python -m bench.historycost --stored 200000 2000000 --ids random ascending
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from fastchat import sqlitestore, store

BATCH = 200
BATCHES = 600


def client_id(k: int, ids: str) -> str:
    return os.urandom(16).hex() if ids == "random" else f"u{k % 750}-{k:012d}"


def prefill(path: Path, n: int, ids: str) -> None:
    conn = apsw.Connection(str(path))
    rows = ((i, f"r{i % 500}", f"u{i % 750}", "x" * 40, client_id(i, ids)) for i in range(1, n + 1))
    with conn:
        conn.executemany(
            'INSERT INTO messages(id, room, "user", message, ts, client_id) VALUES (?,?,?,?,1,?)',
            rows,
        )
        conn.execute(
            'INSERT INTO message_clients(bucket, room, "user", client_id, id) '
            f'SELECT id >> {sqlitestore.CLIENT_BUCKET_BITS}, room, "user", client_id, id '
            "FROM messages ORDER BY 1, 2, 3, 4"
        )
        conn.execute(
            'INSERT INTO client_buckets(room, "user", bucket) SELECT DISTINCT room, "user", '
            f"id >> {sqlitestore.CLIENT_BUCKET_BITS} FROM messages ORDER BY 1, 2, 3"
        )
        conn.execute(
            "INSERT INTO message_rooms(room, id) SELECT room, id FROM messages ORDER BY 1, 2"
        )
        conn.execute("UPDATE message_rooms_upto SET id = ?", (n,))
        conn.execute(
            "INSERT OR REPLACE INTO search_index(kind, last_id, last_change) VALUES (1, ?, 0)",
            (n,),
        )
    conn.close()


async def measure(n: int, ids: str) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        s = sqlitestore.SqliteStore(str(path))
        await s.open(lambda results: None)  # creates and migrates the schema
        await s.close()
        prefill(path, n, ids)
        s = sqlitestore.SqliteStore(str(path))
        opened = time.perf_counter()
        await s.open(lambda results: None)  # reads the stored client ids into the filter
        opened = time.perf_counter() - opened
        k = n
        batches: list[list[Any]] = []
        for _ in range(BATCHES):
            batch = []
            for _ in range(BATCH):
                k += 1
                batch.append(
                    store.Write(
                        store.OP_MESSAGE, f"r{k % 500}", f"u{k % 750}", "x" * 40, client_id(k, ids)
                    )
                )
            batches.append(batch)
        done = 0
        started = time.perf_counter()
        for batch in batches:
            if s._commit(batch, on_loop=True) is not None:  # None: the indexer held the lock
                done += len(batch)
        elapsed = time.perf_counter() - started
        await s.close()  # saves the filter
        s = sqlitestore.SqliteStore(str(path))
        reopened = time.perf_counter()
        await s.open(lambda results: None)  # reads it back
        reopened = time.perf_counter() - reopened
        await s.close()
        return elapsed / done * 1e6, opened, reopened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[0, 200_000, 2_000_000])
    parser.add_argument("--ids", nargs="+", default=["random", "ascending"])
    args = parser.parse_args()
    print(
        "| messages stored | client ids | writer's loop time a message | open (filter filled) "
        "| open after a clean close (filter saved) |"
    )
    print("|---|---|---|---|---|")
    for n in args.stored:
        for ids in args.ids:
            us, opened, reopened = asyncio.run(measure(n, ids))
            print(f"| {n:,} | {ids} | {us:.2f} us | {opened:.2f} s | {reopened:.2f} s |")


if __name__ == "__main__":
    main()
