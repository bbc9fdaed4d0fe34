"""Wire events and records: msgspec Structs with cached encoders and decoders.

Imports no I/O library. Wire tags (`type` values) and field names are part of the public
protocol (docs/PROTOCOL.md) and are never renamed once shipped.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

# Names (users, rooms): 1-64 characters, not blank, no control characters and no invisible
# or direction-changing ones (zero-width, bidi overrides: used to spoof names). The length is
# checked by the decoder; the characters by `protocol.valid_name` (str.isprintable), not by a
# regex `pattern` here: a pattern costs ~1.1 us per decoded event (measured, bench/RESULTS.md),
# isprintable ~0.05 us.
NAME_MAX: Final = 64
CLIENT_ID_MAX: Final = 64

Name = Annotated[str, Meta(min_length=1, max_length=NAME_MAX)]
ClientId = Annotated[str, Meta(min_length=1, max_length=CLIENT_ID_MAX)]
Id = Annotated[int, Meta(ge=0, le=2**63 - 1)]
# The original protocol sends post ids as strings ("123"); numbers are accepted too.
PostRef = Annotated[int, Meta(ge=1, le=2**63 - 1)] | Annotated[str, Meta(max_length=20)]


# ---------------------------------------------------------------------------------------------
# Client -> server
# ---------------------------------------------------------------------------------------------


class ClientEvent(Struct, tag_field="type", forbid_unknown_fields=False, frozen=True):
    """Base of every event a client sends; `type` is the tag."""


class JoinRoom(ClientEvent, tag="JOIN_ROOM", frozen=True):
    room: Name
    user: Name = "anonymous"
    last_id: Id | None = None
    # With last_id: the `change` of the last MESSAGE_EDITED/MESSAGE_DELETED seen (or
    # ROOM_JOINED's last_change); the edits and deletions after it are replayed too.
    last_change: Id | None = None


class LeaveRoom(ClientEvent, tag="LEAVE_ROOM", frozen=True):
    room: Name


class SendMessage(ClientEvent, tag="CHAT_MESSAGE", frozen=True):
    room: Name
    user: Name
    message: str
    client_id: ClientId | None = None


class SendComment(ClientEvent, tag="POST_COMMENT", frozen=True):
    post_id: PostRef
    user: Name
    comment: str
    client_id: ClientId | None = None


class Typing(ClientEvent, tag="TYPING", frozen=True):
    room: Name
    user: Name


class TypingStopped(ClientEvent, tag="TYPING_STOPPED", frozen=True):
    """The user stopped typing without sending (cleared the text): the others' "is typing"
    goes at once rather than when it times out."""

    room: Name
    user: Name


# A time: RFC 3339 / ISO 8601 text, 'YYYY-MM-DD HH:MM:SS', or a Unix number (timeparse.py).
TimeRef = str | int | float
HistoryLimit = Annotated[int, Meta(ge=1)]  # at most HISTORY_LIMIT_MAX (protocol.check_limit)
MembersLimit = Annotated[int, Meta(ge=1, le=1000)]


class GetHistory(ClientEvent, tag="HISTORY", frozen=True):
    """A page of a room's messages (`room`) or a post's comments (`post_id`)."""

    room: Name | None = None
    post_id: PostRef | None = None
    limit: HistoryLimit = 50
    before: Id | None = None
    after: Id | None = None
    since: TimeRef | None = None
    until: TimeRef | None = None
    request_id: ClientId | None = None


class JoinPost(ClientEvent, tag="JOIN_POST", frozen=True):
    post_id: PostRef
    user: Name = "anonymous"
    last_id: Id | None = None
    last_change: Id | None = None


class LeavePost(ClientEvent, tag="LEAVE_POST", frozen=True):
    post_id: PostRef


class GetMembers(ClientEvent, tag="MEMBERS", frozen=True):
    """A page of the names in a room you are in, in name order: `after` is the `next` of the
    page before (none: from the first name)."""

    room: Name
    after: Name | None = None
    limit: MembersLimit = 100
    request_id: ClientId | None = None


class Ping(ClientEvent, tag="PING", frozen=True):
    """Is the connection alive? Answered with PONG. A browser cannot see the WebSocket
    pings the server sends (it answers them itself), so a client that wants to notice a
    dead connection (a laptop woken from sleep, a network that dropped it silently) asks
    at the application level."""


class Authenticate(ClientEvent, tag="AUTH", frozen=True):
    """A token for this connection (when the handshake carried none), or a fresh one
    before the current one expires (same `sub`)."""

    token: Annotated[str, Meta(min_length=1, max_length=8192)]


class EditMessage(ClientEvent, tag="EDIT_MESSAGE", frozen=True):
    """Replace a message's text: its author (by token) within EDIT_WINDOW_SECONDS, or a
    moderator. `room`, when given, must be the message's."""

    id: Id
    message: str
    room: Name | None = None


