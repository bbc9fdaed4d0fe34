"""`make bench`: fastchat and the baseline, same scenarios, one invocation, ratios printed.

Each server runs alone, pinned to core 0 (`taskset -c 0`), with a fresh database, for one
scenario at a time; the load generator (`bench.loadgen`) is pinned to core 1. For every
scenario the table shows the raw rate and the work per second of server CPU time
(/proc/PID/stat), the ratio fastchat / baseline, the zero-loss check, the issue-7 target and
what limited the figure (server CPU, load-generator CPU, or neither).

    python -m bench.run            # full run, a few minutes; writes bench/results.json
    python -m bench.run --quick    # under a minute, small sizes; writes build/bench-quick.json

A/B within one invocation (`--variant`, repeatable): each variant names a source tree for the
server (its `src/` goes first on PYTHONPATH), a directory to run `bench.loadgen` from, and extra
load-generator arguments; the variants alternate inside every repeat, and a table of every run
is printed. E.g. the load generator at HEAD against the one in the working tree:

    git archive HEAD | tar -x -C /tmp/base
    python -m bench.run --scenarios paced --servers fastchat --repeat 3 \
        --variant old:loadgen=/tmp/base --variant new

Runs vary by 15-20 % on this machine: compare fastchat and the baseline within one invocation
only, and prefer the per-CPU-second columns when the load generator was the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# Issue 7's bar: the expert Go build (best of its range) per server CPU-second, and the absolute
# targets for latency and memory.
TARGETS = {
    "fanout": ("deliveries/CPU-s >= 870k (expert Go 705-870k)", 870_000),
    "ingest": ("msgs/CPU-s >= 75k (expert Go 62-75k)", 75_000),
    "paced": ("p99 < 7 ms at <= 55 % of a core", (7.0, 0.55)),
    "idle": ("< 6 kB per idle connection", 6.0),
}


def sizes(quick: bool, idle: int | None) -> dict[str, list[str]]:
    """Load-generator arguments per scenario."""
    if quick:
        return {
            "fanout": ["--clients", "300", "--senders", "4", "--window", "8", "--duration", "2"],
            "ingest": ["--rooms", "100", "--window", "8", "--duration", "2"],
            "paced": ["--clients", "300", "--interval-ms", "10", "--duration", "2"],
            "idle": ["--clients", str(idle or 1000), "--workers", "1"],
        }
    return {
        "fanout": ["--clients", "1000", "--senders", "4", "--window", "8", "--duration", "5"],
        "ingest": ["--rooms", "500", "--window", "8", "--duration", "5"],
        "paced": ["--clients", "1000", "--interval-ms", "10", "--duration", "10"],
        # The file-descriptor hard limit here is 20,000 per process (issue 7).
        "idle": ["--clients", str(idle or 19_000), "--workers", "2"],
    }


# --------------------------------------------------------------------------------- servers


class Variant:
    """One side of an A/B: where the server's code and the load generator come from."""

    def __init__(self, spec: str = "") -> None:
        # NAME[:server=SRC_TREE][:loadgen=DIR][:args=LOADGEN ARGS]
        name, *parts = spec.split(":") if spec else [""]
        self.name = name
        self.server: Path | None = None
        self.loadgen = ROOT
        self.args: list[str] = []
        for part in parts:
            key, _, value = part.partition("=")
            if key == "server":
                self.server = Path(value).resolve()
            elif key == "loadgen":
                self.loadgen = Path(value).resolve()
            elif key == "args":
                self.args = shlex.split(value)
            else:
                raise SystemExit(f"--variant {spec!r}: unknown part {part!r}")
        if self.server is not None and not (self.server / "src" / "fastchat").is_dir():
            raise SystemExit(f"--variant {spec!r}: no src/fastchat under {self.server}")

    def describe(self) -> dict[str, Any]:
        return {
            "server": str(self.server or ROOT),
            "loadgen": str(self.loadgen),
            "args": self.args,
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int | None) -> list[str]:
    if core is None:
        return []
    return ["taskset", "-c", str(core)]


