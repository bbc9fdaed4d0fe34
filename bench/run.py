"""`make bench`: fastchat, the baseline and the expert Go build, same scenarios, one
invocation, ratios printed.

Each server runs alone, pinned to core 0 (`taskset -c 0`), with a fresh database, for one
scenario at a time; the load generator (`bench.loadgen`, `bench.storm` or `bench.rest`) is
pinned to core 1. For every scenario the table shows the raw rate and the work per second of
server CPU time (/proc/PID/stat), the ratio fastchat / baseline, the zero-loss check, the
target (issues 7 and 14) and what limited the figure (server CPU, load-generator CPU, or
neither).

Scenarios: `fanout`, `ingest`, `paced`, `idle` (issue 7) and, from issue 14, `unpipelined`
(one message in flight per client, rooms of 1-2, no warm-up), `unpipelined-ids` (the same,
each message with a `client_id` as fastchat's own clients send), `unpipelined-comments` (the
same through posts' live comments: JOIN_POST and POST_COMMENT; `unpipelined-comments-ids`
with client ids; `unpipelined-comments-ids-port` is what the embeddable comments widget
sends), `storm` (10,000 clients join one room; `storm-resume`: into a room with history,
each resuming as our clients do after a deploy), `rest-health` and `rest-history` (wrk;
fastchat only, the baseline has no HTTP endpoint). `X-port` is scenario X on fastchat's
`PORT` URL (`ws://HOST:PORT/ws`, the original's) instead of `WS_PORT`; the baseline has one
port, so its figures for `X-port` are its `X` run's when X ran in the same invocation.

    python -m bench.run            # full run, a few minutes; writes build/bench/results.json
    python -m bench.run --quick    # under a minute, small sizes; writes build/bench-quick.json

A/B within one invocation (`--variant`, repeatable): each variant names a source tree for the
server (its `src/` goes first on PYTHONPATH), a directory to run `bench.loadgen` from, and extra
load-generator arguments; the variants alternate inside every repeat, and a table of every run
is printed. E.g. the load generator at HEAD against the one in the working tree:

    git archive HEAD | tar -x -C /tmp/base
    python -m bench.run --scenarios paced --servers fastchat --repeat 3 \
        --variant old:loadgen=/tmp/base --variant new

The expert Go build (`go-expert`, bench/goexpert: the original's Go stack with frames built
once, one writev per socket and group commit, `make bench-build` builds it) runs the
scenarios whose targets were set against such a build (GO_EXPERT_SCENARIOS); it is run
without the original's history index (`-index=false`), its fastest form, unless
`--go-index` asks for the original's schema.

Runs vary by 15-20 % on this machine, and by more from one hour to the next: compare the
servers within one invocation only, and prefer the per-CPU-second columns when the load
generator was the limit.
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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from bench.figures import every_run, family, headline, median_run, on_ws_port, table
from tests.conftest import free_port, free_ports

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# run.py's scenario -> (module, its sub-command, fastchat's URL: "fast" is WS_PORT, "http"
# is PORT). The baseline has one port for both.
SCENARIOS: dict[str, tuple[str, str, str]] = {
    "fanout": ("bench.loadgen", "fanout", "fast"),
    "ingest": ("bench.loadgen", "ingest", "fast"),
    "paced": ("bench.loadgen", "paced", "fast"),
    "idle": ("bench.loadgen", "idle", "fast"),
    "unpipelined": ("bench.loadgen", "unpipelined", "fast"),
    # The same with a client_id in every message, as fastchat's own clients send.
    "unpipelined-ids": ("bench.loadgen", "unpipelined", "fast"),
    # The same through posts' live comments (JOIN_POST, POST_COMMENT).
    "unpipelined-comments": ("bench.loadgen", "unpipelined", "fast"),
    "unpipelined-comments-ids": ("bench.loadgen", "unpipelined", "fast"),
    "fanout-port": ("bench.loadgen", "fanout", "http"),
    "ingest-port": ("bench.loadgen", "ingest", "http"),
    "paced-port": ("bench.loadgen", "paced", "http"),
    "unpipelined-port": ("bench.loadgen", "unpipelined", "http"),
    "unpipelined-ids-port": ("bench.loadgen", "unpipelined", "http"),
    # What the embeddable comments widget (embed.js) sends: the PORT URL, client ids.
    "unpipelined-comments-ids-port": ("bench.loadgen", "unpipelined", "http"),
    "storm": ("bench.storm", "", "fast"),
    # The same storm as fastchat's own clients make it after a deploy: a room with history,
    # each client resuming (last_id, last_change) having missed 0-20 of its newest messages.
    "storm-resume": ("bench.storm", "", "fast"),
    "rest-health": ("bench.rest", "", "http"),
    "rest-history": ("bench.rest", "", "http"),
}
DEFAULT_SCENARIOS = ",".join(SCENARIOS)
# Run once by default (the others three times, the median shown).
ONCE = {"idle", "storm", "storm-resume", "rest-health", "rest-history"}
# Run five times: the verdict a few percent decide (issue 14's unpipelined bar is 1.04x the
# expert Go build, and on this shared machine one round's ratio ranged 0.84-1.13x in
# session 17), so a median of more rounds.
FIVE = {"unpipelined"}
# Nothing to measure on the baseline: it serves no HTTP.
FASTCHAT_ONLY = {"rest-health", "rest-history"}
HISTORY_PATH = "/api/v1/messages/general?limit=50"
# The expert Go build: built by `make bench-build`, run on the scenarios whose targets quote
# an expert Go build (issues 7 and 14), and on their `-port` twins through its one port. Not
# on the `-ids` ones: it stores a client_id but does not answer a retry with the stored
# message (no lookup, no unique index), so the figures would not be for the same work.
GO_EXPERT = ROOT / "build" / "goexpert"
GO_EXPERT_SCENARIOS = {"fanout", "ingest", "paced", "unpipelined", "unpipelined-comments", "storm"}


def sizes(quick: bool, idle: int | None) -> dict[str, list[str]]:
    """Load-generator arguments per scenario (`X-port` takes X's)."""
    if quick:
        plan = {
            "fanout": ["--clients", "300", "--senders", "4", "--window", "8", "--duration", "2"],
            "ingest": ["--rooms", "100", "--window", "8", "--duration", "2"],
            "paced": ["--clients", "300", "--interval-ms", "10", "--duration", "2"],
            "idle": ["--clients", str(idle or 1000), "--workers", "1"],
            "unpipelined": ["--clients", "150", "--rooms", "100", "--duration", "2"],
            "storm": ["--clients", "2000", "--concurrency", "200"],
        }
        wrk = ["--duration", "2"]
    else:
        plan = {
            "fanout": ["--clients", "1000", "--senders", "4", "--window", "8", "--duration", "5"],
            "ingest": ["--rooms", "500", "--window", "8", "--duration", "5"],
            "paced": ["--clients", "1000", "--interval-ms", "10", "--duration", "10"],
            # The file-descriptor hard limit here is 20,000 per process (issue 7).
            "idle": ["--clients", str(idle or 19_000), "--workers", "2"],
            "unpipelined": ["--clients", "750", "--rooms", "500", "--duration", "10"],
            "storm": ["--clients", "10000", "--concurrency", "200"],
        }
        wrk = ["--duration", "8"]
    plan["rest-health"] = ["--path", "/api/v1/health", *wrk]
    plan["rest-history"] = ["--path", HISTORY_PATH, "--seed", "200", "--seed-room", "general"]
    plan["rest-history"] += wrk
    plan["storm-resume"] = [*plan["storm"], "--history", "1000", "--resume", "20"]
    plan["unpipelined-ids"] = [*plan["unpipelined"], "--client-ids"]
    plan["unpipelined-comments"] = [*plan["unpipelined"], "--comments"]
    plan["unpipelined-comments-ids"] = [*plan["unpipelined-comments"], "--client-ids"]
    for name in SCENARIOS:
        if name.endswith("-port"):
            plan[name] = plan[on_ws_port(name)]
    return plan


# --------------------------------------------------------------------------------- servers


class Variant:
    """One side of an A/B: where the server's code and the load generator come from."""

    def __init__(self, spec: str = "") -> None:
        # NAME[:server=SRC_TREE][:loadgen=DIR][:args=LOADGEN ARGS][:env=VAR=VALUE,...]
        name, *parts = spec.split(":") if spec else [""]
        self.name = name
        self.server: Path | None = None
        self.loadgen = ROOT
        self.args: list[str] = []
        self.env: dict[str, str] = {}  # fastchat's extra environment (e.g. AUTH_SECRET)
        for part in parts:
            key, _, value = part.partition("=")
            if key == "server":
                self.server = Path(value).resolve()
            elif key == "loadgen":
                self.loadgen = Path(value).resolve()
            elif key == "args":
                self.args = shlex.split(value)
            elif key == "env":
                self.env = dict(pair.split("=", 1) for pair in value.split(",") if pair)
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


def pin(core: int | None) -> list[str]:
    if core is None:
        return []
    return ["taskset", "-c", str(core)]


class Running(NamedTuple):
    """A started server: its WebSocket fast port (fastchat's WS_PORT), its PID, fastchat's stats
    URL ("" for the others) and its HTTP port (fastchat's PORT; the others' only port)."""

    port: int
    pid: int
    stats_url: str
    http_port: int


@contextlib.contextmanager
def server(
    kind: str,
    workdir: Path,
    core: int | None,
    tree: Path | None = None,
    extra_env: dict[str, str] | None = None,
    go_index: bool = False,
) -> Iterator[Running]:
    """Start `kind` on fresh ports and a fresh database and yield it.
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
        port, ws_port = free_ports(2)  # distinct: the server refuses PORT == WS_PORT
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
        env.update(extra_env or {})
        cmd = [*pin(core), PY, "-m", "fastchat", "serve"]
        stats_url = f"http://127.0.0.1:{port}/api/v1/stats"
    else:  # the others: one port for everything, no stats URL
        port = ws_port = free_port()
        stats_url = ""
        if kind == "go-expert":
            index = f"-index={'true' if go_index else 'false'}"
            cmd = [*pin(core), str(GO_EXPERT), "-port", str(port), "-db", str(db), index]
        else:
            cmd = [*pin(core), PY, "-m", "bench.baseline_server", "--port", str(port)]
            cmd += ["--db", str(db)]
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
            yield Running(ws_port, proc.pid, stats_url, port)
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
    srv: Running,
    core: int | None,
    timeout: float,
    where: Path = ROOT,
) -> dict[str, Any]:
    module, sub, url = SCENARIOS[scenario]
    stats = srv.stats_url if family(scenario) not in ("idle", "rest") else ""
    cmd = [
        *pin(core),
        PY,
        "-m",
        module,
        *([sub] if sub else []),
        "--port",
        str(srv.http_port if url == "http" else srv.port),
        "--server-pid",
        str(srv.pid),
        *(["--stats-url", stats] if stats else []),
        # The posts to comment on are made through fastchat's API (the baseline has none).
        *(
            ["--posts-url", f"http://127.0.0.1:{srv.http_port}"]
            if "--comments" in args and stats
            else []
        ),
        *args,
    ]
    done = subprocess.run(cmd, cwd=where, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"loadgen {scenario} failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}"
        )
    return json.loads(done.stdout)


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


def write_record(
    record: dict[str, Any],
    results: dict[str, dict[str, dict[str, Any]]],
    variants: list[Variant],
    out_path: Path,
    started: float,
) -> str:
    """Write every run so far and the tables to `out_path`; return the tables."""
    text = table(results, record["runs"])
    if any(v.name for v in variants):
        text += "\n\n" + every_run(record["runs"])
    record["elapsed_s"] = round(time.time() - started, 1)
    record["table"] = text
    record["medians"] = results
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(record, indent=1))
    return text


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, in this order by default: {DEFAULT_SCENARIOS}",
    )
    parser.add_argument(
        "--servers",
        default="fastchat,baseline,go-expert",
        help="any of fastchat, baseline, go-expert (default all three)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per scenario and server, the median is shown "
        f"(default 1 for {', '.join(sorted(ONCE))}, 5 for {', '.join(sorted(FIVE))}, "
        "3 for the others; 1 with --quick)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="where to write every run (default build/bench/results.json, "
        "build/bench-quick.json with --quick; `make bench-record` writes the tracked "
        "bench/results.json)",
    )
    parser.add_argument(
        "--idle-connections", type=int, default=None, help="default 19,000 (1,000 with --quick)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--go-index",
        action="store_true",
        help="run the expert Go build with the original's history indexes "
        "(messages(room, id), comments(post_id, id)); by default it has none",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME[:server=TREE][:loadgen=DIR][:args=ARGS][:env=VAR=VALUE,...]",
        help="an A/B side (repeatable; the variants alternate inside every repeat): the server "
        "from source tree TREE (default this one), bench.loadgen run from DIR (default this "
        "one), extra load-generator ARGS, extra environment for fastchat (e.g. "
        "env=AUTH_SECRET=s with args=--token-secret s: every client holds a token)",
    )
    parser.add_argument(
        "--wait-quiet",
        action="store_true",
        help="before each run, wait (up to 90 s) for a second with both cores under 10 %% busy",
    )
    opts = parser.parse_args()
    # SIGTERM (`timeout`, a supervisor) unwinds like ^C: the running server and load
    # generator are stopped, and the runs so far are already written.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
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
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {DEFAULT_SCENARIOS}")
    servers = [s for s in opts.servers.split(",") if s]
    unknown = [s for s in servers if s not in ("fastchat", "baseline", "go-expert")]
    if unknown:
        raise SystemExit(f"unknown servers {unknown}; known: fastchat, baseline, go-expert")
    if "go-expert" in servers and not GO_EXPERT.exists():
        raise SystemExit(f"{GO_EXPERT} is missing: `make bench-build` builds it")
    out_path = opts.json or (
        ROOT / ("build/bench-quick.json" if opts.quick else "build/bench/results.json")
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
    text = ""
    with tempfile.TemporaryDirectory(prefix="fastchat-bench-") as tmp:
        workdir = Path(tmp)
        for scenario in scenarios:
            repeat = opts.repeat or (
                1 if opts.quick or scenario in ONCE else 5 if scenario in FIVE else 3
            )
            sides = [
                (k, v)
                for k in servers
                for v in variants
                if not (k == "baseline" and scenario in FASTCHAT_ONLY)
                and not (k == "go-expert" and on_ws_port(scenario) not in GO_EXPERT_SCENARIOS)
            ]
            # The others have one port: their X-port is their X, when X ran in this invocation.
            same = (
                record["runs"].get(on_ws_port(scenario), {}) if scenario.endswith("-port") else {}
            )
            reused = {
                label(k, v): same[label(k, v)]
                for k, v in sides
                if k != "fastchat" and label(k, v) in same
            }
            sides = [(k, v) for k, v in sides if label(k, v) not in reused]
            runs: dict[str, list[dict[str, Any]]] = {label(k, v): [] for k, v in sides}
            runs.update(reused)
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
                    extra = var.env if kind == "fastchat" else None
                    with server(kind, workdir, server_core, tree, extra, opts.go_index) as srv:
                        time.sleep(0.3)
                        r = loadgen(
                            scenario, plan[scenario] + var.args, srv, gen_core, 600, var.loadgen
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
            # After every scenario, so that a run stopped (a time bound, ^C) keeps what it did.
            text = write_record(record, results, variants, out_path, started)
    elapsed = time.time() - started
    print()
    print(
        f"fastchat vs {' and '.join(s for s in servers if s != 'fastchat') or 'itself'} "
        f"({record['date']}, {elapsed:.0f} s, server on core 0, "
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
