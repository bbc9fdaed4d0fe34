"""What a read of a room's messages costs with the newest messages trailing (SQLite schema 6)
against the index it replaced (schema 5), in one process, same data.

200,000 messages in 500 rooms (750 users, each with a client_id), then `ROOMS_TRAILING` more
left unfiled; 500 reads of each kind, microseconds a read:

    .venv/bin/python -m bench.readcost
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import apsw

from fastchat import store

FILED = 200_000
READS = 500


def database(path: Path, version: int) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    rows = [
        (f"r{i % 500}", f"u{i % 750}", f"{i} 123456789 " + "x" * 48, 1, f"u-{i}")
        for i in range(FILED + store.ROOMS_TRAILING)
    ]
    insert = 'INSERT INTO messages(room, "user", message, ts, client_id) VALUES (?, ?, ?, ?, ?)'
    with conn:
        for target in range(1, version + 1):
            conn.execute(store._MIGRATIONS[target])
        conn.executemany(insert, rows[:FILED])
        if version >= 6:
            conn.execute(store.FILE_ROOMS_SQL)
        conn.executemany(insert, rows[FILED:])
    return conn


def main() -> None:
    index = {
        order: f"SELECT {store.MESSAGE_COLUMNS} FROM messages WHERE room = ? AND id > ? "
        f"AND id < ? ORDER BY id {order} LIMIT ?"
        for order in ("ASC", "DESC")
    }
    filed = {order: store.SQLITE_MESSAGES_PAGE_SQL.format(order=order) for order in index}
    top = FILED + store.ROOMS_TRAILING
    reads = [
        ("a room's newest 50", "DESC", 0),
        ("a resume from 1,000 messages back", "ASC", top - 1000),
        ("a resume from 10,000 messages back", "ASC", top - 10_000),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for version, sqls in ((5, index), (6, filed)):
            conn = database(Path(tmp) / f"v{version}.db", version)
            for label, order, after in reads:
                started = time.perf_counter()
                for k in range(READS):
                    conn.execute(sqls[order], (f"r{k % 500}", after, 2**62, 51)).fetchall()
                results[label, version] = (time.perf_counter() - started) / READS * 1e6
            conn.close()
    print(f"| read | index (schema 5) | filed + {store.ROOMS_TRAILING:,} trailing (schema 6) |")
    print("|---|---|---|")
    for label, _, _ in reads:
        print(f"| {label} | {results[label, 5]:.0f} us | {results[label, 6]:.0f} us |")


if __name__ == "__main__":
    main()
