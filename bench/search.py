"""Search latency over a big history: `GET /api/v1/search` on a real server whose database
holds `--messages` stored messages (1 million by default), against the query a server
without a full-text index would run for the same words (`LIKE '%word%'`, newest first), on
the same file, in the same invocation.

    python -m bench.search --messages 1000000 --queries 300

The database is filled directly (the messages table as the server would have written it,
in one-million-row transactions: the point is the search, not the ingest), with texts of
8-16 words drawn from a 20,000-word vocabulary by a Zipf-like law, so some words are in a
tenth of all messages and most in a handful, as in chat. The server then starts on it and
its indexer indexes the backlog (the time it took is printed: what a database from before
search costs on first start). Queries are one or two words, a third of them common, the rest
rare, every fourth in one room, sent one at a time on one kept-alive connection, no warm-up
beyond the first (which waits for the index). Prints one JSON object and a table: p50 / p99
/ max per side and the ratio of the medians and of the p99s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw
import httpx

from fastchat.sqlitestore import SqliteStore
from tests.conftest import start_server

VOCABULARY = 20_000


def words(rng: random.Random) -> list[str]:
    # Made-up words, so no test text collides with them: "w0", "w1", ...
    return [f"w{i}" for i in range(VOCABULARY)]


def zipf_weights(n: int) -> list[float]:
    return [1.0 / (rank + 1) for rank in range(n)]


def fill(db: Path, messages: int, rng: random.Random) -> float:
    """Create the schema (as the server would) and store `messages` messages; seconds."""
    SqliteStore(str(db), seed=False).prepare()
    vocab = words(rng)
    cumulative = list(itertools.accumulate(zipf_weights(len(vocab))))
    conn = apsw.Connection(str(db))
    started = time.perf_counter()
    rooms = [f"room-{i}" for i in range(200)]
    ts = 1_700_000_000_000
    chunk = 100_000
    for lo in range(0, messages, chunk):
        rows = []
        for i in range(lo, min(messages, lo + chunk)):
            text = " ".join(rng.choices(vocab, cum_weights=cumulative, k=rng.randint(8, 16)))
            rows.append((i + 1, rooms[i % len(rooms)], f"user{i % 500}", text, ts + i))
        with conn:
            conn.executemany(
                'INSERT INTO messages(id, room, "user", message, ts) VALUES (?, ?, ?, ?, ?)', rows
            )
    conn.close()
    return time.perf_counter() - started


def queries(n: int, rng: random.Random) -> list[tuple[str, str | None]]:
    """(q, room or None): one or two words, a third of them common; every fourth query
    in one room (of the 200)."""
    vocab = words(rng)
    out: list[tuple[str, str | None]] = []
    for i in range(n):
        common = i % 3 == 0
        pick = (
            (lambda: vocab[rng.randrange(50)])
            if common
            else (lambda: vocab[rng.randrange(50, len(vocab))])
        )
        room = f"room-{rng.randrange(200)}" if i % 4 == 0 else None
        out.append((" ".join(pick() for _ in range(1 if i % 2 else 2)), room))
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fastchat-search-bench-") as tmp:
        db = Path(tmp) / "chat.db"
        fill_s = fill(db, args.messages, rng)
        qs = queries(args.queries, rng)
        server = start_server(db, env={"SEED_POSTS": "0", "LOG_LEVEL": "warning"})
        try:
            with httpx.Client(base_url=server.http, timeout=600) as http:
                started = time.perf_counter()
                first = http.get("/api/v1/search", params={"q": "w1"})  # waits for the index
                first.raise_for_status()
                index_s = time.perf_counter() - started
                ours, hits = [], []
                for q, room in qs:
                    params = {"q": q} if room is None else {"q": q, "room": room}
                    t = time.perf_counter()
                    r = http.get("/api/v1/search", params=params)
                    ours.append(time.perf_counter() - t)
                    r.raise_for_status()
                    hits.append(r.json()["count"])
        finally:
            server.stop()
        # The same words without an index: every message scanned, newest first.
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        like = []
        for q, room in qs:
            terms = q.split()
            where = " AND ".join("message LIKE ?" for _ in terms)
            bound: tuple[str, ...] = tuple(f"%{w}%" for w in terms)
            if room is not None:
                where += " AND room = ?"
                bound += (room,)
            t = time.perf_counter()
            conn.execute(
                f'SELECT id, room, "user", message, ts FROM messages WHERE {where} '
                "ORDER BY id DESC LIMIT 20",
                bound,
            ).fetchall()
            like.append(time.perf_counter() - t)
        conn.close()
    fastchat, baseline = percentiles(ours), percentiles(like)
    return {
        "scenario": "search",
        "messages": args.messages,
        "queries": args.queries,
        "fill_s": round(fill_s, 1),
        "index_backlog_s": round(index_s, 1),
        "mean_hits_per_page": round(statistics.mean(hits), 1),
        "fastchat": fastchat,
        "like_scan": baseline,
        "ratio_p50": round(baseline["p50_ms"] / max(fastchat["p50_ms"], 1e-6), 1),
        "ratio_p99": round(baseline["p99_ms"] / max(fastchat["p99_ms"], 1e-6), 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", default="build/bench/search.json")
    args = parser.parse_args(argv)
    result = run(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    rows = [
        ("fastchat `GET /api/v1/search` (HTTP, FTS5)", result["fastchat"]),
        ("baseline: `LIKE '%word%'` scan (in process)", result["like_scan"]),
    ]
    lines = [
        f"| search over {args.messages:,} messages | p50 ms | p99 ms | max ms |",
        "|---|---|---|---|",
        *(f"| {name} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} |" for name, r in rows),
        f"| baseline / fastchat | {result['ratio_p50']}x | {result['ratio_p99']}x | |",
        "",
        f"indexing the backlog on first start: {result['index_backlog_s']} s",
    ]
    print("\n" + "\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
