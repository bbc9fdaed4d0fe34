"""The `fastchat` command (also `python -m fastchat`).

Every setting is a flag and an environment variable (click's `envvar`), validated before the
server starts: a bad value is a clear message and exit status 2.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from fastchat import __version__
from fastchat.config import Settings

_CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=_CTX)
@click.version_option(__version__, "-V", "--version", prog_name="fastchat")
def main() -> None:
    """fastchat: real-time chat and live comments."""


@main.command(context_settings=_CTX)
@click.option(
    "--host",
    envvar="HOST",
    default="0.0.0.0",
    show_default=True,
    show_envvar=True,
    help="Address both ports listen on.",
)
@click.option(
    "--port",
    envvar="PORT",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    show_envvar=True,
    help="HTTP port: pages, REST, and /ws.",
)
@click.option(
    "--ws-port",
    envvar="WS_PORT",
    type=click.IntRange(0, 65535),
    default=8081,
    show_default=True,
    show_envvar=True,
    help="Fast WebSocket port (path /ws).",
)
@click.option(
    "--db-path",
    envvar="DB_PATH",
    default="./chat.db",
    show_default=True,
    show_envvar=True,
    help="SQLite database file (created if missing).",
)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default="",
    show_envvar=True,
    help="postgresql://user@host:port/db: PostgreSQL instead of the SQLite file at DB_PATH.",
)
@click.option(
    "--synchronous",
    envvar="SQLITE_SYNCHRONOUS",
    default="NORMAL",
    show_default=True,
    show_envvar=True,
    type=click.Choice(["OFF", "NORMAL", "FULL", "EXTRA"], case_sensitive=False),
    help="SQLite durability: NORMAL survives a process crash, FULL a power loss.",
)
@click.option(
    "--busy-timeout-ms",
    envvar="SQLITE_BUSY_TIMEOUT_MS",
    type=click.IntRange(0, 600_000),
    default=5000,
    show_default=True,
    show_envvar=True,
    help="How long a write waits for a database locked by another process.",
)
@click.option(
    "--db-max-bytes",
    envvar="DB_MAX_BYTES",
    type=click.IntRange(0, 1 << 50),
    default=0,
    show_default=True,
    show_envvar=True,
    help="Cap on the database size (0: none); past it, writes are refused, reads go on.",
)
@click.option(
    "--public-ws-url",
    envvar="PUBLIC_WS_URL",
    default="",
    show_envvar=True,
    help="WebSocket URL the browser uses (behind a proxy); default: same host, WS_PORT.",
)
@click.option(
    "--max-frame-bytes",
    envvar="MAX_FRAME_BYTES",
    type=click.IntRange(256, 16 << 20),
    default=64 * 1024,
    show_default=True,
    show_envvar=True,
    help="Largest WebSocket message accepted.",
)
@click.option(
    "--max-message-chars",
    envvar="MAX_MESSAGE_CHARS",
    type=click.IntRange(1, 1 << 20),
    default=4000,
    show_default=True,
    show_envvar=True,
    help="Longest chat message or comment, in characters.",
)
@click.option(
    "--outbound-high-water",
    envvar="OUTBOUND_HIGH_WATER",
    type=click.IntRange(4096, 1 << 30),
    default=1 << 20,
    show_default=True,
    show_envvar=True,
    help="Bytes queued for one client before it is dropped as slow.",
)
@click.option(
    "--rate-limit",
    envvar="RATE_LIMIT",
    type=click.FloatRange(0, 1e9),
    default=50.0,
    show_default=True,
    show_envvar=True,
    help="Events per second per connection (token bucket); 0 turns it off.",
)
@click.option(
    "--rate-burst",
    envvar="RATE_BURST",
    type=click.FloatRange(1, 1e9),
    default=100.0,
    show_default=True,
    show_envvar=True,
    help="Burst allowed above the rate.",
)
@click.option(
    "--max-rooms-per-connection",
    envvar="MAX_ROOMS_PER_CONNECTION",
    type=click.IntRange(1, 100_000),
    default=100,
    show_default=True,
    show_envvar=True,
    help="Rooms and posts one connection may join.",
)
@click.option(
    "--presence-list-max",
    envvar="PRESENCE_LIST_MAX",
    type=click.IntRange(1, 10_000_000),
    default=100,
    show_default=True,
    show_envvar=True,
    help="Rooms with more members get presence as counts only (PRESENCE events), at most "
    "twice a second; smaller ones get each join and leave.",
)
@click.option(
    "--max-connections",
    envvar="MAX_CONNECTIONS",
    type=click.IntRange(1, 10_000_000),
    default=10_000,
    show_default=True,
    show_envvar=True,
    help="WebSocket connections (both ports); more are refused at the handshake.",
)
@click.option(
    "--allowed-origins",
    envvar="ALLOWED_ORIGINS",
    default="",
    show_envvar=True,
    help="Comma-separated browser origins allowed to open WebSockets and write through REST "
    "(and given CORS headers); empty: the page's own host; '*': any.",
)
@click.option(
    "--ping-interval",
    envvar="PING_INTERVAL",
    type=click.FloatRange(0.5, 3600),
    default=20.0,
    show_default=True,
    show_envvar=True,
    help="Seconds of silence before the fast port pings a client.",
)
@click.option(
    "--ping-timeout",
    envvar="PING_TIMEOUT",
    type=click.FloatRange(0.5, 3600),
    default=20.0,
    show_default=True,
    show_envvar=True,
    help="Seconds to wait for the pong before dropping the client.",
)
@click.option(
    "--log-level",
    envvar="LOG_LEVEL",
    default="info",
    show_default=True,
    show_envvar=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.option(
    "--log-format",
    envvar="LOG_FORMAT",
    default="auto",
    show_default=True,
    show_envvar=True,
    type=click.Choice(["auto", "json", "text"], case_sensitive=False),
    help="auto: text in a terminal, JSON lines otherwise.",
)
@click.option(
    "--workers",
    envvar="WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    show_envvar=True,
    help="Processes sharing both ports (SO_REUSEPORT) and the database; more than 1 needs "
    "BROKER_URL.",
)
@click.option(
    "--broker-url",
    envvar="BROKER_URL",
    default="",
    show_envvar=True,
    help="Relay between workers and nodes, e.g. redis://127.0.0.1:6379/0 (docs/SCALING.md).",
)
@click.option(
    "--heartbeat-seconds",
    envvar="HEARTBEAT_SECONDS",
    type=click.FloatRange(0.05, 60),
    default=2.0,
    show_default=True,
    show_envvar=True,
    help="Clustered: how often a node announces its presence; silent for 3 of these = gone.",
)
@click.option(
    "--conformance-echo/--no-conformance-echo",
    envvar="CONFORMANCE_ECHO",
    default=False,
    show_envvar=True,
    help="Testing only: an echo endpoint at WS_PORT/echo for the Autobahn suite.",
)
@click.option(
    "--reload",
    envvar="RELOAD",
    is_flag=True,
    default=False,
    show_envvar=True,
    help="Development: restart when sources, templates or static files change.",
)
@click.option(
    "--seed-posts/--no-seed-posts",
    envvar="SEED_POSTS",
    default=True,
    show_default=True,
    show_envvar=True,
    help="Create sample posts in a new database.",
)
@click.option(
    "--test-endpoints/--no-test-endpoints",
    envvar="TEST_ENDPOINTS",
    default=True,
    show_default=True,
    show_envvar=True,
    help="The original's GET /api/v1/test/* endpoints, which store on GET; turn them off "
    "in production.",
)
def serve(**options: Any) -> None:
    """Run the server: pages and REST on PORT, WebSockets on WS_PORT and PORT."""
    if options.pop("reload"):
        from fastchat import devreload

        args = sys.argv[sys.argv.index("serve") + 1 :] if "serve" in sys.argv else []
        argv = [a for a in args if a != "--reload"]
        sys.exit(devreload.run(argv))
    options["synchronous"] = options["synchronous"].upper()
    options["log_level"] = options["log_level"].lower()
    options["log_format"] = options["log_format"].lower()
    settings = Settings(**options)
    if settings.workers > 1 and not settings.broker_url:
        raise click.BadParameter(
            "more than one worker needs BROKER_URL (e.g. redis://127.0.0.1:6379/0) so that a "
            "message sent to one worker reaches the members on the others",
            param_hint="--workers",
        )
    if settings.database_url and not settings.database_url.startswith(
        ("postgresql://", "postgres://")
    ):
        raise click.BadParameter(
            f"{settings.database_url!r} is not a postgresql:// URL", param_hint="--database-url"
        )
    if settings.broker_url and not settings.broker_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise click.BadParameter(
            f"{settings.broker_url!r} is not a redis:// URL", param_hint="--broker-url"
        )
    if settings.port and settings.port == settings.ws_port:
        raise click.BadParameter("PORT and WS_PORT must differ", param_hint="--ws-port")

    from fastchat.server import run  # imported late: `--help` stays fast

    sys.exit(run(settings))


@main.command(context_settings=_CTX)
@click.option(
    "--db-path",
    envvar="DB_PATH",
    default="./chat.db",
    show_default=True,
    show_envvar=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The live database to copy.",
)
@click.argument("dest", type=click.Path(dir_okay=False))
def backup(db_path: str, dest: str) -> None:
    """Copy the database to DEST while the server keeps running (SQLite online backup)."""
    from fastchat.backup import backup as run_backup

    pages = run_backup(db_path, dest)
    click.echo(f"backed up {db_path} to {dest} ({pages} pages)")
