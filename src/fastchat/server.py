"""The one module that wires everything together: loop, store, hub, service, both ports.

`fastchat serve` runs `run(settings)`: one process, one uvloop loop holding Granian embedded
(Litestar app on PORT), the picows fast port (WS_PORT), the hub, and the store's writer thread.
SIGTERM/SIGINT stop it gracefully: stop accepting, commit and deliver everything queued,
close every WebSocket with 1001 (going away), exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import uvloop
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server as GranianServer

from fastchat import __version__, logs
from fastchat._hub import Hub
from fastchat.answers import Answers, Health, NewestPages
from fastchat.app import create_app
from fastchat.app.head import HeadAsGet
from fastchat.auth import Auth
from fastchat.broker import broker_for
from fastchat.config import Settings
from fastchat.errors import GOING_AWAY
from fastchat.fastport import keepalive, protocol_factory, start_fast_port
from fastchat.front import start_front
from fastchat.lifecycle import Readiness
from fastchat.metrics import Metrics
from fastchat.service import Chat
from fastchat.sqlitestore import SqliteStore, without_memory_statistics
from fastchat.store import Store, StoreError

log = logging.getLogger("fastchat")


def store_for(settings: Settings) -> Store:
    """SQLite at DB_PATH (the embedded default), or PostgreSQL at DATABASE_URL."""
    if settings.database_url:
        from fastchat.pgstore import PostgresStore  # psycopg only when asked for

        return PostgresStore(settings.database_url, seed=settings.seed_posts)
    return SqliteStore(
        settings.db_path,
        synchronous=settings.synchronous,
        seed=settings.seed_posts,
        busy_timeout_ms=settings.busy_timeout_ms,
        max_bytes=settings.db_max_bytes,
    )


async def serve(settings: Settings, worker: int = 0, metrics_dir: str = "") -> int:
    """The server; `worker` (1..N) and `metrics_dir` (the supervisor's, shared by the
    workers for their metrics) only with `--workers`."""
    loop = asyncio.get_running_loop()
    # From the first moment: a signal during startup stops the server once it is up, cleanly.
    stop = asyncio.Event()
    _take_stop_signals(loop, stop.set)
    store = store_for(settings)
    store.search_enabled = settings.search
    hub = Hub(loop, high_water=settings.outbound_high_water)
    broker = broker_for(settings.broker_url)
    # Clustered, committed rows carry their room's previous id (delivery.py `_committed_here`).
    store.track_previous = broker.clustered
    chat = Chat(hub, store, settings.limits, broker, Auth(settings))
    metrics = Metrics(chat, worker=worker, share_dir=metrics_dir)
    readiness = Readiness()  # GET /api/v1/ready
    store.on_batch = metrics.on_batch
    try:
        await store.open(chat.on_committed)
        await chat.on_store_open()
        readiness.store_open = True
    except StoreError as exc:
        # One line for people, not a log record beside it (stderr is the log too).
        print(f"fastchat: {exc}", file=sys.stderr)
        await store.close()
        return 1
    try:
        await broker.start(chat)
    except Exception as exc:
        print(f"fastchat: cannot reach the broker {settings.broker_url}: {exc}", file=sys.stderr)
        await store.close()
        return 1

    try:
        fast = await start_fast_port(chat, settings)
    except OSError as exc:
        print(f"fastchat: cannot listen on WS_PORT {settings.ws_port}: {exc}", file=sys.stderr)
        await chat.broker.close()
        await store.close()
        return 1
    readiness.ws_port_bound = True
    pinger = loop.create_task(keepalive(chat, settings.ping_interval, settings.ping_timeout))
    heartbeat = (
        loop.create_task(chat.rooms.heartbeat(settings.heartbeat_seconds))
        if broker.clustered
        else None
    )
    ws_port = fast.sockets[0].getsockname()[1]

    # Granian serves the Litestar app on a Unix socket of this process's own; PORT is the
    # front's (front.py), which keeps `/ws` upgrades on the picows path and relays the rest.
    http_dir = tempfile.mkdtemp(prefix="fastchat-http-")
    http_socket = os.path.join(http_dir, "granian.sock")
    # Created inside the running loop (DESIGN.md pitfall); it installs no signal handlers.
    # The answers PORT's front gives itself and Litestar's handlers give from the same bytes.
    pages = NewestPages(chat.delivery.versions, 0 if chat.clustered else 4096)
    health = Health(chat.store_health)
    http = GranianServer(
        HeadAsGet(create_app(chat, settings, metrics.registry, readiness, pages, health)),
        uds=Path(http_socket),
        interface=Interfaces.ASGI,
        websockets=True,
        backlog=2048,
        log_enabled=settings.log_level == "debug",
        log_level=LogLevels.warning,
    )
    logs.configure(settings.log_level, settings.log_format)  # Granian's __init__ reset logging
    http_task = loop.create_task(http.serve())
    servers = [fast]
    failed = None
    if not await _listening(http_socket, http_task):
        failed = "the HTTP server did not start"
    else:
        try:
            servers.append(
                await start_front(
                    settings.host,
                    settings.port,
                    protocol_factory(chat, settings, "http"),
                    http_socket,
                    # The testing-only echo (CONFORMANCE_ECHO) is judged on picows' path too.
                    paths=(b"/ws", b"/echo") if settings.conformance_echo else (b"/ws",),
                    route=Answers(chat, pages, health, settings.history_limit_max).route,
                    reuse_port=settings.workers > 1,
                )
            )
        except OSError as exc:
            failed = f"cannot listen on PORT {settings.port}: {exc}"
    if failed is not None:
        print(f"fastchat: {failed}", file=sys.stderr)
        if heartbeat is not None:
            heartbeat.cancel()
        await _shutdown(settings, servers, pinger, http, http_task, store, chat, hub)
        shutil.rmtree(http_dir, ignore_errors=True)
        return 1
    readiness.http_port_bound = True
    metrics.start()
    settle_gc()

    shown = settings.host if settings.host not in ("0.0.0.0", "::", "") else "localhost"
    print(
        f"fastchat {__version__} ready: http://{shown}:{settings.port}  "
        f"ws://{shown}:{ws_port}/ws (fast)  ws://{shown}:{settings.port}/ws  "
        f"db={store.location}",
        flush=True,
    )

    stop_task = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({stop_task, http_task}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if http_task in done:
        stop_task.cancel()
        log.error("HTTP server stopped unexpectedly: %s", http_task.exception())
        exit_code = 1

    if heartbeat is not None:
        heartbeat.cancel()
    readiness.draining = True  # from here /api/v1/ready answers 503 until the exit
    metrics.stop()
    await _shutdown(settings, servers, pinger, http, http_task, store, chat, hub)
    shutil.rmtree(http_dir, ignore_errors=True)
    return exit_code


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _take_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT, at any instant up to the exit, ask for the graceful stop: never
    the default action, death by signal (exit -15), which a repeated SIGTERM (systemd,
    Kubernetes and people all send a second one) used to hit in the few microseconds our
    handlers were being swapped for SIG_IGN at the end (a flaky test caught it).

    So no handler is ever swapped: both signals are blocked in this thread before any other
    thread exists (the store's, Granian's and libuv's inherit the mask), and one thread takes
    them with sigwait and hands each to the loop. A signal after the loop is gone stays
    pending, blocked in every thread, until the process exits with its own status."""
    threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    if threads > 1:  # a thread that does not block them could still take one, and die of it
        log.warning("%d threads run before the stop signals are blocked", threads - 1)
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def take() -> None:
        while True:
            signal.sigwait(_STOP_SIGNALS)
            try:
                loop.call_soon_threadsafe(stop)
            except RuntimeError:  # the loop is closed: the process is on its way out
                return

    threading.Thread(target=take, name="fastchat-signals", daemon=True).start()


