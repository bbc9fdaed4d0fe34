"""The SQLite store's in-memory bookkeeping (fastchat.trailing), alone: what the store's own
tests cannot reach through a database, the filter's guarantee that a key it was given is
never reported absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mmh3

from fastchat.trailing import ClientKeys


def keys_of(start: int, n: int) -> list[tuple[str, str, str]]:
    return [(f"room-{i % 500}", f"user-{i % 750}", f"c-{i}") for i in range(start, start + n)]


def test_the_client_id_filter_never_forgets_a_key_filled_or_added() -> None:
    keys = ClientKeys(1 << 20)
    assert keys.may_hold(("r", "u", "never added"))  # not filled: "maybe" to everything
    keys.fill(keys_of(0, 30_000))  # read from message_clients when the store opens
    for key in keys_of(30_000, 30_000):  # added by the writer from then on
        keys.add(key)
    assert all(keys.may_hold(key) for key in keys_of(0, 60_000))
    # Keys never added are mostly told absent: what spares the table a read.
    absent = sum(not keys.may_hold(key) for key in keys_of(100_000, 10_000))
    assert absent > 9_500


def test_the_filter_is_sized_for_its_keys() -> None:
    assert ClientKeys.size_for(0) == 1 << 23
    assert ClientKeys.size_for(1 << 20) == 1 << 24
    assert ClientKeys.size_for(3_000_000) >= 16 * 3_000_000


def test_a_saved_filter_means_the_same_in_another_process(tmp_path: Path) -> None:
    """The store saves the filter at a clean close and the next process reads it back
    (sqlitestore.SqliteStore._client_keys): its bits must not depend on the process's string
    hashing (Python's `hash()` is seeded anew in every process)."""
    keys = ClientKeys(1 << 20)
    keys.fill(keys_of(0, 20_000))
    saved = tmp_path / "keys"
    saved.write_bytes(keys.to_bytes())
    check = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fastchat.trailing import ClientKeys\n"
        "from tests.unit.test_trailing import keys_of\n"
        "keys = ClientKeys(saved=Path(sys.argv[1]).read_bytes())\n"
        "keys.fill([])\n"
        "held = sum(keys.may_hold(key) for key in keys_of(0, 20_000))\n"
        "absent = sum(not keys.may_hold(key) for key in keys_of(100_000, 10_000))\n"
        "print(keys.bits, held, absent)\n"
    )
    for seed in ("1", "2"):  # two other hash seeds than this process's (random) one
        out = subprocess.run(
            [sys.executable, "-c", check, str(saved)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        bits, held, absent = map(int, out)
        assert bits == 1 << 20
        assert held == 20_000  # every key given here is there
        assert absent > 9_500  # and the rest mostly told absent, as here


def scheme_1_bits(bits: int, keys: list[tuple[object, str, str]]) -> bytes:
    """ClientKeys.SCHEME 1, written out in Python: a filter saved before the filter's step
    was compiled (and any saved by another version) must read the same."""
    out = bytearray(bits // 8)
    mask = bits - 1
    for key in keys:
        h = mmh3.hash128(f"{key[0]}\0{key[1]}\0{key[2]}")
        a, b = h & 0xFFFFFFFF, ((h >> 64) & 0xFFFFFFFF) | 1
        for spot in (a & mask, (a + b) & mask, (a + 2 * b) & mask):
            out[spot >> 3] |= 1 << (spot & 7)
    return bytes(out)


def test_the_filter_sets_the_bits_of_scheme_1_in_the_smallest_and_the_largest_filter() -> None:
    keys: list[tuple[object, str, str]] = [
        *keys_of(0, 5_000),
        *((post, f"user-{post}", f"c-{post}") for post in range(1, 2_000)),  # comments
        ("général", "ünïcode", "😀"),
        ("r", "u", ""),
        ("r", "", "c"),
    ]
    for bits in (1 << 23, ClientKeys.size_for(ClientKeys.MAX_KEYS)):  # 1 MB and 64 MB
        filter_ = ClientKeys(bits)
        filter_.fill(keys)
        assert filter_.to_bytes() == scheme_1_bits(bits, keys)
        assert all(filter_.may_hold(key) for key in keys)
        # And a key is told absent exactly when one of its scheme-1 spots is clear.
        saved = ClientKeys(saved=scheme_1_bits(bits, keys[:100]))
        saved.fill([])
        assert all(saved.may_hold(key) for key in keys[:100])
        assert sum(not saved.may_hold(key) for key in keys[100:]) > 0.99 * len(keys[100:])
