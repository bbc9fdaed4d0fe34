"""fastchat.protocol: bytes in, a validated event or a ProtocolError with a stable code out."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastchat import events
from fastchat.errors import ErrorCode
from fastchat.events import (
    CLIENT_EVENT_TYPES,
    NAME_MAX,
    JoinPost,
    JoinRoom,
    LeavePost,
    LeaveRoom,
    SendComment,
    SendMessage,
)
from fastchat.protocol import (
    DROP,
    KEEP,
    PING,
    Limits,
    ProtocolError,
    Session,
    _plain_message,
    _validate,
    error_payload,
    origin_allowed,
    parse,
    post_id_of,
    time_of,
    valid_name,
)
from tests.unit.limits import limits_with

LIMITS = limits_with()
SMALL = limits_with(max_frame_bytes=300, max_message_chars=10)


def frame(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def error_of(data: bytes | str, limits: Limits = LIMITS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse(data, limits)
    return info.value


def assert_readable(err: ProtocolError) -> None:
    """A message a person can act on: one short line, no Python internals."""
    assert err.message
    assert str(err) == err.message
    assert "\n" not in err.message
    assert len(err.message) < 300
    for internal in ("Traceback", "msgspec", "<class", "Error(", " at 0x"):
        assert internal not in err.message


# --------------------------------------------------------------------------- happy paths


def test_parse_accepts_bytes_and_str() -> None:
    data = frame({"type": "JOIN_ROOM", "room": "general", "user": "ana"})
    assert parse(data, LIMITS) == JoinRoom(room="general", user="ana")
    assert parse(data.decode(), LIMITS) == JoinRoom(room="general", user="ana")


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "JOIN_ROOM", "room": "r"}, JoinRoom(room="r")),
        ({"type": "LEAVE_ROOM", "room": "r"}, LeaveRoom(room="r")),
        (
            {"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "hi", "client_id": "c"},
            SendMessage(room="r", user="u", message="hi", client_id="c"),
        ),
        (
            {"type": "POST_COMMENT", "post_id": "3", "user": "u", "comment": "nice"},
            SendComment(post_id="3", user="u", comment="nice"),
        ),
        ({"type": "JOIN_POST", "post_id": 3, "last_id": 9}, JoinPost(post_id=3, last_id=9)),
        ({"type": "LEAVE_POST", "post_id": "3"}, LeavePost(post_id="3")),
    ],
)
def test_each_event_type_parses(obj: dict[str, Any], expected: Any) -> None:
    assert parse(frame(obj), LIMITS) == expected


def test_whitespace_around_the_json_is_fine() -> None:
    assert parse(b'  \n{"type": "LEAVE_ROOM", "room": "r"}\n ', LIMITS) == LeaveRoom(room="r")


def test_frame_exactly_at_the_byte_limit_is_accepted() -> None:
    head = b'{"type":"LEAVE_ROOM","room":"r","pad":"'
    data = head + b"x" * (SMALL.max_frame_bytes - len(head) - 2) + b'"}'
    assert len(data) == SMALL.max_frame_bytes
    assert parse(data, SMALL) == LeaveRoom(room="r")


def test_message_exactly_at_the_char_limit_is_accepted() -> None:
    text = "é" * SMALL.max_message_chars  # characters, not bytes
    ev = parse(frame({"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": text}), SMALL)
    assert ev.message == text


def test_message_text_is_kept_verbatim() -> None:
    text = "  leading and trailing spaces stay  \n second line 🚀"
    ev = parse(frame({"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": text}), LIMITS)
    assert ev.message == text


# --------------------------------------------------------------------------- invalid_json


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"type": "JOIN_ROOM", "room": "r"',
        b"{'type': 'JOIN_ROOM'}",
        b'{"type": "JOIN_ROOM", "room": "r"} trailing',
        b"\xff\xfe not utf-8",
        b"nul\x00",
        b"NaN",
        "not json at all",
    ],
)
def test_malformed_json_is_invalid_json(data: bytes | str) -> None:
    err = error_of(data)
    assert err.code == ErrorCode.INVALID_JSON == "invalid_json"
    assert err.message.startswith("invalid JSON")
    assert_readable(err)


# --------------------------------------------------------------------------- unknown_type


@pytest.mark.parametrize("tag", ["NOPE", "join_room", "JOIN ROOM", "", 1, None, ["JOIN_ROOM"]])
def test_unknown_type_lists_every_accepted_type(tag: object) -> None:
    err = error_of(frame({"type": tag, "room": "r"}))
    assert err.code == ErrorCode.UNKNOWN_TYPE == "unknown_type"
    for name in CLIENT_EVENT_TYPES:
        assert name in err.message
    assert_readable(err)


# --------------------------------------------------------------------------- invalid_field


def test_missing_type_is_invalid_field_and_lists_the_types() -> None:
    err = error_of(frame({"room": "r"}))
    assert err.code == ErrorCode.INVALID_FIELD
    assert "`type`" in err.message
    for name in CLIENT_EVENT_TYPES:
        assert name in err.message
    assert_readable(err)


@pytest.mark.parametrize("value", [[], [1, 2], 1, 1.5, "JOIN_ROOM", None, True])
def test_a_frame_that_is_not_an_object_is_invalid_field(value: object) -> None:
    err = error_of(frame(value))
    assert err.code == ErrorCode.INVALID_FIELD
    assert "must be a JSON object" in err.message
    assert_readable(err)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"type": "JOIN_ROOM"}, "room"),
        ({"type": "JOIN_ROOM", "room": ""}, "room"),
        ({"type": "JOIN_ROOM", "room": "x" * (NAME_MAX + 1)}, "room"),
        ({"type": "JOIN_ROOM", "room": "a\nb"}, "room"),
        ({"type": "JOIN_ROOM", "room": 5}, "room"),
        ({"type": "JOIN_ROOM", "room": "r", "user": ""}, "user"),
        ({"type": "JOIN_ROOM", "room": "r", "last_id": -1}, "last_id"),
        ({"type": "CHAT_MESSAGE", "room": "r", "user": "u"}, "message"),
        ({"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": 5}, "message"),
        ({"type": "CHAT_MESSAGE", "room": "r", "message": "m"}, "user"),
        (
            {"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "m", "client_id": 1},
            "client_id",
        ),
        ({"type": "POST_COMMENT", "post_id": 0, "user": "u", "comment": "c"}, "post_id"),
        ({"type": "POST_COMMENT", "post_id": 1, "user": "u"}, "comment"),
        ({"type": "JOIN_POST"}, "post_id"),
        ({"type": "LEAVE_POST", "post_id": -2}, "post_id"),
    ],
)
def test_bad_fields_are_invalid_field_and_name_the_field(obj: dict[str, Any], field: str) -> None:
    err = error_of(frame(obj))
    assert err.code == ErrorCode.INVALID_FIELD == "invalid_field"
    assert f"`{field}`" in err.message or f"$.{field}" in err.message
    assert_readable(err)


@pytest.mark.parametrize("name", ["  ", "ana\u200b", "\u202eevil", "a\x01"], ids=repr)
def test_a_bad_name_says_what_a_name_may_be(name: str) -> None:
    err = error_of(frame({"type": "JOIN_ROOM", "room": "r", "user": name}))
    assert err.code == ErrorCode.INVALID_FIELD
    assert err.message.startswith("`user` must be")
    assert str(NAME_MAX) in err.message
    assert_readable(err)


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "\u3000"])
@pytest.mark.parametrize(
    ("tag", "field"), [("CHAT_MESSAGE", "message"), ("POST_COMMENT", "comment")]
)
def test_blank_text_is_invalid_field(text: str, tag: str, field: str) -> None:
    obj = {"type": tag, "room": "r", "post_id": 1, "user": "u", field: text}
    err = error_of(frame(obj))
    assert err.code == ErrorCode.INVALID_FIELD
    assert err.message == f"`{field}` must not be empty"


# --------------------------------------------------------------------------- too_large


def test_frame_over_the_byte_limit_is_too_large_before_decoding() -> None:
    # Even garbage is answered with too_large: the size check comes first and is cheap.
    data = b"{" * (SMALL.max_frame_bytes + 1)
    err = error_of(data, SMALL)
    assert err.code == ErrorCode.TOO_LARGE == "too_large"
    assert str(SMALL.max_frame_bytes) in err.message
    assert str(len(data)) in err.message
    assert_readable(err)


@pytest.mark.parametrize(
    ("tag", "field"), [("CHAT_MESSAGE", "message"), ("POST_COMMENT", "comment")]
)
def test_text_over_the_char_limit_is_too_large(tag: str, field: str) -> None:
    obj = {"type": tag, "room": "r", "post_id": 1, "user": "u", field: "y" * 11}
    err = error_of(frame(obj), SMALL)
    assert err.code == ErrorCode.TOO_LARGE
    assert err.message == f"`{field}` is 11 characters, over the limit of 10"


def test_nul_characters_in_text_are_refused() -> None:
    frame_text = '{"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "a\\u0000b"}'
    with pytest.raises(ProtocolError) as info:
        parse(frame_text, limits_with())
    assert info.value.code == ErrorCode.INVALID_FIELD and "NUL" in info.value.message


def test_str_frame_is_measured_in_utf8_bytes() -> None:
    limits = limits_with(max_frame_bytes=1000, max_message_chars=4000)
    text = '{"type": "LEAVE_ROOM", "room": "r", "pad": "' + "é" * 600 + '"}'
    assert len(text) < 1000 < len(text.encode())
    with pytest.raises(ProtocolError) as bytes_err:
        parse(text.encode(), limits)
    assert bytes_err.value.code == ErrorCode.TOO_LARGE
    # The same frame must get the same answer whether it arrives as bytes or as str.
    err = error_of(text, limits)
    assert err.code == ErrorCode.TOO_LARGE


# --------------------------------------------------------------------------- error payloads


def test_protocol_error_payload_is_an_error_event() -> None:
    err = error_of(b"{")
    assert msgspec.json.decode(err.payload()) == {
        "type": "ERROR",
        "code": "invalid_json",
        "message": err.message,
    }


def test_error_payload_escapes_its_message() -> None:
    data = error_payload("invalid_field", 'bad "quote" \n and é')
    assert msgspec.json.decode(data)["message"] == 'bad "quote" \n and é'


# --------------------------------------------------------------------------- post_id_of


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (1, 1),
        (2**63 - 1, 2**63 - 1),
        ("1", 1),
        ("42", 42),
        (" 42 ", 42),
        ("007", 7),
        ("9" * 18, int("9" * 18)),
    ],
)
def test_post_id_of_reads_numbers_and_digit_strings(ref: int | str, expected: int) -> None:
    assert post_id_of(ref) == expected


@pytest.mark.parametrize(
    "ref", ["", " ", "0", "000", "-1", "+1", "1.0", "1e3", "abc", "12abc", "١٢٣", "²", "0x1f"]
)
def test_post_id_of_rejects_anything_else_readably(ref: str) -> None:
    with pytest.raises(ProtocolError) as info:
        post_id_of(ref)
    assert info.value.code == ErrorCode.INVALID_FIELD
    assert info.value.message.startswith("post_id must be a positive integer, got ")
    assert repr(ref) in info.value.message
    assert_readable(info.value)


def test_post_id_of_shortens_long_garbage_in_its_message() -> None:
    with pytest.raises(ProtocolError) as info:
        post_id_of("z" * 20)
    assert "z" * 25 not in info.value.message
    assert len(info.value.message) < 80


def test_post_id_of_agrees_with_a_parsed_string_post_id() -> None:
    ev = parse(frame({"type": "JOIN_POST", "post_id": "17"}), LIMITS)
    assert post_id_of(ev.post_id) == 17


# --------------------------------------------------------------------------- robustness


def test_deeply_nested_unknown_field_is_a_protocol_error() -> None:
    depth = 1000
    data = b'{"type":"LEAVE_ROOM","room":"r","x":' + b"[" * depth + b"]" * depth + b"}"
    assert len(data) < LIMITS.max_frame_bytes
    err = error_of(data)
    assert err.code in (ErrorCode.INVALID_JSON, ErrorCode.INVALID_FIELD, ErrorCode.TOO_LARGE)


def test_deeply_nested_top_level_array_is_a_protocol_error() -> None:
    err = error_of(b"[" * 20_000 + b"]" * 20_000)
    assert err.code in (ErrorCode.INVALID_FIELD, ErrorCode.INVALID_JSON)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

FIELD_NAMES = ["type", "room", "user", "message", "comment", "post_id", "last_id", "client_id"]


def _call(data: bytes | str, limits: Limits = LIMITS) -> None:
    try:
        parse(data, limits)
    except ProtocolError as exc:
        assert exc.code in (
            ErrorCode.INVALID_JSON,
            ErrorCode.UNKNOWN_TYPE,
            ErrorCode.INVALID_FIELD,
            ErrorCode.TOO_LARGE,
        )
        assert exc.message


@FUZZ
@given(st.binary(max_size=400))
@example(b"")
@example(b"\x00")
@example(b'{"type":"JOIN_ROOM","room":"\\ud800"}')
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    _call(data)
    _call(data, SMALL)


@FUZZ
@given(json_values)
def test_random_json_values_only_ever_raise_protocol_error(value: Any) -> None:
    data = msgspec.json.encode(value)
    _call(data)
    _call(data.decode())


@FUZZ
@given(
    st.sampled_from([*CLIENT_EVENT_TYPES, "NOPE"]),
    st.dictionaries(
        st.sampled_from(FIELD_NAMES[1:]) | st.text(max_size=8), json_values, max_size=6
    ),
)
def test_random_event_shaped_objects_only_ever_raise_protocol_error(
    tag: str, fields: dict[str, Any]
) -> None:
    _call(msgspec.json.encode({"type": tag, **fields}), SMALL)


# Names: visible characters (letters, digits, punctuation, symbols) and spaces, never blank.
names = st.text(
    st.characters(categories=("L", "N", "P", "S")) | st.just(" "), min_size=1, max_size=NAME_MAX
).filter(lambda s: s.strip() != "")
# Any text but blank ones and NUL characters (refused: PostgreSQL cannot store them).
texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=200,
).filter(lambda s: s.strip() != "")
# Room names: the same, without '/' (REST addresses a room as one path segment).
rooms = names.filter(lambda s: "/" not in s)
client_ids = st.none() | names
post_refs = st.integers(min_value=1, max_value=2**63 - 1) | st.text(
    st.characters(blacklist_categories=("Cs",)), max_size=20
)
last_ids = st.none() | st.integers(min_value=0, max_value=2**63 - 1)

valid_events = st.one_of(
    st.builds(JoinRoom, room=rooms, user=names, last_id=last_ids),
    st.builds(LeaveRoom, room=rooms),
    st.builds(SendMessage, room=rooms, user=names, message=texts, client_id=client_ids),
    st.builds(SendComment, post_id=post_refs, user=names, comment=texts, client_id=client_ids),
    st.builds(JoinPost, post_id=post_refs, user=names, last_id=last_ids),
    st.builds(LeavePost, post_id=post_refs),
)


@FUZZ
@given(valid_events)
def test_valid_events_round_trip(ev: Any) -> None:
    data = events.encode(ev)
    assert parse(data, LIMITS) == ev
    assert parse(data.decode(), LIMITS) == ev


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("room", ["a/b", "../../etc/passwd", "/", "team/"])
@pytest.mark.parametrize("tag", ["JOIN_ROOM", "LEAVE_ROOM", "CHAT_MESSAGE", "TYPING", "HISTORY"])
def test_room_names_with_a_slash_are_refused(room: str, tag: str) -> None:
    event = {"type": tag, "room": room, "user": "u", "message": "m"}
    with pytest.raises(ProtocolError) as info:
        parse(frame(event), LIMITS)
    assert info.value.code == ErrorCode.INVALID_FIELD and "'/'" in info.value.message
    # A user name may hold one: only rooms are addressed by URL.
    assert getattr(parse(frame({**event, "room": "r", "user": room}), LIMITS), "user", room) == room


@pytest.mark.parametrize("name", ["a", "x" * NAME_MAX, "Zoë", "with space", "日本語", "🚀"])
def test_valid_name_accepts_what_the_decoder_accepts(name: str) -> None:
    assert valid_name(name)
    assert parse(frame({"type": "JOIN_ROOM", "room": name}), LIMITS).room == name


@pytest.mark.parametrize(
    "name", ["", " ", "x" * (NAME_MAX + 1), "a\tb", "\x00", "ana\u200b", "\u202eevil"], ids=repr
)
def test_valid_name_refuses_what_the_decoder_refuses(name: str) -> None:
    assert not valid_name(name)
    assert error_of(frame({"type": "JOIN_ROOM", "room": name})).code == ErrorCode.INVALID_FIELD


def test_valid_name_refuses_a_trailing_newline() -> None:
    assert not valid_name("ana\n")


@FUZZ
@given(st.text(max_size=NAME_MAX + 2))
def test_valid_name_and_the_decoder_always_agree(name: str) -> None:
    try:
        decoded = parse(frame({"type": "JOIN_ROOM", "room": "r", "user": name}), LIMITS)
    except ProtocolError:
        accepted = False
    else:
        accepted = decoded.user == name
    assert valid_name(name) == accepted


# Characters that each of the checks is about, and ordinary ones.
_TRICKY = st.text(
    alphabet=st.sampled_from(["a", "Z", " ", "/", "\x00", "\t", "\n", "\u200b", "\u3000", "é"]),
    max_size=NAME_MAX + 2,
)


@FUZZ
@given(room=_TRICKY, user=_TRICKY, text=_TRICKY, client_id=st.none() | _TRICKY)
def test_a_chat_message_passes_the_inline_checks_only_if_it_passes_the_generic_ones(
    room: str, user: str, text: str, client_id: str | None
) -> None:
    # parse() takes a chat message through `_plain_message`, and through `_validate` only
    # when that says no: it must never let through what `_validate` refuses.
    msg = SendMessage(room=room, user=user, message=text, client_id=client_id)
    try:
        _validate(msg, SendMessage, SMALL)
    except ProtocolError:
        accepted = False
    else:
        accepted = True
    assert _plain_message(msg, SMALL) == accepted


# --------------------------------------------------------------------------- times


def test_time_of_reads_every_accepted_format() -> None:
    assert time_of(None) is None
    ms = 1732572434123
    for value in ("2024-11-25T22:07:14.123Z", ms, str(ms), ms * 1000):
        assert time_of(value) == ms


def test_an_unreadable_time_is_invalid_time_naming_the_formats() -> None:
    with pytest.raises(ProtocolError) as info:
        time_of("last tuesday")
    assert info.value.code == ErrorCode.INVALID_TIME == "invalid_time"
    assert "'last tuesday'" in info.value.message
    assert "RFC 3339" in info.value.message and "Unix seconds" in info.value.message


# --------------------------------------------------------------------------- rate limit


def test_a_burst_is_admitted_then_refused_with_strikes() -> None:
    limits = limits_with(rate=10.0, burst=5.0)
    session = Session(limits, now=100.0)
    assert [session.admit(limits, 100.0) for _ in range(5)] == [True] * 5
    assert session.admit(limits, 100.0) is False
    assert session.admit(limits, 100.0) is False
    assert session.strikes == 2


def test_tokens_come_back_at_the_rate_and_reset_strikes() -> None:
    limits = limits_with(rate=10.0, burst=5.0)
    session = Session(limits, now=0.0)
    for _ in range(5):
        session.admit(limits, 0.0)
    assert not session.admit(limits, 0.05)  # half a token
    assert session.admit(limits, 0.1)  # one token after 1/rate seconds
    assert session.strikes == 0
    assert not session.admit(limits, 0.1)


def test_an_idle_connection_gets_at_most_one_burst() -> None:
    limits = limits_with(rate=10.0, burst=5.0)
    session = Session(limits, now=0.0)
    admitted = [session.admit(limits, 3600.0) for _ in range(10)]
    assert admitted.count(True) == 5


def test_rate_zero_turns_the_limit_off() -> None:
    limits = limits_with(rate=0.0, burst=1.0)
    session = Session(limits, now=0.0)
    assert all(session.admit(limits, 0.0) for _ in range(10_000))
    assert session.strikes == 0


# --------------------------------------------------------------------------- origins


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "chat.example.com", frozenset(), True),  # not a browser
        ("", "chat.example.com", frozenset(), True),
        ("https://chat.example.com", "chat.example.com", frozenset(), True),
        ("http://chat.example.com:8080", "chat.example.com:8081", frozenset(), True),
        ("HTTPS://Chat.Example.com/", "chat.example.com", frozenset(), True),
        ("http://[::1]:8080", "[::1]:8081", frozenset(), True),
        ("https://evil.example", "chat.example.com", frozenset(), False),
        ("https://chat.example.com.evil.example", "chat.example.com", frozenset(), False),
        ("null", "chat.example.com", frozenset(), False),
        ("https://chat.example.com", None, frozenset(), False),
        ("https://app.example", "chat.example.com", frozenset({"https://app.example"}), True),
        ("https://chat.example.com", "chat.example.com", frozenset({"https://app.example"}), False),
        ("https://anything.example", "chat.example.com", frozenset({"*"}), True),
    ],
)
def test_origin_allowed(
    origin: str | None, host: str | None, allowed: frozenset[str], ok: bool
) -> None:
    assert origin_allowed(origin, host, allowed) is ok


def test_every_client_event_has_its_field_rules() -> None:
    """A client event type without them made `parse` raise KeyError: the connection was
    closed with 1011 instead of being answered."""
    from fastchat import events
    from fastchat.protocol import _ID_FIELDS, _NAME_FIELDS

    for kind in events.AnyClientEvent.__args__:
        assert kind in _NAME_FIELDS and kind in _ID_FIELDS, kind


def test_a_history_page_is_bounded_by_the_setting_on_the_socket_too() -> None:
    ask = b'{"type": "HISTORY", "room": "general", "limit": 2000}'
    with pytest.raises(ProtocolError) as refused:
        parse(ask, limits_with())
    assert refused.value.code == ErrorCode.INVALID_FIELD
    assert refused.value.message == "limit must be between 1 and 1000, got 2000"
    assert parse(ask, limits_with(history_limit_max=5000)).limit == 2000  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):
        parse(b'{"type": "HISTORY", "room": "general", "limit": 0}', limits_with())


# --------------------------------------------------------------------------- session state


def test_keepalive_pings_a_silent_connection_then_drops_it_without_a_pong() -> None:
    session = Session(limits_with(), now=0.0)
    assert session.keepalive(5.0, interval=10.0, timeout=5.0, seen=False) == KEEP
    assert session.keepalive(10.0, interval=10.0, timeout=5.0, seen=False) == PING
    # waiting for the pong
    assert session.keepalive(12.0, interval=10.0, timeout=5.0, seen=False) == KEEP
    assert session.keepalive(15.0, interval=10.0, timeout=5.0, seen=False) == DROP


def test_keepalive_any_frame_starts_the_silence_anew() -> None:
    session = Session(limits_with(), now=0.0)
    assert session.keepalive(10.0, interval=10.0, timeout=5.0, seen=False) == PING
    # the pong (or any frame) arrived
    assert session.keepalive(14.0, interval=10.0, timeout=5.0, seen=True) == KEEP
    # 9 s quiet since
    assert session.keepalive(23.0, interval=10.0, timeout=5.0, seen=False) == KEEP
    assert session.keepalive(24.0, interval=10.0, timeout=5.0, seen=False) == PING


def test_typing_is_relayed_at_most_once_per_interval_per_room() -> None:
    session = Session(limits_with(), now=0.0)
    assert session.may_type("r:a", 1.0, 1.0)
    assert not session.may_type("r:a", 1.5, 1.0)
    assert session.may_type("r:b", 1.5, 1.0)  # another room has its own throttle
    assert session.may_type("r:a", 2.0, 1.0)


def test_leaving_a_room_forgets_its_name_and_typing_throttle() -> None:
    session = Session(limits_with(), now=0.0)
    session.joined("r:a", "ann")
    session.may_type("r:a", 5.0, 1.0)
    assert session.left("r:a") == "ann"
    assert session.left("r:a") == ""  # not in it any more
    session.joined("r:a", "ann")
    assert session.may_type("r:a", 5.1, 1.0)  # rejoined: typing again at once


def test_one_resume_per_room_at_a_time() -> None:
    session = Session(limits_with(), now=0.0)
    assert session.resume_started("r:a")
    assert not session.resume_started("r:a")  # the running one will answer
    assert session.resume_started("p:7")
    session.resume_ended("r:a")
    assert session.resume_started("r:a")
