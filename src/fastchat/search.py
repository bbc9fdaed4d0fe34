"""Full-text search over messages and comments: what a query's words are, who may see which
hit, pages with cursors, and snippets in parts. The stores do the matching and the ranking
(sqlitestore.py: SQLite FTS5; pgstore.py: PostgreSQL tsvector) and hand back the texts; the
snippets are made here, the same way for both."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from fastchat.auth import Auth, Identity
from fastchat.errors import ErrorCode, FastchatError
from fastchat.events import SearchHit, SearchPage, SnippetPart
from fastchat.protocol import ProtocolError
from fastchat.store import Row, Store
from fastchat.timeparse import format_ms

Q_MAX: Final = 200  # characters of a query
TERMS_MAX: Final = 16  # words of a query that count
LIMIT_MAX: Final = 100
# Words, as the stores' tokenizers see them (letters and digits of any script).
_WORD: Final = re.compile(r"[^\W_]+")
# A snippet: this many words, starting this many before the first match.
SNIPPET_WORDS: Final = 24
SNIPPET_BEFORE: Final = 6


def terms_of(q: str) -> list[str]:
    """The words to search for, every one of which must be in a hit. Raises ProtocolError."""
    if len(q) > Q_MAX:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"`q` is {len(q)} characters, over the limit of {Q_MAX}"
        )
    words = _WORD.findall(q)
    if not words:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "`q` must have a word to search for")
    return words[:TERMS_MAX]


def fold(word: str) -> str:
    """A word as the tokenizers compare it: case and accents left out."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def snippet_of(text: str, wanted: set[str]) -> tuple[str, list[SnippetPart]]:
    """The words of `text` around its first match (SNIPPET_WORDS of them, "…" where text
    was cut), as plain text and in parts, each a run that is one of the `wanted` words
    (folded) or is not. No markup: a client shows the parts as text nodes, whatever the
    text holds."""
    words = list(_WORD.finditer(text))
    first = next((i for i, w in enumerate(words) if fold(w.group()) in wanted), 0)
    start = max(0, min(first - SNIPPET_BEFORE, len(words) - SNIPPET_WORDS))
    end = min(len(words), start + SNIPPET_WORDS)
    lo = words[start].start() if start > 0 else 0
    hi = words[end - 1].end() if 0 < end < len(words) else len(text)
    parts: list[SnippetPart] = []

    def add(piece: str, match: bool) -> None:
        if not piece:
            return
        if parts and parts[-1].match == match:
            parts[-1].text += piece
        else:
            parts.append(SnippetPart(piece, match))

    if lo > 0:
        add("… ", False)
    at = lo
    for w in words[start:end]:
        if fold(w.group()) in wanted:
            add(text[at : w.start()], False)
            add(w.group(), True)
            at = w.end()
    add(text[at:hi], False)
    if hi < len(text):
        add(" …", False)
    return "".join(p.text for p in parts), parts


def cursor_of(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if cursor.isascii() and cursor.isdigit() and len(cursor) <= 9:
        return int(cursor)
    raise ProtocolError(
        ErrorCode.INVALID_FIELD, "`cursor` must be the `next` of a search page, as it came"
    )


def _hit(row: Row, wanted: set[str]) -> SearchHit:
    kind, item_id, scope, user, ts, text = row
    snippet, parts = snippet_of(text, wanted)
    hit = SearchHit(
        kind="message" if kind == "m" else "comment",
        id=item_id,
        user=user,
        timestamp=format_ms(ts),
        snippet=snippet,
        parts=parts,
    )
    if kind == "m":
        hit.room = scope
    else:
        hit.post_id = scope
    return hit


class Search:
    """Pages of hits for REST (`GET /api/v1/search`), by the room rules of `auth`."""

    def __init__(self, store: Store, auth: Auth) -> None:
        self.store = store
        self.auth = auth

    async def page(
        self,
        identity: Identity | None,
        q: str,
        *,
        room: str | None = None,
        post_id: int | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchPage:
        """The hits of `q`, best first, `limit` of them from `cursor` on. A private room's
        messages reach only those who may read the room (a named room the asker may not
        read is refused: `forbidden_room`). Raises ProtocolError for a bad query, and
        FastchatError `search_disabled` when search is off (SEARCH=false)."""
        if not self.store.search_enabled:
            raise FastchatError(
                ErrorCode.SEARCH_DISABLED,
                "full-text search is off on this server (SEARCH=false): nothing is indexed",
            )
        terms = terms_of(q)
        if not 1 <= limit <= LIMIT_MAX:
            raise ProtocolError(
                ErrorCode.INVALID_FIELD, f"limit must be between 1 and {LIMIT_MAX}, got {limit}"
            )
        if room is not None and post_id is not None:
            raise ProtocolError(ErrorCode.INVALID_FIELD, "search a `room` or a `post_id`, not both")
        if room is not None:
            self.auth.check_join(identity, room)
        position = cursor_of(cursor)
        wanted = {fold(t) for t in terms}
        # Hits in rooms the asker may not read are passed over: read on until the page is
        # full (one more row tells whether there is a next page).
        scan = max(limit + 1, 50)
        hits: list[SearchHit] = []
        more = False
        while not more:
            rows = await self.store.search(terms, room, post_id, position, scan)
            for row in rows:
                if len(hits) == limit:
                    more = True
                    break
                position += 1
                if row[0] == "m" and room is None and not self.auth.may_join(identity, row[2]):
                    continue
                hits.append(_hit(row, wanted))
            if len(rows) < scan:
                break
        return SearchPage(
            query=q, results=hits, count=len(hits), next=str(position) if more else None
        )
