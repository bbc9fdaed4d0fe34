"""framing.Messages, sans I/O: frames in, what the connection must do out (RFC 6455)."""

from __future__ import annotations

import pytest

from fastchat import framing
from fastchat.framing import (
    BINARY,
    CLOSE,
    CLOSE_FRAME,
    CONTINUATION,
    MESSAGE_BINARY,
    MESSAGE_TEXT,
    NOTHING,
    PING,
    PONG,
    PONG_FRAME,
    TEXT,
    Messages,
)

LIMIT = 64


def refused(code: int) -> tuple[int, int]:
    return CLOSE, code


def outcome(action: tuple[int, object]) -> object:
    kind, value = action
    return (CLOSE, value[0]) if kind == CLOSE else action  # type: ignore[index]


def test_a_whole_text_or_binary_message() -> None:
    m = Messages(LIMIT)
    assert m.frame(TEXT, True, False, "héllo".encode()) == (MESSAGE_TEXT, "héllo")
    assert m.frame(BINARY, True, False, b"\x00\xff") == (MESSAGE_BINARY, b"\x00\xff")


def test_fragments_are_reassembled_with_control_frames_between() -> None:
    m = Messages(LIMIT)
    text = "zwölf €".encode()
    assert m.frame(TEXT, False, False, text[:3]) == (NOTHING, None)
    assert m.in_progress
    assert m.frame(PING, True, False, b"p") == (PONG, b"p")  # allowed inside (5.4)
    assert m.frame(CONTINUATION, False, False, text[3:7]) == (NOTHING, None)  # € split
    assert m.frame(CONTINUATION, True, False, text[7:]) == (MESSAGE_TEXT, "zwölf €")
    assert not m.in_progress
    assert m.frame(BINARY, False, False, b"ab") == (NOTHING, None)
    assert m.frame(CONTINUATION, True, False, b"cd") == (MESSAGE_BINARY, b"abcd")


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(TEXT, True, True, b"x")], framing.PROTOCOL_ERROR),  # reserved bit
        ([(CONTINUATION, True, False, b"x")], framing.PROTOCOL_ERROR),  # nothing to continue
        ([(TEXT, False, False, b"a"), (TEXT, True, False, b"b")], framing.PROTOCOL_ERROR),
        ([(0x3, True, False, b"")], framing.PROTOCOL_ERROR),  # reserved opcode
        ([(TEXT, True, False, b"\xff")], framing.INVALID_TEXT),
        # Invalid UTF-8 is refused at the fragment that carries it, before the message ends.
        ([(TEXT, False, False, b"ok"), (CONTINUATION, False, False, b"\xc0\xaf")], 1007),
        ([(TEXT, False, False, b"x" * 40), (CONTINUATION, False, False, b"y" * 40)], 1009),
    ],
)
def test_protocol_errors_close_with_their_code(
    frames: list[tuple[int, bool, bool, bytes]], code: int
) -> None:
    m = Messages(LIMIT)
    *before, last = frames
    for frame in before:
        assert m.frame(*frame) == (NOTHING, None)
    assert outcome(m.frame(*last)) == refused(code)
    assert not m.in_progress  # a refused message is not kept


def test_a_text_message_split_mid_character_waits_for_the_rest() -> None:
    m = Messages(LIMIT)
    euro = "€".encode()
    assert m.frame(TEXT, False, False, euro[:1]) == (NOTHING, None)
    assert outcome(m.frame(CONTINUATION, True, False, euro[1:2])) == refused(1007)  # truncated


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (b"", (1000, b"")),
        ((1000).to_bytes(2, "big") + b"bye", (1000, b"")),
        ((1001).to_bytes(2, "big"), (1001, b"")),
        ((4000).to_bytes(2, "big"), (1000, b"")),  # an application's code: answered with 1000
        (b"\x03", (1002, b"close payload of one byte")),
        ((1005).to_bytes(2, "big"), (1002, b"invalid close code")),  # reserved
        ((999).to_bytes(2, "big"), (1002, b"invalid close code")),
        ((2000).to_bytes(2, "big"), (1002, b"invalid close code")),
        ((1000).to_bytes(2, "big") + b"\xff", (1007, b"invalid UTF-8 in the close reason")),
    ],
)
def test_a_close_is_answered_by_the_rules(payload: bytes, reply: tuple[int, bytes]) -> None:
    assert Messages(LIMIT).frame(CLOSE_FRAME, True, False, payload) == (CLOSE, reply)


def test_pongs_only_prove_liveness() -> None:
    assert Messages(LIMIT).frame(PONG_FRAME, True, False, b"x") == (NOTHING, None)