@contextlib.contextmanager
def server(
    kind: str, workdir: Path, core: int | None, tree: Path | None = None
) -> Iterator[tuple[int, int, str]]:
    """Start `kind` on fresh ports and a fresh database; yield (ws port, pid, stats URL).
    `tree`: run that source tree's code instead of this one's (its src/ first on PYTHONPATH)."""
    db = workdir / f"{kind}-{time.monotonic_ns()}.db"
    env = dict(os.environ)
    cwd = ROOT
    if tree is not None:
        cwd = tree
        env["PYTHONPATH"] = os.pathsep.join(
            [str(tree / "src"), str(tree), *filter(None, [env.get("PYTHONPATH")])]
        )
    if kind == "fastchat":
        port, ws_port = free_port(), free_port()
        env.update(
            HOST="127.0.0.1",
            PORT=str(port),
            WS_PORT=str(ws_port),
            DB_PATH=str(db),
            SEED_POSTS="0",
            LOG_LEVEL="warning",
            # Load tests switch the per-connection rate limit off (the baseline has none) and
            # raise the connection cap for the idle scenario.
            RATE_LIMIT="0",
            MAX_CONNECTIONS="20000",
        )
        cmd = [*pin(core), PY, "-m", "fastchat", "serve"]
        stats_url = f"http://127.0.0.1:{port}/api/v1/stats"
    else:
        ws_port = free_port()
        stats_url = ""
        cmd = [
            *pin(core),
            PY,
            "-m",
            "bench.baseline_server",
            "--port",
            str(ws_port),
            "--db",
            str(db),
        ]
    log_path = workdir / f"{kind}.log"
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            while True:
                line = proc.stdout.readline()
                if b"ready" in line:
                    break
                if not line or time.monotonic() > deadline:
                    err.flush()
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{kind} did not start:\n{tail}")
            # Keep draining stdout so the server can never block on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            yield ws_port, proc.pid, stats_url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def loadgen(
    scenario: str,
    args: list[str],
    port: int,
    pid: int,
    stats_url: str,
    core: int | None,
    timeout: float,
    where: Path = ROOT,
) -> dict[str, Any]:
    cmd = [
        *pin(core),
        PY,
        "-m",
        "bench.loadgen",
        scenario,
        "--port",
        str(port),
        "--server-pid",
        str(pid),
        *(["--stats-url", stats_url] if stats_url and scenario != "idle" else []),
        *args,
    ]
    done = subprocess.run(cmd, cwd=where, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"loadgen {scenario} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}"
        )
    return json.loads(done.stdout)


# --------------------------------------------------------------------------------- figures


def headline(scenario: str, r: dict[str, Any]) -> dict[str, Any]:
    """The figures the table shows for one run."""
    if scenario == "fanout":
        return {"rate": r["deliveries_per_s"], "per_cpu": r.get("deliveries_per_server_cpu_s")}
    if scenario == "ingest":
        return {"rate": r["msgs_per_s"], "per_cpu": r.get("msgs_per_server_cpu_s")}
    if scenario == "paced":
        return {
            "rate": r["deliveries_per_s"],
            "per_cpu": r.get("deliveries_per_server_cpu_s"),
            "p50": r["latency_ms"]["p50"],
            "p99": r["latency_ms"]["p99"],
            "max": r["latency_ms"]["max"],
            "cpu": r.get("server_core_share"),
        }
    return {"kb_per_conn": r.get("rss_per_connection_kb"), "connected": r["connected"]}


def limit_of(scenario: str, r: dict[str, Any]) -> str:
    """What limited the figure, from the CPU shares of both sides."""
    server = r.get("server_core_share") or 0.0
    gen = r.get("loadgen_core_share") or 0.0
    busy = r.get("cores_busy", {})
    irq0 = busy.get("cpu0_irq") or 0.0
    # Busy time on each core beyond what our processes were charged: other tenants (this
    # machine is shared). Per-core and per-process accounting differ by a few percent.
    others0 = max(0.0, (busy.get("cpu0") or 0.0) - server)
    others1 = max(0.0, (busy.get("cpu1") or 0.0) - gen)
    note = f"; irq/softirq on core 0: {irq0:.0%} of the core" if irq0 >= 0.05 else ""
    if others0 > 0.1 or others1 > 0.1:
        note += f"; OTHER LOAD on the cores: core 0 +{others0:.0%}, core 1 +{others1:.0%}"
    kernel = r.get("server_kernel_share")
    k = f" ({kernel:.0%} of it kernel)" if kernel is not None else ""
    if scenario == "idle":
        return "memory (RSS)"
    if scenario == "paced":
        return f"open loop: server at {server:.0%} of a core{k}, load generator {gen:.0%}{note}"
    if gen >= 0.9 and gen >= server:
        return f"load-generator CPU ({gen:.0%}); server at {server:.0%}{k}{note}"
    if server >= 0.85:
        return f"server CPU ({server:.0%}{k}); load generator {gen:.0%}{note}"
    return f"neither saturated: server {server:.0%}{k}, load generator {gen:.0%}{note}"