class DeleteMessage(ClientEvent, tag="DELETE_MESSAGE", frozen=True):
    """Delete a message (a tombstone stays, without its text); same rules as EDIT_MESSAGE."""

    id: Id
    room: Name | None = None


class EditComment(ClientEvent, tag="EDIT_COMMENT", frozen=True):
    id: Id
    comment: str
    post_id: PostRef | None = None


class DeleteComment(ClientEvent, tag="DELETE_COMMENT", frozen=True):
    id: Id
    post_id: PostRef | None = None


AnyClientEvent = (
    JoinRoom
    | LeaveRoom
    | SendMessage
    | SendComment
    | Typing
    | TypingStopped
    | GetHistory
    | JoinPost
    | LeavePost
    | GetMembers
    | Authenticate
    | Ping
    | EditMessage
    | DeleteMessage
    | EditComment
    | DeleteComment
)
CLIENT_EVENT_TYPES: Final = tuple(
    sorted(cls.__struct_config__.tag for cls in AnyClientEvent.__args__)
)

# Built once: a cached tagged-union decoder costs ~0.13 us per decode, ~3 us without caching
# (DESIGN.md, measured on this machine).
client_decoder: Final = msgspec.json.Decoder(AnyClientEvent)


# ---------------------------------------------------------------------------------------------
# Records (REST bodies) and server -> client events
# ---------------------------------------------------------------------------------------------


class Message(Struct, omit_defaults=True):
    """A stored message. Edited: `edited_at`. Deleted: a tombstone, `message` empty and
    `deleted_at` set. Neither field is sent for a message never changed."""

    id: int
    room: str
    user: str
    message: str
    timestamp: str
    client_id: str | None = None
    edited_at: str | None = None
    deleted_at: str | None = None


class Comment(Struct, omit_defaults=True):
    id: int
    post_id: int
    user: str
    comment: str
    timestamp: str
    client_id: str | None = None
    edited_at: str | None = None
    deleted_at: str | None = None


class Post(Struct):
    id: int
    title: str
    content: str
    author: str
    timestamp: str
    comment_count: int = 0


class RoomPage(Struct):
    """`GET /api/v1/messages/{room}`: a page of a room's messages, oldest first."""

    room: str
    messages: list[Message]
    count: int
    has_more: bool
    next: dict[str, int] | None  # the older page's cursor, `{"before": id}`; null: none


class CommentPage(Struct):
    """`GET /api/v1/posts/{id}/comments`: a page of a post's comments, oldest first."""

    post_id: int
    comments: list[Comment]
    count: int
    has_more: bool
    next: dict[str, int] | None


class HealthReport(Struct):
    """`GET /api/v1/health`: 200 with "ok", 503 with "unhealthy" and the database's error."""

    status: str
    database: str
    timestamp: str


class ReadyReport(Struct, omit_defaults=True):
    """`GET /api/v1/ready`: 200 "ready", or 503 with the state and why not."""

    status: str
    reason: str | None = None


