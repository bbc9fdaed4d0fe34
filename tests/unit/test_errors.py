"""One error family: each refusal carries its code, and the code its status and close code."""

from __future__ import annotations

from fastchat.errors import CLOSE_CODE, HTTP_STATUS, ErrorCode, FastchatError
from fastchat.history import NotFoundError
from fastchat.protocol import ProtocolError
from fastchat.store import PostNotFound, StoreError


def test_each_kind_of_refusal_carries_its_code_and_status() -> None:
    cases = [
        (ProtocolError(ErrorCode.TOO_LARGE, "big"), ErrorCode.TOO_LARGE, 413),
        (ProtocolError(ErrorCode.INVALID_FIELD, "bad"), ErrorCode.INVALID_FIELD, 400),
        (StoreError("disk full"), ErrorCode.STORE_UNAVAILABLE, 503),
        (PostNotFound(7), ErrorCode.POST_NOT_FOUND, 404),
        (NotFoundError("post 7 does not exist"), ErrorCode.POST_NOT_FOUND, 404),
    ]
    for error, code, status in cases:
        assert isinstance(error, FastchatError)
        assert (error.code, error.status) == (code, status)
        assert str(error) == error.message
    assert PostNotFound(7).message == "post 7 does not exist"


def test_the_codes_that_close_a_socket_use_the_rfc_6455_codes() -> None:
    assert CLOSE_CODE[ErrorCode.TOO_LARGE] == 1009
    assert CLOSE_CODE[ErrorCode.RATE_LIMITED] == CLOSE_CODE[ErrorCode.SLOW_CONSUMER] == 1008
    # RFC 6455's codes, and 4000-4999 (private use) for the token's expiry.
    assert all(1000 <= c < 1015 or 4000 <= c < 5000 for c in CLOSE_CODE.values())
    assert CLOSE_CODE[ErrorCode.TOKEN_EXPIRED] == 4001
    assert all(400 <= s < 600 for s in HTTP_STATUS.values())
