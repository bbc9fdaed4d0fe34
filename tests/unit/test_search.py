"""search.py's pure parts: a query's words, snippets in parts, cursors."""

from __future__ import annotations

import pytest

from fastchat.protocol import ProtocolError
from fastchat.search import SNIPPET_WORDS, cursor_of, fold, snippet_of, terms_of


def shown(text: str, *terms: str) -> tuple[str, list[tuple[str, bool]]]:
    snippet, parts = snippet_of(text, {fold(t) for t in terms})
    assert "".join(p.text for p in parts) == snippet
    return snippet, [(p.text, p.match) for p in parts]


def test_the_matches_are_marked_and_the_rest_is_kept_as_it_was() -> None:
    assert shown("Hello, <b>world</b>!", "world") == (
        "Hello, <b>world</b>!",
        [("Hello, <b>", False), ("world", True), ("</b>!", False)],
    )


def test_case_and_accents_do_not_count() -> None:
    assert shown("Crème BRÛLÉE", "creme", "brulee")[1] == [
        ("Crème", True),
        (" ", False),
        ("BRÛLÉE", True),
    ]


def test_a_long_text_is_cut_around_the_first_match() -> None:
    words = [f"w{i}" for i in range(100)]
    snippet, parts = shown(" ".join(words), "w50")
    assert snippet.startswith("… w44 ") and snippet.endswith(" w67 …")
    assert len(snippet.split()) == SNIPPET_WORDS + 2  # and the two ellipses
    assert ("w50", True) in parts
    # A match near the end: the window ends with the text.
    snippet, _ = shown(" ".join(words), "w99")
    assert snippet.endswith("w99") and snippet.startswith("… w76 ")


def test_no_match_in_the_text_shows_its_start() -> None:
    assert shown("short text", "absent") == ("short text", [("short text", False)])


def test_emoji_and_other_scripts_survive() -> None:
    snippet, parts = shown("🎉 пожалуйста 東京 🎉", "пожалуйста")
    assert snippet == "🎉 пожалуйста 東京 🎉"
    assert ("пожалуйста", True) in parts


@pytest.mark.parametrize("q", ["", "   ", "!!!", "x" * 201])
def test_a_query_without_words_is_refused(q: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        terms_of(q)
    assert refused.value.code == "invalid_field"


def test_a_query_s_words() -> None:
    assert terms_of('"hello" OR wörld*') == ["hello", "OR", "wörld"]
    assert len(terms_of("a " * 50)) == 16


@pytest.mark.parametrize("cursor", ["-1", "1.5", "x", "9" * 10, "١٢"])
def test_a_bad_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(ProtocolError):
        cursor_of(cursor)
    assert cursor_of("40") == 40 and cursor_of(None) == 0