class PostList(Struct):
    """`GET /api/v1/posts`: every post, newest first."""

    posts: list[Post]
    count: int


class PostWithComments(Struct):
    """`GET /api/v1/posts/{id}`: a post and its first comments."""

    post: Post
    comments: list[Comment]
    has_more: bool


class MessageEditRequest(Struct, forbid_unknown_fields=True):
    """`PATCH /api/v1/messages/{room}/{id}`: the message's new text."""

    message: str


class CommentEditRequest(Struct, forbid_unknown_fields=True):
    """`PATCH /api/v1/posts/{id}/comments/{comment_id}`: the comment's new text."""

    comment: str


class SnippetPart(Struct, omit_defaults=True):
    """A run of a search hit's snippet: text that matched the query (`match`) or not."""

    text: str
    match: bool = False


class SearchHit(Struct, omit_defaults=True):
    """A message (`room`) or a comment (`post_id`) that has every word of the query."""

    kind: Literal["message", "comment"]
    id: int
    user: str
    timestamp: str
    snippet: str  # the text around the matches, plain (no markup)
    parts: list[SnippetPart]  # the snippet again, in runs, the matched ones marked
    room: str | None = None
    post_id: int | None = None


class SearchPage(Struct):
    """`GET /api/v1/search`: hits, best first; `next` is the `cursor` of the next page."""

    query: str
    results: list[SearchHit]
    count: int
    next: str | None


class BanRequest(Struct, forbid_unknown_fields=True):
    """`POST /api/v1/admin/bans`: ban (or mute) a token user in a room, or everywhere."""

    sub: Annotated[str, Meta(min_length=1, max_length=256)]
    room: Name = "*"  # "*": every room, and comments
    kind: Literal["ban", "mute"] = "ban"
    seconds: Annotated[float, Meta(gt=0, le=100 * 365 * 86400)] | None = None  # None: for good
    reason: Annotated[str, Meta(max_length=500)] = ""


class BanRecord(Struct):
    """A ban or mute in force."""

    sub: str
    room: str
    kind: str
    until: str | None  # RFC 3339; None: for good
    by: str  # the moderator's sub
    reason: str
    since: str


class BanList(Struct):
    bans: list[BanRecord]
    count: int


class ErrorBody(Struct):
    """Every REST refusal's body: a stable code (docs/PROTOCOL.md) and a message."""

    code: str
    message: str


class ServerEvent(Struct, tag_field="type", omit_defaults=True):
    """Base of every event the server sends; `type` is the tag."""


class MessageEvent(Message, ServerEvent, tag="CHAT_MESSAGE", omit_defaults=True):
    pass


class CommentEvent(Comment, ServerEvent, tag="POST_COMMENT", omit_defaults=True):
    pass


class MessageEdited(Message, ServerEvent, tag="MESSAGE_EDITED", omit_defaults=True):
    """A message's new text, to every member of its room; `change` orders the room's edits
    and deletions (a resume's `last_change`)."""

    change: int = 0


class MessageDeleted(Message, ServerEvent, tag="MESSAGE_DELETED", omit_defaults=True):
    """A message deleted: its tombstone (no text), to every member of its room."""

    change: int = 0


class CommentEdited(Comment, ServerEvent, tag="COMMENT_EDITED", omit_defaults=True):
    change: int = 0


class CommentDeleted(Comment, ServerEvent, tag="COMMENT_DELETED", omit_defaults=True):
    change: int = 0


class RoomJoined(ServerEvent, tag="ROOM_JOINED"):
    room: str
    user: str
    members: int
    users: list[str]
    replayed: int = 0
    # The newest edit or deletion this join has accounted for: a later resume's
    # `last_change` (0: none yet).
    last_change: int = 0


class RoomLeft(ServerEvent, tag="ROOM_LEFT"):
    room: str
    members: int


class UserJoined(ServerEvent, tag="USER_JOINED", omit_defaults=False):
    room: str
    user: str
    members: int
    sessions: int = 1  # connections of this user in the room, after the join


