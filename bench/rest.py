"""REST under load: `wrk` on one URL of the server, with its CPU time sampled around the run.

    python -m bench.rest --port 8080 --server-pid 1234 --path /api/v1/health
    python -m bench.rest --port 8080 --server-pid 1234 \
        --path '/api/v1/messages/general?limit=50' --seed-room general --seed 200

`--seed N` first stores N messages in `--seed-room` through `POST /api/v1/messages/{room}`
(one at a time), then reads the URL once to check it answers 200 and, for a history page,
that it holds `limit` messages. Then `wrk -t THREADS -c CONNECTIONS -d DURATION --latency`
runs as a child of this process (so pinned where it is pinned) and its report is parsed.
Prints one JSON object (as `bench.loadgen` does): requests/s, requests per server CPU-second,
latency percentiles, wrk's socket errors and non-2xx answers (the zero-loss check: none of
either), and both sides' CPU. wrk is Debian's package `wrk`. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.loadgen import (
    HOST,
    busy_share,
    cores_busy,
    log,
    post_json,
    proc_cpu,
    report,
    server_cpu,
)

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def seed(port: int, room: str, n: int) -> None:
    for i in range(n):
        post_json(
            f"http://{HOST}:{port}/api/v1/messages/{room}",
            {"user": "seed", "message": f"seed message {i} " + "x" * 48},
        )


def probe(url: str) -> dict[str, Any]:
    """One GET before the run: status, size and, for a history page, its message count."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read()
        out: dict[str, Any] = {"status": resp.status, "bytes": len(body)}
    try:
        doc = json.loads(body)
    except ValueError:
        return out
    if isinstance(doc, dict) and isinstance(doc.get("messages"), list):
        out["messages"] = len(doc["messages"])
    return out


def parse_wrk(text: str) -> dict[str, Any]:
    def num(pattern: str) -> float | None:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    out: dict[str, Any] = {
        "requests": int(num(r"(\d+) requests in") or 0),
        "requests_per_s_wrk": num(r"Requests/sec:\s+([\d.]+)"),
        "non_2xx": int(num(r"Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": 0,
    }
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(x) for x in m.groups())
        out["socket_error_detail"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    lat = {}
    for q, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        lat[f"p{q}"] = round(float(value) * UNITS[unit], 3)
    out["latency_ms"] = lat
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit(
            "rest: wrk is not installed (Debian: apt-get install -y wrk; "
            "make bench installs it when run as root)"
        )
    url = f"http://{HOST}:{args.port}{args.path}"
    if args.seed:
        seed(args.port, args.seed_room, args.seed)
    first = probe(url)
    limit = parse_qs(urlsplit(args.path).query).get("limit")
    page_ok = "messages" not in first or not limit or first["messages"] == int(limit[0])
    log(f"GET {args.path}: {first}")
    cmd = [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration:g}s"]
    cmd += ["--latency", url]
    pid = args.server_pid
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = proc_cpu(pid) if pid else None
    busy0 = cores_busy()
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    wall = time.monotonic() - t0
    cpu1 = proc_cpu(pid) if pid else None
    busy1 = cores_busy()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"rest: wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    out: dict[str, Any] = {"url": url, "first_answer": first, "wrk_command": " ".join(cmd)}
    out.update(parse_wrk(done.stdout))
    out["wrk_output"] = done.stdout
    out["wall_s"] = round(wall, 3)
    out["requests_per_s"] = round(out["requests"] / wall) if wall else None
    gen = (children1.ru_utime - children0.ru_utime) + (children1.ru_stime - children0.ru_stime)
    out["loadgen_cpu_s"] = round(gen, 3)
    out["loadgen_core_share"] = round(gen / wall, 3) if wall else None
    if cpu0 and cpu1:
        out.update(server_cpu(cpu0, cpu1, wall))
        if out["server_cpu_s"]:
            out["requests_per_server_cpu_s"] = round(out["requests"] / out["server_cpu_s"])
    out["cores_busy"] = busy_share(busy0, busy1)
    out["zero_loss"] = (
        first["status"] == 200
        and page_ok
        and out["requests"] > 0
        and out["non_2xx"] == 0
        and out["socket_errors"] == 0
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.rest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="server HTTP port on 127.0.0.1")
    parser.add_argument("--path", default="/api/v1/health", help="path and query to GET")
    parser.add_argument("--server-pid", type=int, default=0, help="for CPU (/proc/PID/stat)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c")
    parser.add_argument("--duration", type=float, default=8.0, help="wrk -d, seconds")
    parser.add_argument("--seed", type=int, default=0, help="messages to store first")
    parser.add_argument("--seed-room", default="general")
    parser.add_argument("--label", default="", help="free text copied into the JSON")
    args = parser.parse_args(argv)
    return report("rest", args, time.time(), run(args))


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
    sys.exit(0)
