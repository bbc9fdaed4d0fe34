"""The baseline: a chat server written the obvious way, to measure fastchat against.

`websockets` (asyncio) + the standard library's `sqlite3` and `json`, speaking the subset of
fastchat's protocol the load generator uses:

* `{"type": "JOIN_ROOM", "room", "user"}` -> `{"type": "ROOM_JOINED", "room", "user", "members"}`
* `{"type": "CHAT_MESSAGE", "room", "user", "message", "client_id"?}` -> one INSERT and one
  COMMIT (WAL, synchronous=NORMAL, like fastchat's default), then
  `{"type": "CHAT_MESSAGE", "id", "room", "user", "message", "timestamp"}` to every member
  of the room, the sender included, through `websockets.broadcast`: one frame built per
  recipient and one `send(2)` per frame per recipient. That is the naive design whose cost
  fastchat's coalesced fan-out and group commit exist to remove; nothing here is tuned.
* `{"type": "JOIN_POST", "post_id"}` -> `{"type": "POST_JOINED", "post_id", "viewers"}`, and
  `{"type": "POST_COMMENT", "post_id", "user", "comment", "client_id"?}` -> the same INSERT
  and COMMIT into `comments`, then `{"type": "POST_COMMENT", "id", "post_id", "user",
  "comment", "timestamp"}` to every viewer of the post (any post id: there are no posts).

    python -m bench.baseline_server --port 9001 --db /tmp/baseline.db

prints a line containing "ready" once it listens, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
from datetime import UTC, datetime
from functools import partial
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    room TEXT NOT NULL,
    user TEXT NOT NULL,
    message TEXT NOT NULL,
    ts TEXT NOT NULL,
    client_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_room_id ON messages(room, id);
CREATE TABLE IF NOT EXISTS comments (
    id INTEGER PRIMARY KEY,
    post_id INTEGER NOT NULL,
    user TEXT NOT NULL,
    comment TEXT NOT NULL,
    ts TEXT NOT NULL,
    client_id TEXT
);
CREATE INDEX IF NOT EXISTS comments_post_id ON comments(post_id, id);
"""


# Compact separators only so that the frames match fastchat's byte for byte in shape (the load
# generator reads the id at a fixed offset); the encoding is still the stdlib's, per frame.
dumps = partial(json.dumps, separators=(",", ":"))


class Baseline:
    def __init__(self, db_path: str) -> None:
        self.db = sqlite3.connect(db_path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.rooms: dict[str, set[ServerConnection]] = {}

    def error(self, ws: ServerConnection, code: str, message: str) -> Any:
        return ws.send(dumps({"type": "ERROR", "code": code, "message": message}))

    async def handler(self, ws: ServerConnection) -> None:
        joined: set[str] = set()
        try:
            async for raw in ws:
                try:
                    event = json.loads(raw)
                    kind = event["type"]
                except (ValueError, KeyError, TypeError):
                    await self.error(ws, "invalid_json", "expected a JSON object with a type")
                    continue
                if kind == "JOIN_ROOM":
                    room = str(event.get("room", ""))
                    user = str(event.get("user", "anonymous"))
                    members = self.rooms.setdefault(room, set())
                    members.add(ws)
                    joined.add(room)
                    await ws.send(
                        dumps(
                            {
                                "type": "ROOM_JOINED",
                                "room": room,
                                "user": user,
                                "members": len(members),
                            }
                        )
                    )
                elif kind == "CHAT_MESSAGE":
                    room = str(event.get("room", ""))
                    if room not in joined:
                        await self.error(ws, "not_joined", f"join room {room!r} first")
                        continue
                    self.store_and_send("messages", "room", room, event)
                elif kind == "JOIN_POST":
                    post = str(event.get("post_id", ""))
                    viewers = self.rooms.setdefault(f"post:{post}", set())
                    viewers.add(ws)
                    joined.add(f"post:{post}")
                    await ws.send(
                        dumps({"type": "POST_JOINED", "post_id": post, "viewers": len(viewers)})
                    )
                elif kind == "POST_COMMENT":
                    post = str(event.get("post_id", ""))
                    if f"post:{post}" not in joined:
                        await self.error(ws, "not_joined", f"join post {post!r} first")
                        continue
                    self.store_and_send("comments", "post_id", post, event)
                else:
                    await self.error(ws, "unknown_type", f"unknown type {kind!r}")
        finally:
            for room in joined:
                members = self.rooms.get(room)
                if members is not None:
                    members.discard(ws)
                    if not members:
                        del self.rooms[room]

    def store_and_send(self, table: str, scope_key: str, scope: str, event: dict[str, Any]) -> None:
        """A CHAT_MESSAGE (`messages`, scope: the room) or a POST_COMMENT (`comments`, scope:
        the post id): stored, then sent to the scope's members."""
        user = str(event.get("user", "anonymous"))
        kind, text_key, key = (
            ("CHAT_MESSAGE", "message", scope)
            if table == "messages"
            else ("POST_COMMENT", "comment", f"post:{scope}")
        )
        value: str | int = scope if table == "messages" else int(scope)
        text = str(event.get(text_key, ""))
        ts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # One transaction per message, committed before anyone hears of it.
        cur = self.db.execute("BEGIN")
        cur = self.db.execute(
            f"INSERT INTO {table}({scope_key}, user, {text_key}, ts, client_id) "
            "VALUES (?, ?, ?, ?, ?)",
            (value, user, text, ts, event.get("client_id")),
        )
        self.db.execute("COMMIT")
        payload = dumps(
            {
                "type": kind,
                "id": cur.lastrowid,
                scope_key: value,
                "user": user,
                text_key: text,
                "timestamp": ts,
            }
        )
        broadcast(self.rooms.get(key, ()), payload)


async def main(port: int, db_path: str, host: str) -> None:
    app = Baseline(db_path)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(app.handler, host, port, max_size=1 << 20, backlog=4096) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"baseline ready: ws://{host}:{bound}/ws db={db_path}", flush=True)
        await stop
    app.db.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", required=True, help="SQLite file (created if missing)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (default: asyncio)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args.port, args.db, args.host))
    else:
        asyncio.run(main(args.port, args.db, args.host))


if __name__ == "__main__":
    cli()