class UserLeft(ServerEvent, tag="USER_LEFT", omit_defaults=False):
    room: str
    user: str
    members: int
    sessions: int = 0  # connections of this user still in the room: 0 means gone


class PresenceChange(Struct):
    user: str
    sessions: int  # the user's connections in the room now: 0 means gone


class PresenceEvent(ServerEvent, tag="PRESENCE", omit_defaults=True):
    """Several presence changes of one room at once (a join storm, a mass disconnect), or,
    in a room over PRESENCE_LIST_MAX members, its count alone: one frame per member per
    room per tick (counts only: at most every PRESENCE_INTERVAL) instead of one per change."""

    room: str
    members: int
    changes: list[PresenceChange] | None = None  # None: counts only (a big room)


class TypingEvent(ServerEvent, tag="TYPING"):
    room: str
    user: str


class TypingStoppedEvent(ServerEvent, tag="TYPING_STOPPED"):
    room: str
    user: str


class PostJoined(ServerEvent, tag="POST_JOINED"):
    post_id: int
    viewers: int
    replayed: int = 0
    last_change: int = 0


class PostLeft(ServerEvent, tag="POST_LEFT"):
    post_id: int
    viewers: int


class HistoryPage(ServerEvent, tag="HISTORY", omit_defaults=True):
    has_more: bool
    next: dict[str, int] | None  # null on the last page (sent, as PROTOCOL.md says)
    room: str | None = None
    messages: list[Message] | None = None
    post_id: int | None = None
    comments: list[Comment] | None = None
    request_id: str | None = None


class MembersPage(ServerEvent, tag="MEMBERS", omit_defaults=True):
    room: str
    members: int  # connections in the room, all nodes
    users: list[str]  # distinct names, in name order
    next: str | None = None  # the `after` of the next page; none: this was the last
    request_id: str | None = None


class Authenticated(ServerEvent, tag="AUTHENTICATED"):
    """The answer to AUTH: who this connection is now, and until when."""

    sub: str
    user: str  # the name shown for this connection's messages
    expires_at: str  # RFC 3339: past it, the connection is closed (4001) unless AUTH again


class Pong(ServerEvent, tag="PONG"):
    """The answer to PING."""


class ErrorEvent(ServerEvent, tag="ERROR", omit_defaults=True):
    code: str
    message: str
    # Which of the client's requests this refuses, for a client with several in flight: the
    # refused CHAT_MESSAGE's or POST_COMMENT's own client_id (which pending send it was);
    # for any other event, its request_id (HISTORY, MEMBERS) and the room or post it named
    # (JOIN_*, LEAVE_*, TYPING, HISTORY, MEMBERS); an edit's or deletion's item `id`.
    client_id: str | None = None
    request_id: str | None = None
    room: str | None = None
    post_id: int | None = None
    id: int | None = None  # the item of a refused edit or deletion


class SentId(Struct):
    """The `type`, `client_id`, `request_id` and `id` of a frame the server refused: read again,
    loosely, only on that (rare) path, because a frame that failed validation never became
    an event."""

    type: object = None
    client_id: object = None
    request_id: object = None
    id: object = None


sent_id_decoder: Final = msgspec.json.Decoder(SentId)


AnyServerEvent = (
    MessageEvent
    | CommentEvent
    | RoomJoined
    | RoomLeft
    | UserJoined
    | UserLeft
    | PresenceEvent
    | TypingEvent
    | TypingStoppedEvent
    | PostJoined
    | PostLeft
    | MessageEdited
    | MessageDeleted
    | CommentEdited
    | CommentDeleted
    | HistoryPage
    | MembersPage
    | Authenticated
    | Pong
    | ErrorEvent
)
# For clients written in Python (tests, load generators): decodes anything the server sends.
server_decoder: Final = msgspec.json.Decoder(AnyServerEvent)

encoder: Final = msgspec.json.Encoder()
encode: Final = encoder.encode
