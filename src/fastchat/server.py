"""The one module that wires everything together: loop, store, hub, service, both ports.

`fastchat serve` runs `run(settings)`: one process, one uvloop loop holding Granian embedded
(Litestar app on PORT), the picows fast port (WS_PORT), the hub, and the store's writer thread.
SIGTERM/SIGINT stop it gracefully: stop accepting, commit and deliver everything queued,
close every WebSocket with 1001 (going away), exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import uvloop
from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server as GranianServer

from fastchat import __version__, logs
from fastchat._hub import Hub
from fastchat.app import create_app
from fastchat.config import Settings
from fastchat.fastport import keepalive, start_fast_port
from fastchat.metrics import Metrics
from fastchat.service import Chat
from fastchat.store import Store, StoreError

log = logging.getLogger("fastchat")


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> int:
    loop = asyncio.get_running_loop()
    store = Store(
        settings.db_path,
        synchronous=settings.synchronous,
        seed=settings.seed_posts,
        busy_timeout_ms=settings.busy_timeout_ms,
        max_bytes=settings.db_max_bytes,
    )
    hub = Hub(loop, high_water=settings.outbound_high_water)
    chat = Chat(hub, store, settings.limits)
    metrics = Metrics(chat)
    store.on_batch = metrics.on_batch
    try:
        store.open(loop, chat.on_committed)
    except StoreError as exc:
        log.error("%s", exc)
        print(f"fastchat: {exc}", file=sys.stderr)
        return 1
    chat.on_store_open()

    fast = await start_fast_port(chat, settings)
    pinger = loop.create_task(keepalive(chat, settings.ping_interval, settings.ping_timeout))
    ws_port = fast.sockets[0].getsockname()[1]

    # Created inside the running loop (DESIGN.md pitfall); it installs no signal handlers.
    http = GranianServer(
        create_app(chat, settings, metrics.registry),
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        websockets=True,
        backlog=2048,
        log_enabled=settings.log_level == "debug",
        log_level=LogLevels.warning,
    )
    logs.configure(settings.log_level, settings.log_format)  # Granian's __init__ reset logging
    http_task = loop.create_task(http.serve())

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    shown = settings.host if settings.host not in ("0.0.0.0", "::", "") else "localhost"
    print(
        f"fastchat {__version__} ready: http://{shown}:{settings.port}  "
        f"ws://{shown}:{ws_port}/ws (fast)  ws://{shown}:{settings.port}/ws  "
        f"db={settings.db_path}",
        flush=True,
    )
    if ready is not None:
        ready.set()

    stop_task = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({stop_task, http_task}, return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    if http_task in done:
        stop_task.cancel()
        log.error("HTTP server stopped unexpectedly: %s", http_task.exception())
        exit_code = 1

    await _shutdown(settings, fast, pinger, http, http_task, store, chat, hub)
    return exit_code


async def _shutdown(
    settings: Settings,
    fast: asyncio.Server,
    pinger: asyncio.Task[None],
    http: GranianServer,
    http_task: asyncio.Task[Any],
    store: Store,
    chat: Chat,
    hub: Hub,
) -> None:
    log.info("shutting down: draining writes, then closing connections with 1001")
    fast.close()  # stop accepting new fast-port connections
    pinger.cancel()
    deadline = asyncio.get_running_loop().time() + settings.shutdown_timeout
    # Everything queued is committed and delivered before any socket closes.
    while store.pending and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.005)
    hub.flush()
    for member in hub.connections():
        hub.close(member, 1001, "server shutting down")
    # Each connection leaves the hub when its close completes; give them a moment.
    close_deadline = min(deadline, asyncio.get_running_loop().time() + 2.0)
    while hub.connections() and asyncio.get_running_loop().time() < close_deadline:
        await asyncio.sleep(0.01)
    http.stop()  # type: ignore[no-untyped-call]
    try:
        await asyncio.wait_for(
            http_task, timeout=max(0.1, deadline - asyncio.get_running_loop().time())
        )
    except (TimeoutError, Exception) as exc:  # shutdown must go on
        log.warning("HTTP server did not stop cleanly: %r", exc)
    store.close()
    log.info("stopped")


def run(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    return uvloop.run(serve(settings))
