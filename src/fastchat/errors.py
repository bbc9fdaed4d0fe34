"""Every refusal fastchat answers, in one family: a stable code, a readable message.

A socket sends a `FastchatError` as an `ERROR` event (and, for the few codes in `CLOSE_CODE`,
closes with that code); REST answers `{"code": ..., "message": ...}` with the code's status in
`HTTP_STATUS`. The protocol's checks (`ProtocolError`), the stores (`StoreError`) and the
service (`NotFoundError`) raise subclasses; nothing translates one into another on the way.
docs/PROTOCOL.md lists every code of the table (a test checks it).
"""

from __future__ import annotations

from typing import Final


class ErrorCode:
    """Stable error codes sent in `ERROR` events and REST error bodies (docs/PROTOCOL.md)."""

    INVALID_JSON: Final = "invalid_json"
    UNKNOWN_TYPE: Final = "unknown_type"
    INVALID_FIELD: Final = "invalid_field"
    TOO_LARGE: Final = "too_large"
    UNSUPPORTED_DATA: Final = "unsupported_data"
    INVALID_TIME: Final = "invalid_time"
    RATE_LIMITED: Final = "rate_limited"
    TOO_MANY_ROOMS: Final = "too_many_rooms"
    NOT_JOINED: Final = "not_joined"
    POST_NOT_FOUND: Final = "post_not_found"
    NOT_FOUND: Final = "not_found"
    METHOD_NOT_ALLOWED: Final = "method_not_allowed"
    ORIGIN_REFUSED: Final = "origin_refused"
    UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"
    SLOW_CONSUMER: Final = "slow_consumer"
    STORE_UNAVAILABLE: Final = "store_unavailable"
    INTERNAL: Final = "internal_error"
    # Identity and access (auth.py).
    UNAUTHORIZED: Final = "unauthorized"
    TOKEN_INVALID: Final = "token_invalid"
    TOKEN_EXPIRED: Final = "token_expired"
    TOKEN_NOT_YET_VALID: Final = "token_not_yet_valid"
    TOKEN_ALGORITHM: Final = "token_algorithm"
    TOKEN_AUDIENCE: Final = "token_audience"
    TOKEN_ISSUER: Final = "token_issuer"
    TOKEN_CLAIMS: Final = "token_claims"
    FORBIDDEN_ROOM: Final = "forbidden_room"
    READ_ONLY_ROOM: Final = "read_only_room"
    NAME_MISMATCH: Final = "name_mismatch"
    FORBIDDEN: Final = "forbidden"
    BANNED: Final = "banned"
    MUTED: Final = "muted"
    NOT_AUTHOR: Final = "not_author"
    EDIT_WINDOW_CLOSED: Final = "edit_window_closed"
    # REST only: full-text search is off on this server (SEARCH=false).
    SEARCH_DISABLED: Final = "search_disabled"


# The HTTP status of each code REST may answer; with CLOSE_CODE, every code fastchat sends.
HTTP_STATUS: Final[dict[str, int]] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_DATA: 400,
    ErrorCode.INVALID_TIME: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOO_MANY_ROOMS: 400,
    ErrorCode.NOT_JOINED: 400,
    ErrorCode.POST_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.ORIGIN_REFUSED: 403,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_INVALID: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.TOKEN_NOT_YET_VALID: 401,
    ErrorCode.TOKEN_ALGORITHM: 401,
    ErrorCode.TOKEN_AUDIENCE: 401,
    ErrorCode.TOKEN_ISSUER: 401,
    ErrorCode.TOKEN_CLAIMS: 401,
    ErrorCode.FORBIDDEN_ROOM: 403,
    ErrorCode.READ_ONLY_ROOM: 403,
    ErrorCode.NAME_MISMATCH: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.BANNED: 403,
    ErrorCode.MUTED: 403,
    ErrorCode.NOT_AUTHOR: 403,
    ErrorCode.EDIT_WINDOW_CLOSED: 403,
    ErrorCode.SEARCH_DISABLED: 404,
}

# The WebSocket close code of the refusals that end a connection (RFC 6455 7.4.1).
CLOSE_CODE: Final[dict[str, int]] = {
    ErrorCode.RATE_LIMITED: 1008,  # policy violation: refused again and again
    ErrorCode.SLOW_CONSUMER: 1008,  # not reading what it is sent
    ErrorCode.TOO_LARGE: 1009,  # a frame over the hard cap
    ErrorCode.INTERNAL: 1011,
    ErrorCode.TOKEN_EXPIRED: 4001,  # its token expired and no fresh one came (AUTH)
}
GOING_AWAY: Final = 1001  # the server is shutting down: not an error


class FastchatError(Exception):
    """A refusal: `code` (an ErrorCode) and a message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)