async def _listening(path: str, http_task: asyncio.Task[Any]) -> bool:
    """Wait until Granian accepts connections on its socket, so the ready line tells the
    truth: Granian binds inside its worker task and gives no signal when it has."""
    deadline = asyncio.get_running_loop().time() + 30
    while not http_task.done() and asyncio.get_running_loop().time() < deadline:
        try:
            _, writer = await asyncio.open_unix_connection(path)
        except OSError:
            await asyncio.sleep(0.005)
            continue
        writer.close()
        return True
    return False


async def _shutdown(
    settings: Settings,
    servers: list[asyncio.Server],
    pinger: asyncio.Task[None],
    http: GranianServer,
    http_task: asyncio.Task[Any],
    store: Store,
    chat: Chat,
    hub: Hub,
) -> None:
    log.info("shutting down: draining writes, then closing connections with 1001")
    # WS_PORT stops accepting; PORT goes on serving HTTP through the drain (readiness says
    # 503, REST writes are committed) but refuses new WebSockets (fastport: 503).
    chat.draining = True
    fast, *front = servers
    fast.close()
    pinger.cancel()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.shutdown_timeout
    # Everything queued is committed and delivered before any socket closes.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(store.drained(), settings.shutdown_timeout)
    hub.flush()
    for member in hub.connections():
        hub.close(member, GOING_AWAY, "server shutting down")
    # Each connection leaves the hub when its close completes; give them a moment.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            chat.connections.all_closed(), max(0.0, min(deadline - loop.time(), 2.0))
        )
    for server in front:
        server.close()
    http.stop()  # type: ignore[no-untyped-call]
    try:
        await asyncio.wait_for(
            http_task, timeout=max(0.1, deadline - asyncio.get_running_loop().time())
        )
    except (TimeoutError, Exception) as exc:  # shutdown must go on
        log.warning("HTTP server did not stop cleanly: %r", exc)
    await store.close()
    await chat.broker.close()
    log.info("stopped")