def median_run(runs: list[dict[str, Any]], scenario: str) -> dict[str, Any]:
    """The run whose headline is the median (so all its figures belong together)."""
    if len(runs) == 1:
        return runs[0]
    key = "kb_per_conn" if scenario == "idle" else ("p99" if scenario == "paced" else "per_cpu")
    ranked = sorted(runs, key=lambda r: headline(scenario, r["result"]).get(key) or 0)
    return ranked[len(ranked) // 2]


def fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and unit == "ms":
        return f"{x:.2f} ms"
    if isinstance(x, float) and unit == "%":
        return f"{x:.0%}"
    if isinstance(x, float) and unit == "kB":
        return f"{x:.1f} kB"
    if isinstance(x, int | float) and abs(x) >= 1000:
        return f"{x / 1000:,.1f}k"
    return str(x)


def ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def verdict(scenario: str, fc: dict[str, Any]) -> str:
    h = headline(scenario, fc)
    target = TARGETS[scenario][1]
    if scenario in ("fanout", "ingest"):
        ok = (h["per_cpu"] or 0) >= target
    elif scenario == "paced":
        ok = h["p99"] < target[0] and (h["cpu"] or 1) <= target[1]
    else:
        ok = h["kb_per_conn"] is not None and h["kb_per_conn"] < target
    return "MET" if ok else "MISSED"


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    rows = [
        "| scenario | figure | fastchat | baseline | fastchat / baseline | zero loss (fc / base) |",
        "|---|---|---|---|---|---|",
    ]
    for scenario, by_server in results.items():
        fc = by_server.get("fastchat", {}).get("result")
        base = by_server.get("baseline", {}).get("result")
        if fc is None or base is None:
            continue
        hf, hb = headline(scenario, fc), headline(scenario, base)
        loss = f"{'yes' if fc['zero_loss'] else 'NO'} / {'yes' if base['zero_loss'] else 'NO'}"
        if scenario in ("fanout", "ingest"):
            what = "deliveries/s" if scenario == "fanout" else "msgs/s"
            rows.append(
                f"| {scenario} | {what} | {fmt(hf['rate'])} | {fmt(hb['rate'])} | "
                f"{ratio(hf['rate'], hb['rate'])} | {loss} |"
            )
            rows.append(
                f"| {scenario} | {what} per server CPU-s | {fmt(hf['per_cpu'])} | "
                f"{fmt(hb['per_cpu'])} | {ratio(hf['per_cpu'], hb['per_cpu'])} | |"
            )
        elif scenario == "paced":
            rows.append(
                f"| paced | latency p50 | {fmt(hf['p50'], 'ms')} | {fmt(hb['p50'], 'ms')} | "
                f"{ratio(hb['p50'], hf['p50'])} lower | {loss} |"
            )
            rows.append(
                f"| paced | latency p99 | {fmt(hf['p99'], 'ms')} | {fmt(hb['p99'], 'ms')} | "
                f"{ratio(hb['p99'], hf['p99'])} lower | |"
            )
            rows.append(
                f"| paced | latency max | {fmt(hf['max'], 'ms')} | {fmt(hb['max'], 'ms')} | | |"
            )
            rows.append(
                f"| paced | server CPU (share of a core) | {fmt(hf['cpu'], '%')} | "
                f"{fmt(hb['cpu'], '%')} | {ratio(hb['cpu'], hf['cpu'])} less | |"
            )
            rows.append(
                f"| paced | deliveries per server CPU-s | {fmt(hf['per_cpu'])} | "
                f"{fmt(hb['per_cpu'])} | {ratio(hf['per_cpu'], hb['per_cpu'])} | |"
            )
        else:
            rows.append(
                f"| idle | server RSS per connection ({hf['connected']} / "
                f"{hb['connected']} conns) | {fmt(hf['kb_per_conn'], 'kB')} | "
                f"{fmt(hb['kb_per_conn'], 'kB')} | "
                f"{ratio(hb['kb_per_conn'], hf['kb_per_conn'])} less | {loss} |"
            )
    rows.append("")
    rows.append(
        "| scenario | issue-7 target for fastchat | verdict "
        "| what limited fastchat | what limited the baseline |"
    )
    rows.append("|---|---|---|---|---|")
    for scenario, by_server in results.items():
        fc = by_server.get("fastchat", {}).get("result")
        base = by_server.get("baseline", {}).get("result")
        if fc is None:
            continue
        rows.append(
            f"| {scenario} | {TARGETS[scenario][0]} | {verdict(scenario, fc)} | "
            f"{limit_of(scenario, fc)} | {limit_of(scenario, base) if base else '-'} |"
        )
    return "\n".join(rows)


def wait_quiet(limit: float = 90.0, busy: float = 0.1) -> float:
    """Wait (up to `limit` s) for a second in which no core is more than `busy` busy: the
    machine is shared, and a run started under someone else's load measures them too.
    Returns the seconds waited."""
    t0 = time.monotonic()
    sys.path.insert(0, str(ROOT))
    from bench.loadgen import busy_share, cores_busy

    while time.monotonic() - t0 < limit:
        before = cores_busy()
        time.sleep(1.0)
        share = busy_share(before, cores_busy())
        if all(v <= busy for k, v in share.items() if not k.endswith("_irq")):
            break
    return time.monotonic() - t0


def label(kind: str, var: Variant) -> str:
    return f"{kind}/{var.name}" if var.name else kind


def every_run(all_runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """One row per run (for A/B variants): the headline, both sides' CPU, per-core busy
    shares (other tenants show as busy beyond our processes) and, for fastchat, the hub's own
    flush timing over the window (`server_counters`)."""
    rows = [
        "| scenario | side | run | headline | server CPU | server us/delivery | loadgen CPU "
        "| loadgen us/delivery (user) | cores busy (0 / 1) | hub wait mean / p99 / max (ms) "
        "| flush mean (ms) | first / last copy p50, last p99 (ms) | zero loss |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, by_side in all_runs.items():
        for side, runs in by_side.items():
            for i, r in enumerate(runs, 1):
                res = r["result"]
                h = headline(scenario, res)
                if scenario == "paced":
                    head = f"p50 {h['p50']:.2f} / p99 {h['p99']:.2f} / max {h['max']:.2f} ms"
                else:
                    head = ", ".join(f"{k} {fmt(v)}" for k, v in h.items())
                cpu = res.get("server_cpu_s")
                got = res.get("received") or 0
                per = f"{cpu / got * 1e6:.2f}" if cpu and got else "-"
                busy = res.get("cores_busy", {})
                others = max(
                    (busy.get("cpu0") or 0.0) - (res.get("server_core_share") or 0.0),
                    (busy.get("cpu1") or 0.0) - (res.get("loadgen_core_share") or 0.0),
                )
                hub = res.get("server_counters", {}).get("hub_flush") or {}
                wait = (
                    f"{hub['wait_mean_ms']:.2f} / {hub['wait_p99_ms']:.2f} / "
                    f"{hub['wait_max_ms']:.2f}"
                    if hub.get("flushes")
                    else "-"
                )
                flush = f"{hub['flush_mean_ms']:.3f}" if hub.get("flushes") else "-"
                first = res.get("per_message_first_ms") or {}
                last = res.get("per_message_last_ms") or {}
                lasts = (
                    f"{first['p50']:.2f} / {last['p50']:.2f}, {last['p99']:.2f}" if last else "-"
                )
                gen_s, gen_user = res.get("loadgen_cpu_s"), res.get("loadgen_user_s")
                gen = (
                    f"{gen_s / got * 1e6:.2f} ({(gen_user or 0) / got * 1e6:.2f})"
                    if gen_s and got
                    else "-"
                )
                rows.append(
                    f"| {scenario} | {side} | {i} | {head} | "
                    f"{fmt(res.get('server_core_share'), '%')} "
                    f"({fmt(res.get('server_kernel_share'), '%')} kernel) | {per} | "
                    f"{fmt(res.get('loadgen_core_share'), '%')} | {gen} | "
                    f"{fmt(busy.get('cpu0'), '%')} / {fmt(busy.get('cpu1'), '%')}"
                    f"{' OTHER LOAD' if others > 0.1 else ''} | {wait} | "
                    f"{flush} | {lasts} | {'yes' if res['zero_loss'] else 'NO'} |"
                )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--scenarios", default="fanout,ingest,paced,idle")
    parser.add_argument("--servers", default="fastchat,baseline")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per scenario and server, the median is shown "
        "(default 3 for fanout/ingest/paced, 1 for idle; 1 with --quick)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write every run (default bench/results.json, "
        "build/bench-quick.json with --quick)",
    )
    parser.add_argument(
        "--idle-connections", type=int, default=None, help="default 19,000 (1,000 with --quick)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[:server=TREE][:loadgen=DIR][:args=ARGS]",
        help="an A/B side (repeatable; the variants alternate inside every repeat): the server "
        "from source tree TREE (default this one), bench.loadgen run from DIR (default this "
        "one), extra load-generator ARGS",
    )
    parser.add_argument(
        "--wait-quiet",
        action="store_true",
        help="before each run, wait (up to 90 s) for a second with both cores under 10 %% busy",
    )
    opts = parser.parse_args()
    variants = [Variant(v) for v in opts.variant] or [Variant()]

    cores = os.cpu_count() or 1
    pinned = not opts.no_pin and shutil.which("taskset") is not None and cores >= 2
    server_core, gen_core = (0, 1) if pinned else (None, None)
    if not pinned:
        print(
            "note: not pinning (needs taskset and 2 cores); figures are not comparable "
            "with pinned runs",
            file=sys.stderr,
        )
    plan = sizes(opts.quick, opts.idle_connections)
    scenarios = [s for s in opts.scenarios.split(",") if s]
    servers = [s for s in opts.servers.split(",") if s]
    out_path = opts.json or (
        ROOT / ("build/bench-quick.json" if opts.quick else "bench/results.json")
    )
    started = time.time()
    record: dict[str, Any] = {
        "command": " ".join([Path(PY).name, "-m", "bench.run", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": {
            "cores": cores,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "pinned": pinned,
        },
        "sizes": plan,
        "variants": {v.name: v.describe() for v in variants if v.name},
        "runs": {},
    }
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="fastchat-bench-") as tmp:
        workdir = Path(tmp)
        for scenario in scenarios:
            repeat = opts.repeat or (1 if opts.quick or scenario == "idle" else 3)
            sides = [(k, v) for k in servers for v in variants]
            runs: dict[str, list[dict[str, Any]]] = {label(k, v): [] for k, v in sides}
            for i in range(repeat):
                # Alternate, so drift in the machine's load hits every server and variant.
                for kind, var in sides:
                    name = label(kind, var)
                    print(
                        f"[bench] {scenario} {name} run {i + 1}/{repeat}",
                        file=sys.stderr,
                        flush=True,
                    )
                    tree = var.server if kind == "fastchat" else None
                    # The previous run's dirty pages (its database, the baseline's fsyncs) go
                    # to disk now, not from a kernel flusher in the middle of this run.
                    os.sync()
                    if opts.wait_quiet:
                        waited = wait_quiet()
                        if waited > 1.5:
                            print(
                                f"[bench]   waited {waited:.0f} s for quiet cores", file=sys.stderr
                            )
                    with server(kind, workdir, server_core, tree) as (port, pid, stats):
                        time.sleep(0.3)
                        r = loadgen(
                            scenario,
                            plan[scenario] + var.args,
                            port,
                            pid,
                            stats,
                            gen_core,
                            600,
                            var.loadgen,
                        )
                    runs[name].append(r)
                    res = r["result"]
                    print(
                        f"[bench]   {json.dumps(headline(scenario, res))} "
                        f"zero_loss={res['zero_loss']} "
                        f"{json.dumps(res.get('server_counters', ''))}",
                        file=sys.stderr,
                        flush=True,
                    )
            record["runs"][scenario] = runs
            results[scenario] = {k: median_run(v, scenario) for k, v in runs.items() if v}
    elapsed = time.time() - started
    text = table(results)
    if any(v.name for v in variants):
        text += "\n\n" + every_run(record["runs"])
    record["elapsed_s"] = round(elapsed, 1)
    record["table"] = text
    record["medians"] = results
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=1))
    print()
    print(
        f"fastchat vs baseline ({record['date']}, {elapsed:.0f} s, server on core 0, "
        f"load generator on core 1, median of runs)"
    )
    print(text)
    print(f"\nevery run: {out_path}")
    all_ok = all(
        r["result"]["zero_loss"] for by in record["runs"].values() for rs in by.values() for r in rs
    )
    if not all_ok:
        print("LOSS: some run lost, duplicated or reordered messages (see the JSON)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
