"""Presence, sans I/O: sessions by name, members by connection, other nodes, expiry."""

from __future__ import annotations

from fastchat.presence import Presence


def test_sessions_are_by_name_and_members_by_connection() -> None:
    p = Presence()
    assert p.join("r:a", "sam") == (1, 1)
    assert p.join("r:a", "sam") == (2, 2)  # a second tab
    assert p.join("r:a", "li") == (1, 3)
    assert p.users("r:a") == ["sam", "li"]
    assert p.leave("r:a", "sam") == (1, 2)  # still there in the other tab
    assert p.leave("r:a", "sam") == (0, 1)
    assert p.users("r:a") == ["li"]
    assert p.leave("r:a", "li") == (0, 0)
    assert p.snapshot() == {}  # empty rooms are forgotten


def test_leaving_what_was_never_joined_does_not_go_negative() -> None:
    p = Presence()
    assert p.leave("r:a", "ghost") == (0, 0)
    assert p.members("r:a") == 0


def test_other_nodes_add_up_and_expire() -> None:
    p = Presence()
    p.join("r:a", "sam")
    p.apply("n2", "r:a", (2, {"li": 1, "sam": 1}), now=10.0)
    p.apply_snapshot("n3", {"r:a": (1, {"kim": 1}), "r:b": (1, {"kim": 1})}, now=10.0)
    assert p.members("r:a") == 4
    assert p.sessions("r:a", "sam") == 2
    assert p.users("r:a") == ["sam", "li", "kim"]
    # n2 keeps talking, n3 goes silent.
    p.apply("n2", "r:a", (1, {"li": 1}), now=14.0)
    departures = p.expire(now=15.0, ttl=3.0)
    assert sorted(departures) == [("r:a", "kim", 0, 2), ("r:b", "kim", 0, 0)]
    assert p.members("r:a") == 2 and p.sessions("r:a", "sam") == 1
    assert p.expire(now=15.0, ttl=3.0) == []  # once only


def test_a_node_emptying_a_room_removes_it() -> None:
    p = Presence()
    p.apply("n2", "r:a", (1, {"li": 1}), now=1.0)
    p.apply("n2", "r:a", (0, {}), now=2.0)
    assert p.members("r:a") == 0 and p.users("r:a") == []


def test_the_user_list_stops_at_100_names_this_nodes_first() -> None:
    p = Presence()
    for i in range(150):
        p.join("r:big", f"u{i}")
    p.apply("n2", "r:big", (3, {"u0": 1, "far1": 1, "far2": 1}), now=1.0)
    assert p.users("r:big") == [f"u{i}" for i in range(100)]
    assert p.members("r:big") == 153
    q = Presence()
    q.join("r:a", "sam")
    q.apply("n2", "r:a", (120, {f"f{i}": 1 for i in range(120)}), now=1.0)
    names = q.users("r:a")
    assert len(names) == 100 and names[:3] == ["sam", "f0", "f1"]


def test_pages_of_names_in_name_order_across_nodes() -> None:
    p = Presence()
    for name in ("dan", "ann", "cy", "ann"):  # ann twice: two tabs, one name
        p.join("r:a", name)
    p.apply("n2", "r:a", (2, {"bo": 1, "cy": 1}), now=1.0)
    assert p.page("r:a", None, 2) == (["ann", "bo"], "bo")
    assert p.page("r:a", "bo", 2) == (["cy", "dan"], None)
    assert p.page("r:a", "dan", 2) == ([], None)
    assert p.page("r:a", None, 10) == (["ann", "bo", "cy", "dan"], None)
    assert p.page("r:none", None, 10) == ([], None)


def test_the_cached_user_list_is_always_the_list_built_afresh() -> None:
    """users() is kept between calls (every ROOM_JOINED carries it) and dropped when it may
    have changed: after any sequence of local joins and leaves, other nodes' changes,
    snapshots and expiry, it equals the list built from scratch."""
    import random

    rng = random.Random(14)
    p = Presence()
    keys = ["r:a", "r:b"]
    names = [f"u{i}" for i in range(130)]  # more than the 100 listed
    joined: list[tuple[str, str]] = []
    now = 0.0
    for step in range(6000):
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.55 or not joined:
            # Mostly fresh names early, so that rooms pass 100 names, then reuse.
            user = names[min(step // 20, 129)] if rng.random() < 0.5 else rng.choice(names)
            p.join(key, user)
            joined.append((key, user))
        elif op < 0.9:
            key, user = joined.pop(rng.randrange(len(joined)))
            p.leave(key, user)
        elif op < 0.96:
            view = {rng.choice(names): rng.randint(1, 2) for _ in range(rng.randint(0, 3))}
            p.apply(rng.choice(["n2", "n3"]), key, (sum(view.values()), view), now)
        elif op < 0.99:
            p.apply_snapshot("n3", {key: (1, {rng.choice(names): 1})}, now)
        else:
            now += 10.0
            p.expire(now, ttl=5.0)
        for k in keys:
            assert p.users(k) == p._users(k), (step, k)
    assert max(len(p.users(k)) for k in keys) == 100  # the cap was reached and held


def test_a_big_room_keeps_its_user_list_through_joins_past_the_first_100() -> None:
    p = Presence()
    for i in range(100):
        p.join("r:big", f"u{i}")
    first = p.users("r:big")
    for i in range(100, 1000):
        p.join("r:big", f"u{i}")
        assert p.users("r:big") is first  # not rebuilt: the 100 listed did not change
    p.leave("r:big", "u500")  # not listed
    assert p.users("r:big") is first
    p.leave("r:big", "u5")  # listed: the list moves up
    assert p.users("r:big") == [f"u{i}" for i in range(101) if i != 5]
