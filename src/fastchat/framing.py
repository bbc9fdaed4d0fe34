"""WebSocket messages from frames, sans I/O: reassembly, UTF-8, close codes, size limits.

picows parses the wire (lengths, masks, opcodes, control-frame sizes, the hard cap); this
module holds the rules RFC 6455 leaves to the endpoint, as `websockets` keeps its protocol
apart from its I/O: a frame (opcode, FIN, reserved bits, payload) goes in, what the
connection must do comes out. `fastport.FastListener` is the only caller, for both URLs;
tests/unit/test_framing.py feeds it frames without a socket.

What comes out is a pair (action, value), cheap to build per frame:

- (MESSAGE_TEXT, str) or (MESSAGE_BINARY, bytes): a complete message;
- (PONG, payload): answer a ping with this payload;
- (CLOSE, (code, reason)): send this close frame and drop the connection, either the answer
  to the client's close or our refusal of a protocol error;
- (NOTHING, None): a fragment kept, a pong seen.
"""

from __future__ import annotations

import codecs
from typing import Any, Final

# Opcodes (RFC 6455 5.2).
CONTINUATION: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE_FRAME: Final = 0x8
PING: Final = 0x9
PONG_FRAME: Final = 0xA

# Actions.
NOTHING: Final = 0
MESSAGE_TEXT: Final = 1
MESSAGE_BINARY: Final = 2
PONG: Final = 3
CLOSE: Final = 4

# Close codes (RFC 6455 7.4.1).
OK: Final = 1000
PROTOCOL_ERROR: Final = 1002
INVALID_TEXT: Final = 1007
MESSAGE_TOO_BIG: Final = 1009
# The codes a peer may send: 1004-1006 and 1015 are reserved, 1016-2999 are for future
# protocol use, 3000-4999 belong to libraries and applications.
_KNOWN: Final = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

Action = tuple[int, Any]
_NOTHING: Final[Action] = (NOTHING, None)


def valid_close_code(code: int) -> bool:
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def close_reply(payload: bytes) -> tuple[int, bytes]:
    """The close frame that answers a client's close with this payload: its code echoed
    when it is one a peer may send (a code of our own range is answered with 1000), 1002 for
    a malformed payload, 1007 for a reason that is not UTF-8."""
    if not payload:
        return OK, b""
    if len(payload) == 1:
        return PROTOCOL_ERROR, b"close payload of one byte"
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        return PROTOCOL_ERROR, b"invalid close code"
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_TEXT, b"invalid UTF-8 in the close reason"
    return (code if code in _KNOWN else OK), b""


def _refuse(code: int, reason: str) -> Action:
    return CLOSE, (code, reason.encode())


class Messages:
    """One connection's message state: the fragments of a message in progress."""

    __slots__ = ("_kind", "_size", "_utf8", "fragments", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the largest message, in bytes, reassembled or not
        # The fragments of a message in progress; None between messages (read by the
        # listener on every frame: an attribute, not the property below).
        self.fragments: list[bytes] | None = None
        self._size = 0
        self._kind = TEXT
        self._utf8: codecs.IncrementalDecoder | None = None

    @property
    def in_progress(self) -> bool:
        return self.fragments is not None

    def frame(self, op: int, fin: bool, rsv: bool, payload: bytes) -> Action:
        """What to do with one frame (`rsv`: any reserved bit set)."""
        if rsv:  # no extension is negotiated (RFC 6455 5.2)
            return _refuse(PROTOCOL_ERROR, "reserved bits set")
        if op in (TEXT, BINARY):
            if self.fragments is not None:
                self.fragments = None
                return _refuse(PROTOCOL_ERROR, "new message inside a fragmented one")
            if fin:
                return self._whole(op, payload)
            self._kind = op
            self._utf8 = codecs.getincrementaldecoder("utf-8")("strict") if op == TEXT else None
            self.fragments = []
            self._size = 0
            return self._add(payload, fin)
        if op == CONTINUATION:
            if self.fragments is None:
                return _refuse(PROTOCOL_ERROR, "continuation without a start")
            return self._add(payload, fin)
        if op == CLOSE_FRAME:
            return CLOSE, close_reply(payload)
        if op == PING:
            return PONG, payload
        if op == PONG_FRAME:
            return _NOTHING  # it only had to be seen
        return _refuse(PROTOCOL_ERROR, "unexpected opcode")

    def _whole(self, op: int, payload: bytes) -> Action:
        if op == BINARY:
            return MESSAGE_BINARY, payload
        try:
            return MESSAGE_TEXT, payload.decode("utf-8")
        except UnicodeDecodeError:
            return _refuse(INVALID_TEXT, "invalid UTF-8 in a text frame")

    def _add(self, chunk: bytes, fin: bool) -> Action:
        fragments = self.fragments
        assert fragments is not None
        fragments.append(chunk)
        self._size += len(chunk)
        if self._size > self.limit:
            self.fragments = None
            return _refuse(MESSAGE_TOO_BIG, "fragmented message too large")
        if self._utf8 is not None:
            try:  # fail fast: invalid UTF-8 is refused at the fragment that carries it
                self._utf8.decode(chunk, final=fin)
            except UnicodeDecodeError:
                self.fragments = None
                return _refuse(INVALID_TEXT, "invalid UTF-8 in a text message")
        if not fin:
            return _NOTHING
        data = b"".join(fragments)
        self.fragments = None
        if self._kind == TEXT:
            return MESSAGE_TEXT, data.decode("utf-8")
        return MESSAGE_BINARY, data
