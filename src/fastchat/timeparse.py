"""Flexible timestamp input, one canonical output.

Accepted wherever a time is taken: RFC 3339 / ISO 8601 (with or without zone and fractions,
`T` or a space between date and time), `YYYY-MM-DD`, and Unix seconds, milliseconds,
microseconds or nanoseconds, told apart by magnitude. A time without a zone is UTC.
Output is always RFC 3339 UTC with milliseconds: `2026-11-25T22:07:14.123Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Final

ACCEPTED_FORMATS: Final = (
    "RFC 3339 / ISO 8601 (e.g. 2026-11-25T22:07:14Z, 2026-11-25T22:07:14.5+01:00), "
    "'YYYY-MM-DD HH:MM:SS', 'YYYY-MM-DD', or Unix seconds, milliseconds, microseconds "
    "or nanoseconds"
)

# Magnitude bounds for Unix numbers. Seconds cover 1970..5138; a value past that bound is read
# as the next finer unit. 1e11 s is year 5138, 1e14 ms is year 5138, and so on.
_S_MAX: Final[int] = 10**11
_MS_MAX: Final[int] = 10**14
_US_MAX: Final[int] = 10**17
_NS_MAX: Final[int] = 10**20
_MAX_MS: Final = 253402300799999  # 9999-12-31T23:59:59.999Z
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


class TimeFormatError(ValueError):
    """A time value that none of the accepted formats can read."""

    def __init__(self, value: object) -> None:
        shown = repr(value)
        if len(shown) > 64:
            shown = shown[:61] + "..."
        super().__init__(f"unreadable time {shown}; accepted: {ACCEPTED_FORMATS}")


_last_formatted: list[Any] = [None, ""]
_last_second: list[Any] = [None, ""]


def format_ms(ms: int) -> str:
    """Unix milliseconds -> RFC 3339 UTC with milliseconds.

    A committed batch shares one timestamp, so the last answer is kept: formatting costs
    ~1.5 us, the cache hit ~50 ns; within the same second, the date part is kept too.
    """
    last = _last_formatted
    if last[0] == ms:
        return last[1]  # type: ignore[no-any-return]
    seconds, millis = divmod(ms, 1000)
    second = _last_second
    if second[0] != seconds:  # the date and time, once a second (strftime is the cost)
        second[0], second[1] = seconds, f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}."
    text = f"{second[1]}{millis:03d}Z"
    last[0], last[1] = ms, text
    return text


def parse_to_ms(value: str | int | float) -> int:
    """Any accepted time -> Unix milliseconds (UTC). Raises TimeFormatError."""
    if isinstance(value, bool):
        raise TimeFormatError(value)
    if isinstance(value, int):
        return _from_number(value, value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TimeFormatError(value)
        return _from_number(Decimal(repr(value)), value)  # the digits as written, not binary
    text = value.strip()
    if not text:
        raise TimeFormatError(value)
    if _is_number(text):
        if len(text) > 40:  # past any unit we read; also spares int() a huge conversion
            raise TimeFormatError(value)
        try:
            number = int(text) if text.lstrip("+-").isdigit() else Decimal(text)
        except InvalidOperation:
            raise TimeFormatError(value) from None
        return _from_number(number, value)
    return _from_text(text, value)


def _is_number(text: str) -> bool:
    body = text[1:] if text[0] in "+-" else text
    if not body:
        return False
    int_part, _, frac = body.partition(".")
    return (
        (int_part.isdigit() or (not int_part and frac.isdigit()))
        and (not frac or frac.isdigit())
        and body.isascii()
    )


def _from_number(number: int | Decimal, original: object) -> int:
    """Exact arithmetic (int or Decimal), truncated toward zero to whole milliseconds."""
    magnitude = -number if number < 0 else number
    ms: int | Decimal
    if magnitude < _S_MAX:
        ms = number * 1000
    elif magnitude < _MS_MAX:
        ms = number
    elif magnitude < _US_MAX:
        ms = Decimal(number) / 1000
    elif magnitude < _NS_MAX:
        ms = Decimal(number) / 1_000_000
    else:
        raise TimeFormatError(original)
    result = int(ms)
    if not 0 <= result <= _MAX_MS:
        raise TimeFormatError(original)
    return result


def _from_text(text: str, original: object) -> int:
    candidate = text
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(candidate)
    except ValueError:
        raise TimeFormatError(original) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ms = (dt - _EPOCH) // _ONE_MS
    if not 0 <= ms <= _MAX_MS:
        raise TimeFormatError(original)
    return ms
