"""Settings: one frozen Struct, filled from flags and environment variables by the CLI.

Every field is documented in the README's configuration table and in `fastchat serve --help`.
The original's names (HOST, PORT, DB_PATH) and WS_PORT are kept as they are.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from fastchat.protocol import Limits


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "0.0.0.0"
    port: int = 8080
    ws_port: int = 8081
    db_path: str = "./chat.db"
    database_url: str = ""
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    busy_timeout_ms: int = 5000
    db_max_bytes: int = 0
    public_ws_url: str = ""
    max_frame_bytes: int = 64 * 1024
    max_message_chars: int = 4000
    history_limit_max: int = 1000
    outbound_high_water: int = 1024 * 1024
    rate_limit: float = 50.0
    rate_burst: float = 100.0
    max_rooms_per_connection: int = 100
    presence_list_max: int = 100
    max_connections: int = 10_000
    allowed_origins: str = ""
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"
    seed_posts: bool = True
    test_endpoints: bool = True
    shutdown_timeout: float = 10.0
    conformance_echo: bool = False
    workers: int = 1
    broker_url: str = ""
    heartbeat_seconds: float = 2.0

    @property
    def limits(self) -> Limits:
        return Limits(
            max_frame_bytes=self.max_frame_bytes,
            max_message_chars=self.max_message_chars,
            rate=self.rate_limit,
            burst=max(self.rate_burst, 1.0),
            max_rooms=self.max_rooms_per_connection,
            presence_list_max=self.presence_list_max,
        )

    @property
    def origins(self) -> frozenset[str]:
        """Allowed browser origins; empty: same host as the page; `*`: any."""
        return frozenset(
            o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()
        )