# Python's cycle collector, once the server is up (`settle_gc`): young objects collected
# every 50,000 allocations of containers instead of 700, the older generations as often
# relative to that as by default. Measured (issue 14, 10,000 clients joining one room, the
# server on one core, `python -m bench.storm`, three pairs): the collector took 6-7 % of
# the join's CPU, walking the objects of every connection already in; settled, all joined
# in 1.70-1.76 s instead of 1.84-1.86 s (join CPU 1.52-1.58 s instead of 1.67-1.71), and
# 1.94-1.95 s instead of 2.11-2.15 s with every client resuming; the RSS 1 s after all left
# was the same (88-91 MB): a connection's objects are freed by their reference counts, not
# by the collector.
GC_THRESHOLDS: Final = (50_000, 10, 10)


def settle_gc() -> None:
    """What startup built (modules, the app, the store, the hub) lives as long as the
    process: collect what it left, and take the rest out of the collector's sight
    (`gc.freeze`), so that its collections walk only what came after; then GC_THRESHOLDS."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    if not settings.database_url:
        without_memory_statistics()  # before any connection (sqlitestore)
    for name, port in (("PORT", settings.port), ("WS_PORT", settings.ws_port)):
        problem = port_taken(settings.host, port)
        if problem:
            print(f"fastchat: cannot listen on {name} {port}: {problem}", file=sys.stderr)
            return 1
    if settings.workers > 1:
        return _run_workers(settings)
    return uvloop.run(serve(settings))


def port_taken(host: str, port: int) -> str | None:
    """Why `port` cannot be ours alone, or None. Granian listens with SO_REUSEPORT, and the
    kernel lets a second listener with it share a port, splitting the clients between two
    servers with different databases; so before anything listens, a probe binds the port
    without SO_REUSEPORT, which fails while anyone listens on it. (Our own workers share the
    ports on purpose: they start after this check, in the supervisor.)"""
    if port == 0:
        return None  # the kernel picks a free one
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            probe.bind(address)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return "another program (or another fastchat) is already listening on it"
        return exc.strerror or str(exc)
    return None


def _worker(settings: Settings, worker: int, metrics_dir: str) -> None:
    logs.configure(settings.log_level, settings.log_format)
    sys.exit(uvloop.run(serve(settings, worker, metrics_dir)))


def _run_workers(settings: Settings) -> int:
    """N processes, each the whole one-loop server, sharing both ports (SO_REUSEPORT) and
    the database; the broker relays between them. This process only supervises: it prepares
    the schema once, forwards SIGTERM/SIGINT, and exits with the worst exit status. The
    workers share their metrics through a temporary directory it makes and removes, so any
    worker's `/metrics` answers for all (workermetrics.py)."""
    try:
        store_for(settings).prepare()
    except StoreError as exc:
        print(f"fastchat: {exc}", file=sys.stderr)
        return 1
    metrics_dir = tempfile.mkdtemp(prefix="fastchat-metrics-")
    try:
        return _supervise(settings, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(settings: Settings, metrics_dir: str) -> int:
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_worker, args=(settings, i + 1, metrics_dir), name=f"fastchat-worker-{i + 1}"
        )
        for i in range(settings.workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for child in children:
        child.join()
        codes.append(child.exitcode or 0)
    return max(codes, key=abs)
