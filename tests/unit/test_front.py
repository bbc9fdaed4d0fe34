"""fastchat.front: which requests PORT's listener keeps for picows (the rest go to Granian)."""

from __future__ import annotations

import pytest

from fastchat.front import is_ws_upgrade

UPGRADE = b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ws HTTP/1.1\r\n" + UPGRADE,
        b"GET /ws?token=abc HTTP/1.1\r\n" + UPGRADE,
        b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade:  WebSocket\r\nconnection: upgrade",
    ],
)
def test_websocket_upgrades_of_ws_go_to_picows(head: bytes) -> None:
    assert is_ws_upgrade(head)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ws HTTP/1.1\r\nHost: x",  # no upgrade: Granian answers it as it did
        b"GET /wsx HTTP/1.1\r\n" + UPGRADE,
        b"GET /ws/ HTTP/1.1\r\n" + UPGRADE,
        b"GET /chat HTTP/1.1\r\n" + UPGRADE,
        b"POST /ws HTTP/1.1\r\n" + UPGRADE,
        b"GET /echo HTTP/1.1\r\n" + UPGRADE,  # only when asked for (CONFORMANCE_ECHO)
        b"GET /ws HTTP/1.1\r\nX-Upgrade-Note: websocket",
        b"",
    ],
)
def test_everything_else_goes_to_granian(head: bytes) -> None:
    assert not is_ws_upgrade(head)


def test_other_upgrade_paths_only_when_listed() -> None:
    head = b"GET /echo HTTP/1.1\r\n" + UPGRADE
    assert is_ws_upgrade(head, (b"/ws", b"/echo"))


async def test_a_connection_the_front_answers_is_closed_when_silent() -> None:
    """Kept-alive connections the front serves itself are closed after IDLE_TIMEOUT without
    a request (Granian does the same for its own); one that keeps asking stays open."""
    import asyncio

    from fastchat.front import Idle, start_front

    def route(target: bytes, headers: bytes) -> object:
        return (lambda: (200, b"{}")) if target == b"/h" else None

    idle = Idle(timeout=0.2, every=0.05)
    server = await start_front("127.0.0.1", 0, lambda: None, "/nowhere", route=route, idle=idle)
    port = server.sockets[0].getsockname()[1]
    ask = b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        quiet_r, quiet_w = await asyncio.open_connection("127.0.0.1", port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        for writer, reader in ((quiet_w, quiet_r), (busy_w, busy_r)):
            writer.write(ask)
            assert (await asyncio.wait_for(reader.readuntil(b"{}"), 5)).startswith(b"HTTP/1.1 200")
        for _ in range(10):  # 0.5 s of requests: longer than the timeout
            await asyncio.sleep(0.05)
            busy_w.write(ask)
            await asyncio.wait_for(busy_r.readuntil(b"{}"), 5)
        assert await asyncio.wait_for(quiet_r.read(), 5) == b""  # closed by the server
        busy_w.write(ask)
        assert (await asyncio.wait_for(busy_r.readuntil(b"{}"), 5)).startswith(b"HTTP/1.1 200")
        assert len(idle.served) == 1
        quiet_w.close()
        busy_w.close()
    finally:
        server.close()
