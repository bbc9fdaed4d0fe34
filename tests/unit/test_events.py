"""fastchat.events: the wire shapes clients send and the server sends back."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from fastchat import events
from fastchat.events import (
    CLIENT_EVENT_TYPES,
    NAME_MAX,
    ClientEvent,
    Comment,
    CommentEvent,
    ErrorEvent,
    JoinPost,
    JoinRoom,
    LeavePost,
    LeaveRoom,
    Message,
    MessageEvent,
    Post,
    SendComment,
    SendMessage,
    ServerEvent,
    client_decoder,
    encode,
)
from fastchat.protocol import ProtocolError, parse
from tests.unit.limits import limits_with

# The tags shipped in the first protocol version; they are never renamed (docs/PROTOCOL.md),
# newer event types may only be added beside them.
SHIPPED_CLIENT_TAGS = {
    "JOIN_ROOM": JoinRoom,
    "LEAVE_ROOM": LeaveRoom,
    "CHAT_MESSAGE": SendMessage,
    "POST_COMMENT": SendComment,
    "JOIN_POST": JoinPost,
    "LEAVE_POST": LeavePost,
}


def decode(obj: dict[str, Any]) -> Any:
    return client_decoder.decode(msgspec.json.encode(obj))


def _all_subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _sample(t: msgspec.inspect.Type) -> Any:
    """A plain value of an inspected msgspec type (enough to build any server event)."""
    if isinstance(t, msgspec.inspect.IntType):
        return 7
    if isinstance(t, msgspec.inspect.StrType):
        return "x"
    if isinstance(t, msgspec.inspect.BoolType):
        return True
    if isinstance(t, msgspec.inspect.FloatType):
        return 1.5
    if isinstance(t, msgspec.inspect.ListType | msgspec.inspect.TupleType):
        return []
    if isinstance(t, msgspec.inspect.DictType):
        return {}
    if isinstance(t, msgspec.inspect.UnionType):
        return _sample(next(a for a in t.types if not isinstance(a, msgspec.inspect.NoneType)))
    raise AssertionError(f"no sample for {t!r}; extend _sample")


def _build(cls: type) -> Any:
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return cls(**{f.name: _sample(f.type) for f in info.fields if f.required})


SERVER_EVENTS = sorted(
    (c for c in _all_subclasses(ServerEvent) if c.__struct_config__.tag is not None),
    key=lambda c: c.__name__,
)


# --------------------------------------------------------------------------- client events


@pytest.mark.parametrize(("tag", "cls"), sorted(SHIPPED_CLIENT_TAGS.items()))
def test_every_shipped_tag_is_still_decoded(tag: str, cls: type) -> None:
    assert tag in CLIENT_EVENT_TYPES
    assert cls.__struct_config__.tag == tag


def test_client_event_types_is_the_sorted_list_of_decodable_tags() -> None:
    assert list(CLIENT_EVENT_TYPES) == sorted(set(CLIENT_EVENT_TYPES))
    decodable = {c.__struct_config__.tag for c in _all_subclasses(ClientEvent)}
    assert set(CLIENT_EVENT_TYPES) == decodable


def test_join_room_defaults_to_anonymous_without_resume() -> None:
    ev = decode({"type": "JOIN_ROOM", "room": "general"})
    assert ev == JoinRoom(room="general", user="anonymous", last_id=None)


def test_join_room_with_user_and_last_id() -> None:
    ev = decode({"type": "JOIN_ROOM", "room": "general", "user": "ana", "last_id": 41})
    assert ev == JoinRoom(room="general", user="ana", last_id=41)


def test_chat_message_decodes_with_and_without_client_id() -> None:
    ev = decode({"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "hi"})
    assert ev == SendMessage(room="r", user="u", message="hi", client_id=None)
    ev = decode(
        {"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "hi", "client_id": "c-1"}
    )
    assert ev.client_id == "c-1"


@pytest.mark.parametrize("post_id", [5, "5"])
def test_post_ids_are_accepted_as_numbers_or_strings(post_id: int | str) -> None:
    # The original protocol sends post ids as strings.
    assert decode({"type": "JOIN_POST", "post_id": post_id}).post_id == post_id
    assert decode({"type": "LEAVE_POST", "post_id": post_id}).post_id == post_id
    ev = decode({"type": "POST_COMMENT", "post_id": post_id, "user": "u", "comment": "c"})
    assert ev == SendComment(post_id=post_id, user="u", comment="c")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    ev = decode({"type": "LEAVE_ROOM", "room": "r", "sent_by": "a newer client", "v": [1, 2]})
    assert ev == LeaveRoom(room="r")


def test_client_events_are_immutable() -> None:
    ev = decode({"type": "LEAVE_ROOM", "room": "r"})
    with pytest.raises(AttributeError):
        ev.room = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["a", "x" * NAME_MAX, "Zoë", "café au lait", "🚀 launch", "日本語", "with space"],
)
def test_printable_names_up_to_the_limit_are_accepted(name: str) -> None:
    assert decode({"type": "JOIN_ROOM", "room": name, "user": name}).room == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * (NAME_MAX + 1),
        "tab\there",
        "new\nline",
        "nul\x00",
        "del\x7f",
        "\x1b[31m",
        " ",
        "   ",
        "\u0085",  # C1 control (NEL)
        "ana\u200b",  # zero-width space: two names that look the same
        "\u200b",
        "\u202eevil",  # right-to-left override: spoofs how the name reads
        "\ufeffbom",
    ],
    ids=repr,
)
def test_blank_overlong_control_or_invisible_names_are_rejected(name: str) -> None:
    # Lengths are the decoder's; the characters are protocol.parse's (isprintable).
    for field in ("room", "user"):
        obj = {"type": "JOIN_ROOM", "room": "r", field: name}
        with pytest.raises(ProtocolError) as info:
            parse(msgspec.json.encode(obj), limits_with())
        assert info.value.code == "invalid_field" and field in info.value.message


@pytest.mark.parametrize("field", ["room", "user", "client_id"])
def test_a_trailing_newline_is_a_control_character_too(field: str) -> None:
    obj = {"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "m", field: "general\n"}
    with pytest.raises(ProtocolError) as info:
        parse(msgspec.json.encode(obj), limits_with())
    assert info.value.code == "invalid_field" and field in info.value.message


def test_client_id_limit_is_enforced() -> None:
    base = {"type": "CHAT_MESSAGE", "room": "r", "user": "u", "message": "m"}
    assert decode({**base, "client_id": "c" * events.CLIENT_ID_MAX}).client_id
    with pytest.raises(msgspec.ValidationError, match=r"\$\.client_id"):
        decode({**base, "client_id": "c" * (events.CLIENT_ID_MAX + 1)})
    with pytest.raises(msgspec.ValidationError, match=r"\$\.client_id"):
        decode({**base, "client_id": ""})


@pytest.mark.parametrize("last_id", [-1, 2**63, "12", 1.5])
def test_last_id_must_be_a_non_negative_64_bit_int(last_id: object) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.last_id"):
        decode({"type": "JOIN_ROOM", "room": "r", "last_id": last_id})


@pytest.mark.parametrize("post_id", [0, -3, 2**63, "1" * 21, None, 2.5])
def test_out_of_range_post_ids_are_rejected(post_id: object) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.post_id"):
        decode({"type": "JOIN_POST", "post_id": post_id})


def test_client_events_round_trip_through_the_encoder() -> None:
    samples = [
        JoinRoom(room="r", user="u", last_id=3),
        LeaveRoom(room="r"),
        SendMessage(room="r", user="u", message="hello", client_id="c1"),
        SendComment(post_id="12", user="u", comment="nice"),
        JoinPost(post_id=12, user="u", last_id=0),
        LeavePost(post_id=12),
    ]
    for ev in samples:
        assert client_decoder.decode(encode(ev)) == ev


# --------------------------------------------------------------------------- server events


@pytest.mark.parametrize("cls", SERVER_EVENTS, ids=lambda c: c.__name__)
def test_server_events_encode_with_type_first(cls: type) -> None:
    data = encode(_build(cls))
    tag = cls.__struct_config__.tag
    assert data.startswith(b'{"type":' + msgspec.json.encode(tag) + b",") or data == (
        b'{"type":' + msgspec.json.encode(tag) + b"}"  # PONG: nothing but its type
    )
    assert msgspec.json.decode(data)["type"] == tag


def test_chat_message_event_shape() -> None:
    ev = MessageEvent(
        id=10, room="general", user="ana", message="hi", timestamp="2026-11-25T22:07:14.123Z"
    )
    assert msgspec.json.decode(encode(ev)) == {
        "type": "CHAT_MESSAGE",
        "id": 10,
        "room": "general",
        "user": "ana",
        "message": "hi",
        "timestamp": "2026-11-25T22:07:14.123Z",
    }


def test_client_id_is_omitted_when_none_and_sent_when_set() -> None:
    ev = MessageEvent(id=1, room="r", user="u", message="m", timestamp="t")
    assert b"client_id" not in encode(ev)
    ev = MessageEvent(id=1, room="r", user="u", message="m", timestamp="t", client_id="c9")
    assert msgspec.json.decode(encode(ev))["client_id"] == "c9"
    ce = CommentEvent(id=1, post_id=2, user="u", comment="c", timestamp="t")
    assert b"client_id" not in encode(ce)
    assert msgspec.json.decode(encode(ce))["type"] == "POST_COMMENT"


def test_rest_records_carry_no_type_tag() -> None:
    assert msgspec.json.decode(
        encode(Message(id=1, room="r", user="u", message="m", timestamp="t"))
    ) == {"id": 1, "room": "r", "user": "u", "message": "m", "timestamp": "t"}
    assert "type" not in msgspec.json.decode(
        encode(Comment(id=1, post_id=2, user="u", comment="c", timestamp="t", client_id="x"))
    )


def test_post_always_includes_its_comment_count() -> None:
    post = Post(id=1, title="T", content="C", author="a", timestamp="t")
    assert msgspec.json.decode(encode(post))["comment_count"] == 0


def test_error_event_shape() -> None:
    assert msgspec.json.decode(encode(ErrorEvent(code="invalid_json", message="bad"))) == {
        "type": "ERROR",
        "code": "invalid_json",
        "message": "bad",
    }
    refused = ErrorEvent(code="too_large", message="long", client_id="c-1")
    assert msgspec.json.decode(encode(refused))["client_id"] == "c-1"


def test_non_ascii_text_survives_encoding() -> None:
    ev = MessageEvent(id=1, room="r", user="Zoë", message='héllo 🚀 "quoted"', timestamp="t")
    back = msgspec.json.decode(encode(ev))
    assert back["user"] == "Zoë"
    assert back["message"] == 'héllo 🚀 "quoted"'


# --------------------------------------------------------------------------- import graph


def test_events_and_protocol_import_no_io_library() -> None:
    """events -> protocol sit at the bottom of the import graph (STYLE.md)."""
    code = (
        "import sys, fastchat.events, fastchat.protocol, fastchat.timeparse\n"
        "heavy = ('asyncio', 'apsw', 'picows', 'litestar', 'granian', 'uvloop', 'sqlite3',"
        " 'click', 'fastchat.store', 'fastchat.sqlitestore', 'fastchat._hub', 'fastchat.service',"
        " 'fastchat.server')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
