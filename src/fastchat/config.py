"""Settings: one frozen Struct, filled from flags and environment variables by the CLI.

Each setting is declared once, here: its type, default, range, environment variable and help
line; `fastchat serve`'s options are generated from these declarations (cli.py), and the
README's configuration table lists the same.
The original's names (HOST, PORT, DB_PATH) and WS_PORT are kept as they are.
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from fastchat.protocol import Limits

# The settings that need an optional extra (pyproject.toml): the extra, and the modules it
# installs. The imports themselves are late (broker.py, server.py's store_for); this lets
# `fastchat serve` name the extra before it starts instead of failing halfway up.
EXTRAS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "broker_url": ("redis", ("redis",)),
    "database_url": ("postgres", ("psycopg", "psycopg_pool")),
}


# The password of a URL (scheme://user:PASSWORD@host...), masked in the settings' repr.
_PASSWORD: Final = re.compile(r"(://[^:/@]*:)[^@]*@")


def setting(env: str, help: str, ge: float | None = None, le: float | None = None) -> Meta:
    """A setting's environment variable, its help line and its range: the one place each is
    said. The CLI's options are made from these (cli.py); the README's table says the same."""
    return Meta(ge=ge, le=le, extra={"env": env, "help": help})


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: Annotated[str, setting("HOST", "Address both ports listen on.")] = "0.0.0.0"
    port: Annotated[int, setting("PORT", "HTTP port: pages, REST, and /ws.", 0, 65535)] = 8080
    ws_port: Annotated[int, setting("WS_PORT", "Fast WebSocket port (path /ws).", 0, 65535)] = 8081
    db_path: Annotated[str, setting("DB_PATH", "SQLite database file (created if missing).")] = (
        "./chat.db"
    )
    database_url: Annotated[
        str,
        setting(
            "DATABASE_URL",
            "postgresql://user@host:port/db: PostgreSQL instead of the SQLite file at DB_PATH.",
        ),
    ] = ""
    synchronous: Annotated[
        Literal["OFF", "NORMAL", "FULL", "EXTRA"],
        setting(
            "SQLITE_SYNCHRONOUS",
            "SQLite durability: NORMAL survives a process crash, FULL a power loss.",
        ),
    ] = "NORMAL"
    busy_timeout_ms: Annotated[
        int,
        setting(
            "SQLITE_BUSY_TIMEOUT_MS",
            "How long a write waits for a database locked by another process.",
            0,
            600_000,
        ),
    ] = 5000
    db_max_bytes: Annotated[
        int,
        setting(
            "DB_MAX_BYTES",
            "Cap on the database size (0: none); past it, writes are refused, reads go on.",
            0,
            1 << 50,
        ),
    ] = 0
    public_ws_url: Annotated[
        str,
        setting(
            "PUBLIC_WS_URL",
            "WebSocket URL the browser uses (behind a proxy); default: same host, WS_PORT.",
        ),
    ] = ""
    max_frame_bytes: Annotated[
        int, setting("MAX_FRAME_BYTES", "Largest WebSocket message accepted.", 256, 16 << 20)
    ] = 64 * 1024
    max_message_chars: Annotated[
        int,
        setting("MAX_MESSAGE_CHARS", "Longest chat message or comment, in characters.", 1, 1 << 20),
    ] = 4000
    history_limit_max: Annotated[
        int,
        setting(
            "HISTORY_LIMIT_MAX",
            "Most messages or comments one history page may hold (REST `limit`, HISTORY).",
            1,
            100_000,
        ),
    ] = 1000
    outbound_high_water: Annotated[
        int,
        setting(
            "OUTBOUND_HIGH_WATER",
            "Bytes queued for one client before it is dropped as slow.",
            4096,
            1 << 30,
        ),
    ] = 1024 * 1024
    rate_limit: Annotated[
        float,
        setting(
            "RATE_LIMIT",
            "Events per second per connection (token bucket); 0 turns it off.",
            0,
            1e9,
        ),
    ] = 50.0
    rate_burst: Annotated[float, setting("RATE_BURST", "Burst allowed above the rate.", 1, 1e9)] = (
        100.0
    )
    max_rooms_per_connection: Annotated[
        int,
        setting("MAX_ROOMS_PER_CONNECTION", "Rooms and posts one connection may join.", 1, 100_000),
    ] = 100
    presence_list_max: Annotated[
        int,
        setting(
            "PRESENCE_LIST_MAX",
            "Rooms with more members get presence as counts only (PRESENCE events), at most "
            "twice a second; smaller ones get each join and leave.",
            1,
            10_000_000,
        ),
    ] = 100
    max_connections: Annotated[
        int,
        setting(
            "MAX_CONNECTIONS",
            "WebSocket connections (both ports); more are refused at the handshake.",
            1,
            10_000_000,
        ),
    ] = 10_000
    allowed_origins: Annotated[
        str,
        setting(
            "ALLOWED_ORIGINS",
            "Comma-separated browser origins allowed to open WebSockets and write through "
            "REST (and given CORS headers); empty: the page's own host; '*': any.",
        ),
    ] = ""
    auth_secret: Annotated[
        str,
        setting(
            "AUTH_SECRET",
            "Verify tokens (JWT) signed HS256 with this secret; empty: no tokens (anonymous, "
            "as the original).",
        ),
    ] = ""
    auth_public_key: Annotated[
        str,
        setting(
            "AUTH_PUBLIC_KEY",
            "Verify tokens signed RS256 or ES256 (by the key's type) with this PEM file's "
            "public key, instead of AUTH_SECRET.",
        ),
    ] = ""
    auth_audience: Annotated[
        str, setting("AUTH_AUDIENCE", "When set, a token's `aud` must name it.")
    ] = ""
    auth_issuer: Annotated[str, setting("AUTH_ISSUER", "When set, a token's `iss` must be it.")] = (
        ""
    )
    auth_required: Annotated[
        bool,
        setting(
            "AUTH_REQUIRED",
            "Refuse WebSockets and REST requests without a token (401 `unauthorized`).",
        ),
    ] = False
    private_rooms: Annotated[
        str,
        setting(
            "PRIVATE_ROOMS",
            "Comma-separated room patterns (fnmatch: `team-*`) only tokens whose `rooms` "
            "match may join, read or see.",
        ),
    ] = ""
    read_only_rooms: Annotated[
        str,
        setting(
            "READ_ONLY_ROOMS",
            "Comma-separated room patterns where only tokens whose `publish` matches, and "
            "moderators, may post.",
        ),
    ] = ""
    edit_window_seconds: Annotated[
        float,
        setting(
            "EDIT_WINDOW_SECONDS",
            "Seconds after sending during which token users may edit and delete their own "
            "messages and comments (moderators may at any time).",
            0,
            10 * 365 * 86400,
        ),
    ] = 900.0
    ping_interval: Annotated[
        float,
        setting(
            "PING_INTERVAL", "Seconds of silence before the fast port pings a client.", 0.5, 3600
        ),
    ] = 20.0
    ping_timeout: Annotated[
        float,
        setting(
            "PING_TIMEOUT", "Seconds to wait for the pong before dropping the client.", 0.5, 3600
        ),
    ] = 20.0
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"], setting("LOG_LEVEL", "Least severe logged.")
    ] = "info"
    log_format: Annotated[
        Literal["auto", "json", "text"],
        setting("LOG_FORMAT", "auto: text in a terminal, JSON lines otherwise."),
    ] = "auto"
    seed_posts: Annotated[bool, setting("SEED_POSTS", "Create sample posts in a new database.")] = (
        True
    )
    search: Annotated[
        bool,
        setting(
            "SEARCH",
            "Full-text search (GET /api/v1/search). On SQLite its index costs 5-25 % of ingest "
            "CPU; off, nothing is indexed until it is on again.",
        ),
    ] = True
    test_endpoints: Annotated[
        bool,
        setting(
            "TEST_ENDPOINTS",
            "The original's GET /api/v1/test/* endpoints, which store on GET; turn them off "
            "in production.",
        ),
    ] = True
    shutdown_timeout: Annotated[
        float,
        setting(
            "SHUTDOWN_TIMEOUT",
            "Seconds SIGTERM waits for queued writes to commit before closing connections.",
            0.1,
            3600,
        ),
    ] = 10.0
    conformance_echo: Annotated[
        bool,
        setting(
            "CONFORMANCE_ECHO",
            "Testing only: an echo endpoint at WS_PORT/echo for the Autobahn suite.",
        ),
    ] = False
    workers: Annotated[
        int,
        setting(
            "WORKERS",
            "Processes sharing both ports (SO_REUSEPORT) and the database; more than 1 needs "
            "BROKER_URL.",
            1,
            64,
        ),
    ] = 1
    broker_url: Annotated[
        str,
        setting(
            "BROKER_URL",
            "Relay between workers and nodes, e.g. redis://127.0.0.1:6379/0 (docs/SCALING.md).",
        ),
    ] = ""
    heartbeat_seconds: Annotated[
        float,
        setting(
            "HEARTBEAT_SECONDS",
            "Clustered: how often a node announces its presence; silent for 3 of these = gone.",
            0.05,
            60,
        ),
    ] = 2.0

    def problem(self) -> tuple[str, str] | None:
        """(setting, why) for the first combination that cannot work, else None. Each value
        alone is checked by its type and range."""
        if self.workers > 1 and not self.broker_url:
            return (
                "workers",
                "more than one worker needs BROKER_URL (e.g. redis://127.0.0.1:6379/0) so "
                "that a message sent to one worker reaches the members on the others",
            )
        if self.database_url and not self.database_url.startswith(("postgresql://", "postgres://")):
            return "database_url", f"{self.database_url!r} is not a postgresql:// URL"
        if self.broker_url and not self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return "broker_url", f"{self.broker_url!r} is not a redis:// URL"
        if self.port and self.port == self.ws_port:
            return "ws_port", "PORT and WS_PORT must differ"
        if self.auth_secret and self.auth_public_key:
            return "auth_public_key", "set AUTH_SECRET (HS256) or AUTH_PUBLIC_KEY, not both"
        if not (self.auth_secret or self.auth_public_key):
            for name in ("auth_required", "private_rooms", "read_only_rooms"):
                if getattr(self, name):
                    return name, f"{env_var(name)} needs tokens: set AUTH_SECRET or AUTH_PUBLIC_KEY"
        return None

    def __repr__(self) -> str:
        # Settings reach logs and tracebacks; secrets must not (docs: tokens and secrets
        # never appear in logs): AUTH_SECRET, and the passwords in DATABASE_URL and BROKER_URL.
        def shown(name: str) -> str:
            value = getattr(self, name)
            if name == "auth_secret" and value:
                return "'***'"
            if name in ("database_url", "broker_url") and value:
                return repr(_PASSWORD.sub(r"\1***@", value))
            return repr(value)

        return f"Settings({', '.join(f'{f}={shown(f)}' for f in self.__struct_fields__)})"

    def missing_extra(self) -> tuple[str, str] | None:
        """(VARIABLE, extra) for the first setting in use whose optional extra is not
        installed, else None."""
        for name, (extra, modules) in EXTRAS.items():
            if getattr(self, name) and not all(find_spec(m) for m in modules):
                return env_var(name), extra
        return None

    @property
    def limits(self) -> Limits:
        return Limits(
            max_frame_bytes=self.max_frame_bytes,
            max_message_chars=self.max_message_chars,
            rate=self.rate_limit,
            burst=max(self.rate_burst, 1.0),
            max_rooms=self.max_rooms_per_connection,
            presence_list_max=self.presence_list_max,
            history_limit_max=self.history_limit_max,
        )

    @property
    def origins(self) -> frozenset[str]:
        """Allowed browser origins; empty: same host as the page; `*`: any."""
        return frozenset(
            o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()
        )


def env_var(name: str) -> str:
    """The environment variable of the setting `name`, as declared above."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    meta = next(f.type for f in info.fields if f.name == name)
    assert isinstance(meta, msgspec.inspect.Metadata) and meta.extra, name
    return str(meta.extra["env"])
