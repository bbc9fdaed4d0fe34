"""fastchat.timeparse: many time inputs, one canonical RFC 3339 output."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastchat.timeparse import ACCEPTED_FORMATS, TimeFormatError, format_ms, parse_to_ms

MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Unix seconds are told from milliseconds by magnitude: seconds stop at 1e11 (year 5138).
LAST_SECONDS_DATE = EPOCH + timedelta(seconds=10**11 - 1)
# ...so a millisecond (micro-, nanosecond) count below 1e11 (1e14, 1e17) reads as the coarser
# unit: the finer forms are unambiguous only from 1973-03-03T09:46:40Z on.
FIRST_MS_DATE = EPOCH + timedelta(milliseconds=10**11)
RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

T = 1732572434123  # 2024-11-25T22:07:14.123Z
T_TEXT = "2024-11-25T22:07:14.123Z"

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ms_of(dt: datetime) -> int:
    """Exact Unix ms (floor) of an aware datetime, in integer arithmetic."""
    delta = dt - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


# --------------------------------------------------------------------------- text forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-11-25T22:07:14.123Z", T),
        ("2024-11-25T22:07:14.123z", T),
        ("2024-11-25t22:07:14.123Z", T),
        ("2024-11-25T22:07:14.123+00:00", T),
        ("2024-11-25T23:07:14.123+01:00", T),
        ("2024-11-25T16:37:14.123-05:30", T),
        ("2024-11-25T22:07:14.123", T),  # no zone: UTC
        ("2024-11-25 22:07:14.123", T),
        ("2024-11-25T22:07:14.1Z", T - 23),
        ("2024-11-25T22:07:14.12Z", T - 3),
        ("2024-11-25T22:07:14.123456Z", T),
        ("2024-11-25T22:07:14.123999Z", T),  # truncated to the millisecond, not rounded
        ("2024-11-25T22:07:14.123456789Z", T),
        ("2024-11-25T22:07:14Z", T - 123),
        ("2024-11-25 22:07:14", T - 123),
        ("2024-11-25", 1732492800000),
        ("  2024-11-25T22:07:14.123Z\n", T),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T01:00:00+01:00", 0),
        ("9999-12-31T23:59:59.999Z", MAX_MS),
    ],
)
def test_rfc3339_and_iso_8601_text(text: str, expected: int) -> None:
    assert parse_to_ms(text) == expected


def test_offsets_are_applied_in_the_right_direction() -> None:
    east = parse_to_ms("2024-01-01T12:00:00+02:00")
    west = parse_to_ms("2024-01-01T12:00:00-02:00")
    assert west - east == 4 * 3600 * 1000
    assert format_ms(east) == "2024-01-01T10:00:00.000Z"


# --------------------------------------------------------------------------- Unix numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1732572434, T - 123),  # seconds
        (1732572434123, T),  # milliseconds
        (1732572434123456, T),  # microseconds
        (1732572434123456789, T),  # nanoseconds
        (1732572434.5, T - 123 + 500),
        (1732572434123.9, T),
        ("1732572434", T - 123),
        ("1732572434123", T),
        ("1732572434123456", T),
        ("1732572434123456789", T),
        ("1732572434.5", T - 123 + 500),
        (" 1732572434 ", T - 123),
        ("+1732572434", T - 123),
        (0, 0),
        ("0", 0),
        (0.0, 0),
        ("-0", 0),
        (".5", 500),
        ("1.", 1000),
        (99_999_999_999, 99_999_999_999_000),  # the largest number read as seconds
        (100_000_000_000, 100_000_000_000),  # the smallest read as milliseconds
        (99_999_999_999_999, 99_999_999_999_999),
        (100_000_000_000_000, 100_000_000_000),  # the smallest read as microseconds
        (100_000_000_000_000_000, 100_000_000_000),  # the smallest read as nanoseconds
    ],
)
def test_unix_numbers_are_told_apart_by_magnitude(value: int | float | str, expected: int) -> None:
    assert parse_to_ms(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.001", 1001),
        ("1.005", 1005),
        ("1096632635.330", 1096632635330),  # 2004-10-01, seconds with milliseconds
        ("73801280097544.995", 73801280097544),  # milliseconds with a fraction
        (1732572434123999999, T),  # time.time_ns() style
    ],
    ids=["s-1.001", "s-1.005", "s-2004", "ms-frac", "ns"],
)
def test_fractional_unix_times_are_exact(value: int | str, expected: int) -> None:
    assert parse_to_ms(value) == expected


# --------------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "now",
        "2024-13-01",
        "2024-02-30",
        "2024-11-25T25:00:00Z",
        "2024-11-25T22:07:60Z",
        "25/11/2024",
        "Nov 25 2024",
        "2024-11-25T22:07:14.123ZZ",
        "1e12",
        "0x10",
        "1,000",
        "1_000",
        "1.2.3",
        "+",
        "-",
        ".",
        "nan",
        "inf",
        "١٧٣٢٥٧٢٤٣٤",  # Arabic-Indic digits
        "\x00",
        True,
        False,
        float("nan"),
        float("inf"),
        float("-inf"),
        -1,
        -1.5,
        "-1732572434",
        "1969-12-31T23:59:59.999Z",  # before the epoch
        "1970-01-01T00:30:00+01:00",  # the epoch minus 30 minutes
        "10000-01-01",
        "9999-12-31T23:59:59.999-00:01",  # after year 9999 in UTC
        10**20,  # beyond nanoseconds
        1e300,
        "9" * 5000,
    ],
)
def test_unreadable_times_raise_time_format_error(value: object) -> None:
    with pytest.raises(TimeFormatError) as info:
        parse_to_ms(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("unreadable time ")
    assert ACCEPTED_FORMATS in message
    assert len(message) < 400


def test_error_message_names_every_accepted_format() -> None:
    with pytest.raises(TimeFormatError) as info:
        parse_to_ms("last tuesday")
    message = str(info.value)
    assert "'last tuesday'" in message
    for form in (
        "RFC 3339",
        "ISO 8601",
        "YYYY-MM-DD HH:MM:SS",
        "YYYY-MM-DD",
        "Unix seconds",
        "milliseconds",
        "microseconds",
        "nanoseconds",
    ):
        assert form in message


def test_long_values_are_shortened_in_the_message() -> None:
    with pytest.raises(TimeFormatError) as info:
        parse_to_ms("x" * 10_000)
    assert "x" * 100 not in str(info.value)
    assert "..." in str(info.value)


def test_time_format_error_is_a_value_error() -> None:
    # Callers that already handle ValueError (e.g. query-parameter parsing) keep working.
    assert issubclass(TimeFormatError, ValueError)


# --------------------------------------------------------------------------- format_ms


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (999, "1970-01-01T00:00:00.999Z"),
        (T, T_TEXT),
        (1709164800000, "2024-02-29T00:00:00.000Z"),  # leap day
        (MAX_MS, "9999-12-31T23:59:59.999Z"),
    ],
)
def test_format_ms_is_rfc3339_utc_with_milliseconds(ms: int, text: str) -> None:
    assert format_ms(ms) == text
    assert RFC3339_MS.match(text)


# --------------------------------------------------------------------------- properties


@PROPS
@given(st.integers(min_value=0, max_value=MAX_MS))
@example(0)
@example(MAX_MS)
def test_format_parse_round_trip(ms: int) -> None:
    text = format_ms(ms)
    assert RFC3339_MS.match(text)
    assert parse_to_ms(text) == ms
    assert format_ms(parse_to_ms(format_ms(ms))) == text


datetimes = st.datetimes(
    min_value=FIRST_MS_DATE.replace(tzinfo=None), max_value=LAST_SECONDS_DATE.replace(tzinfo=None)
).map(lambda d: d.replace(tzinfo=UTC))


@PROPS
@given(datetimes.map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)))
@example(FIRST_MS_DATE)
@example(LAST_SECONDS_DATE.replace(microsecond=999000))
def test_every_form_of_a_millisecond_time_reads_the_same(dt: datetime) -> None:
    ms = ms_of(dt)
    forms: list[int | float | str] = [
        ms,
        str(ms),
        ms * 1000,
        str(ms * 1000),
        ms * 1_000_000,
        str(ms * 1_000_000),
        dt.isoformat(),
        dt.isoformat().replace("+00:00", "Z"),
        dt.strftime("%Y-%m-%d %H:%M:%S.%f"),
        dt.astimezone(timezone(timedelta(hours=-7))).isoformat(),
    ]
    if dt.microsecond == 0:
        forms += [ms // 1000, str(ms // 1000), dt.strftime("%Y-%m-%d %H:%M:%S")]
    assert [parse_to_ms(f) for f in forms] == [ms] * len(forms)


@PROPS
@given(datetimes)
@example(datetime(2004, 10, 1, 0, 10, 35, 330000, tzinfo=UTC))  # "1096632635.330000"
@example(datetime(2603, 10, 11, 11, 33, 20, 999, tzinfo=UTC))  # us 20000000000000999
def test_every_unix_form_of_any_datetime_reads_the_same(dt: datetime) -> None:
    ms = ms_of(dt)
    us = ms * 1000 + dt.microsecond % 1000
    seconds, frac_us = divmod(us, 1_000_000)
    forms: list[int | str] = [
        f"{seconds}.{frac_us:06d}",
        f"{ms}.{us % 1000:03d}",
        us,
        us * 1000,
    ]
    assert [parse_to_ms(f) for f in forms] == [ms] * len(forms)


@PROPS
@given(st.text(max_size=40))
@example("2024-11-25T22:07:14.123Z")
@example("\ud800")
@example("0" * 40)
def test_random_text_raises_nothing_but_time_format_error(text: str) -> None:
    try:
        ms = parse_to_ms(text)
    except TimeFormatError:
        return
    assert 0 <= ms <= MAX_MS


@PROPS
@given(
    st.from_regex(
        r"\A[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}([T ][0-9]{1,2}(:[0-9]{1,2}(:[0-9]{1,2}"
        r"([.,][0-9]{0,10})?)?)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    )
    | st.from_regex(r"\A[+-]?[0-9]{0,22}(\.[0-9]{0,12})?\Z")
)
def test_plausible_looking_text_raises_nothing_but_time_format_error(text: str) -> None:
    try:
        ms = parse_to_ms(text)
    except TimeFormatError:
        return
    assert 0 <= ms <= MAX_MS


@PROPS
@given(
    st.integers(min_value=-(10**22), max_value=10**22)
    | st.floats(allow_nan=True, allow_infinity=True)
)
def test_any_number_is_read_in_range_or_refused(value: int | float) -> None:
    try:
        ms = parse_to_ms(value)
    except TimeFormatError:
        return
    assert 0 <= ms <= MAX_MS
