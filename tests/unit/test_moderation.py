"""Bans and mutes in memory (moderation.py): which refusal, where, until when."""

from __future__ import annotations

import pytest

from fastchat.errors import ErrorCode, FastchatError
from fastchat.moderation import Moderation


def refused(call: object, *args: object) -> str:
    with pytest.raises(FastchatError) as refusal:
        call(*args)  # type: ignore[operator]
    return refusal.value.code


def test_a_ban_in_a_room_refuses_joins_and_posts_there_only() -> None:
    m = Moderation()
    assert not m
    m.put(("troll", "general", "ban", None, "mod", "spam", 1))
    assert m
    assert refused(m.check_join, "troll", "general", 10) == ErrorCode.BANNED
    assert refused(m.check_post, "troll", "general", 10) == ErrorCode.BANNED
    m.check_join("troll", "other", 10)
    m.check_join("someone", "general", 10)


def test_everywhere_covers_every_room_and_a_mute_only_posts() -> None:
    m = Moderation()
    m.put(("loud", "*", "mute", None, "mod", "", 1))
    m.check_join("loud", "anywhere", 10)
    assert refused(m.check_post, "loud", "anywhere", 10) == ErrorCode.MUTED


def test_a_ban_for_a_time_ends_by_itself_and_can_be_lifted() -> None:
    m = Moderation()
    m.put(("t", "r", "ban", 1_000, "mod", "", 1))
    assert refused(m.check_join, "t", "r", 999) == ErrorCode.BANNED
    m.check_join("t", "r", 1_000)  # expired
    assert [b.sub for b in m.in_force(999)] == ["t"] and m.in_force(1_000) == []
    m.put(("t", "r", "ban", None, "mod", "", 2))
    m.drop("t", "r", "ban")
    m.check_join("t", "r", 10)


def test_the_refusal_says_why() -> None:
    m = Moderation()
    m.put(("t", "*", "ban", None, "mod", "flooding", 1))
    with pytest.raises(FastchatError) as refusal:
        m.check_post("t", "general", 5)
    assert refusal.value.message == "you are banned from every room: flooding"


def test_silenced_lists_the_rooms_a_user_may_not_post_in_with_the_stronger_refusal() -> None:
    m = Moderation()
    m.put(("u", "a", "mute", None, "mod", "", 1))
    m.put(("u", "b", "mute", None, "mod", "", 1))
    m.put(("u", "b", "ban", None, "mod", "", 1))
    m.put(("u", "c", "ban", 5, "mod", "", 1))  # over by now
    m.put(("u", "*", "mute", None, "mod", "", 1))  # check_post's, not listed
    m.put(("other", "d", "ban", None, "mod", "", 1))
    assert m.silenced("u", 10) == {"a": ErrorCode.MUTED, "b": ErrorCode.BANNED}
    assert m.silenced("nobody", 10) == {}
