"""One worker beside two, on SQLite and on PostgreSQL: `python -m bench.scaling` (part of
`make bench`).

Starts a `redis-server` and a PostgreSQL server of its own (`tests/pg.py`: Debian's packages,
temp dirs, free ports), then for each scenario (ingest, fan-out) and each store runs fastchat
with 1 worker (the single process, no broker) and with `WORKERS=2` (`BROKER_URL` to that
Redis), unpinned, the load generator beside them. On PostgreSQL each run gets a fresh
database, and the database server's own CPU is reported beside fastchat's. The server's CPU is
summed over the supervisor and all its workers (/proc/PID/stat of each). Prints the raw rates,
the work per server CPU-second and the scaling ratio. On 2 cores the two workers and the load
generator share the machine, so say where the limit was: this is why the ratio is reported
beside the CPU split, not as a promise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port, free_ports
from tests.pg import Postgres
from tests.redisserver import RedisServer

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """`pid` and its children (the workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [pid, *(int(x) for x in out.stdout.split())]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def run_one(
    workers: int,
    broker: str,
    scenario: str,
    args: list[str],
    workdir: Path,
    pg: Postgres | None = None,
) -> dict[str, Any]:
    port, ws_port = free_ports(2)  # distinct: the server refuses PORT == WS_PORT
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WS_PORT": str(ws_port),
        "DB_PATH": str(workdir / f"w{workers}-{scenario}-{time.monotonic_ns()}.db"),
        "SEED_POSTS": "0",
        "LOG_LEVEL": "warning",
        "RATE_LIMIT": "0",
        "MAX_CONNECTIONS": "20000",
        "WORKERS": str(workers),
        "BROKER_URL": broker if workers > 1 else "",
        "DATABASE_URL": pg.new_database() if pg is not None else "",
    }
    proc = subprocess.Popen(
        [PY, "-m", "fastchat", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready = 0
        while ready < workers:  # every worker prints its own ready line
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("fastchat did not start")
            ready += b"ready" in line
        time.sleep(0.5)
        pids = family(proc.pid)
        before = cpu_seconds(pids)
        db_before = cpu_seconds(family(pg.postmaster_pid())) if pg is not None else 0.0
        t0 = time.monotonic()
        done = subprocess.run(
            [
                PY,
                "-m",
                "bench.loadgen",
                scenario,
                "--port",
                str(ws_port),
                "--server-pid",
                str(proc.pid),
                *args,
            ],
            cwd=ROOT,
            capture_output=True,
            timeout=600,
            check=False,
        )
        wall = time.monotonic() - t0
        server_cpu = cpu_seconds(pids) - before
        db_cpu = cpu_seconds(family(pg.postmaster_pid())) - db_before if pg is not None else None
        if done.returncode != 0:
            raise RuntimeError(done.stderr.decode()[-2000:])
        result = json.loads(done.stdout)["result"]
    finally:
        proc.terminate()
        proc.wait(30)
    rate = result["msgs_per_s"] if scenario == "ingest" else result["deliveries_per_s"]
    measured = result.get("measured_s") or result.get("duration_s") or wall
    return {
        "store": "postgres" if pg is not None else "sqlite",
        "workers": workers,
        "scenario": scenario,
        "rate": rate,
        "zero_loss": result["zero_loss"],
        "server_cpu_s": round(server_cpu, 2),
        "wall_s": round(wall, 1),
        "per_server_cpu_s": round(rate * measured / server_cpu) if server_cpu else None,
        "loadgen_cpu_share": result.get("loadgen_cpu_share"),
        "database_cpu_s": round(db_cpu, 2) if db_cpu is not None else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "build" / "bench-scaling.json")
    opts = parser.parse_args()
    seconds = "2" if opts.quick else "5"
    plans = {
        "ingest": ["--rooms", "500", "--window", "8", "--duration", seconds],
        "fanout": ["--clients", "1000", "--senders", "4", "--window", "8", "--duration", seconds],
    }
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastchat-scaling-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(free_port(), workdir)
        redis.start()
        url = redis.url
        pg = Postgres(free_port())
        try:
            pg.start()
            for scenario, args in plans.items():
                for store in (None, pg):
                    for workers in (1, 2):
                        name = "postgres" if store is not None else "sqlite"
                        print(
                            f"[scaling] {scenario} on {name} with {workers} worker(s)",
                            file=sys.stderr,
                            flush=True,
                        )
                        rows.append(run_one(workers, url, scenario, args, workdir, store))
                        print(f"[scaling]   {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
        finally:
            pg.stop()
            redis.stop()
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(rows, indent=1))
    print(
        "| scenario | store | workers | rate | server CPU-s | per server CPU-s "
        "| database server CPU-s | zero loss |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        db = r["database_cpu_s"]
        print(
            f"| {r['scenario']} | {r['store']} | {r['workers']} | {r['rate']:,.0f}/s | "
            f"{r['server_cpu_s']} | {r['per_server_cpu_s'] or 0:,} | "
            f"{'-' if db is None else db} | {'yes' if r['zero_loss'] else 'NO'} |"
        )
    for scenario in plans:
        for store in ("sqlite", "postgres"):
            one, two = (r for r in rows if r["scenario"] == scenario and r["store"] == store)
            print(
                f"{scenario} on {store}: 2 workers / 1 worker = "
                f"{two['rate'] / one['rate']:.2f}x the rate"
            )
    return 0 if all(r["zero_loss"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
