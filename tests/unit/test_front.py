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
