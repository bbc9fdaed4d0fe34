"""The sans-I/O protocol core: bytes in, a validated event or a ProtocolError out.

No sockets, no loop, no database: the WebSocket layers (picows on WS_PORT, Litestar on PORT)
feed it the payload of each text frame and act on what it returns. Outbound payloads are built
here too, so both ports speak byte-identical JSON.
"""

from __future__ import annotations

from typing import Final

import msgspec

from fastchat import events
from fastchat.events import AnyClientEvent, ErrorEvent, SendComment, SendMessage
from fastchat.timeparse import TimeFormatError, parse_to_ms


class ErrorCode:
    """Stable error codes sent in `ERROR` events and REST error bodies (docs/PROTOCOL.md)."""

    INVALID_JSON: Final = "invalid_json"
    UNKNOWN_TYPE: Final = "unknown_type"
    INVALID_FIELD: Final = "invalid_field"
    TOO_LARGE: Final = "too_large"
    UNSUPPORTED_DATA: Final = "unsupported_data"
    INVALID_TIME: Final = "invalid_time"
    NOT_JOINED: Final = "not_joined"
    POST_NOT_FOUND: Final = "post_not_found"
    NOT_FOUND: Final = "not_found"
    STORE_UNAVAILABLE: Final = "store_unavailable"
    INTERNAL: Final = "internal_error"


class ProtocolError(Exception):
    """A client mistake answered with an `ERROR` event; the connection stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def payload(self) -> bytes:
        return error_payload(self.code, self.message)


def error_payload(code: str, message: str) -> bytes:
    return events.encode(ErrorEvent(code=code, message=message))


class Limits(msgspec.Struct, frozen=True):
    """The parts of the settings the protocol enforces."""

    max_frame_bytes: int = 64 * 1024
    max_message_chars: int = 4000


_decode = events.client_decoder.decode


def parse(data: bytes | str, limits: Limits) -> AnyClientEvent:
    """Decode and validate one text frame. Raises ProtocolError with a stable code."""
    if len(data) > limits.max_frame_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"frame of {len(data)} bytes is over the limit of {limits.max_frame_bytes} bytes",
        )
    try:
        event = _decode(data)
    except msgspec.ValidationError as exc:
        raise _classify(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {exc}") from None
    if type(event) is SendMessage:
        _check_text("message", event.message, limits)
    elif type(event) is SendComment:
        _check_text("comment", event.comment, limits)
    return event


def post_id_of(ref: int | str) -> int:
    """The numeric id behind a post reference ("123" or 123). Raises ProtocolError."""
    if type(ref) is int:
        return ref
    text = str(ref).strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 18 and int(text) > 0:
        return int(text)
    raise ProtocolError(
        ErrorCode.INVALID_FIELD, f"post_id must be a positive integer, got {str(ref)[:24]!r}"
    )


def time_of(value: str | int | float | None) -> int | None:
    """Unix ms of a client-supplied time (any accepted format). Raises ProtocolError."""
    if value is None:
        return None
    try:
        return parse_to_ms(value)
    except TimeFormatError as exc:
        raise ProtocolError(ErrorCode.INVALID_TIME, str(exc)) from None


def _check_text(field: str, text: str, limits: Limits) -> None:
    if not text.strip():
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"`{field}` must not be empty")
    if len(text) > limits.max_message_chars:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"`{field}` is {len(text)} characters, over the limit of {limits.max_message_chars}",
        )


_TYPES_HINT: Final = ", ".join(events.CLIENT_EVENT_TYPES)


def _classify(detail: str) -> ProtocolError:
    if detail.endswith("at `$.type`"):
        return ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown event type; expected one of {_TYPES_HINT}"
        )
    if detail == "Object missing required field `type`":
        return ProtocolError(
            ErrorCode.INVALID_FIELD, f"missing `type`; expected one of {_TYPES_HINT}"
        )
    if detail.startswith("Expected `object`"):
        return ProtocolError(ErrorCode.INVALID_FIELD, f"an event must be a JSON object: {detail}")
    return ProtocolError(ErrorCode.INVALID_FIELD, detail)
