"""What a read of a room's messages costs while the newest messages are unfiled (SQLite
schema 6: kept in memory by room, fastchat.trailing) against the index it replaced (schema
5), in one process, same data.

200,000 messages in 500 rooms (750 users, each with a client_id). Schema 5: one statement
on the index. Schema 6: written through `SqliteStore` as a loop would (1,000 a commit), so
up to FILE_ROWS of each room are left unfiled, and read with the statement and parameters
`SqliteStore.page` uses (a HISTORY, a resume, REST); then again once all is filed (a
quiet store). 500 reads of each kind, microseconds a read:

    .venv/bin/python -m bench.readcost
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from fastchat import sqliteschema, sqlitestore, store, trailing

FILED = 200_000
READS = 500
ROWS = [
    (f"r{i % 500}", f"u{i % 750}", f"{i} 123456789 " + "x" * 48, f"u-{i}") for i in range(FILED)
]
# (label, forward, after)
KINDS = [
    ("a room's newest 50", False, None),
    ("a resume from 1,000 messages back", True, FILED - 1000),
    ("a resume from 10,000 messages back", True, FILED - 10_000),
]


def schema5(path: Path) -> dict[str, float]:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    insert = 'INSERT INTO messages(room, "user", message, ts, client_id) VALUES (?, ?, ?, 1, ?)'
    with conn:
        for target in range(1, 6):
            conn.execute(sqliteschema.MIGRATIONS[target])
        conn.executemany(insert, ROWS)
    sql = {
        forward: f"SELECT {store.MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? "
        f"AND id < ? ORDER BY id {'ASC' if forward else 'DESC'} LIMIT ?"
        for forward in (True, False)
    }
    out = {}
    for label, forward, after in KINDS:
        started = time.perf_counter()
        for k in range(READS):
            conn.execute(sql[forward], (f"r{k % 500}", after or 0, 2**62, 51)).fetchall()
        out[label] = (time.perf_counter() - started) / READS * 1e6
    conn.close()
    return out


async def schema6(path: Path) -> tuple[dict[str, float], dict[str, float], int]:
    s = sqlitestore.SqliteStore(str(path))
    left = [len(ROWS)]
    done = asyncio.Event()

    def committed(results: list[Any]) -> None:
        left[0] -= len(results)
        if not left[0]:
            done.set()

    await s.open(committed)
    for i, (room, user, text, cid) in enumerate(ROWS):
        s.submit(store.Write(store.OP_MESSAGE, room, user, text, cid))
        if i % 1000 == 999:
            await asyncio.sleep(0)  # the loop's tick: one commit
    await done.wait()
    unfiled = sum(len(ids) for ids in s._tail.rooms.values())

    async def reads() -> dict[str, float]:
        # What `Store.page` runs, less its coroutine and its rows' conversion: the same
        # statement and parameters it would.
        out = {}
        for label, forward, after in KINDS:
            sql = s.page_sql["messages"].format(order="ASC" if forward else "DESC")
            started = time.perf_counter()
            for k in range(READS):
                params = s._page_params("messages", f"r{k % 500}", after or 0, 2**62, 51, forward)
                s.reader.execute(sql, params).fetchall()
            out[label] = (time.perf_counter() - started) / READS * 1e6
        return out

    unfiled_reads = await reads()
    s.file_after = 0.0
    s._file_later()
    while s._tail:
        await asyncio.sleep(0.01)
    filed_reads = await reads()
    await s.close()
    return unfiled_reads, filed_reads, unfiled


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        old = schema5(Path(tmp) / "v5.db")
        unfiled, filed, count = asyncio.run(schema6(Path(tmp) / "v6.db"))
    print(
        f"| read | index (schema 5) | schema 6, {count:,} unfiled (up to {trailing.FILE_ROWS} a "
        "room) | schema 6, all filed |"
    )
    print("|---|---|---|---|")
    for label, _, _ in KINDS:
        cells = " | ".join(f"{side[label]:.0f} us" for side in (old, unfiled, filed))
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
