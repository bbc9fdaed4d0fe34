"""A chat message's way in, in C: from the listener's text to the store's queue.

Nearly every frame a chat client sends is a CHAT_MESSAGE to a room it is in. In Python
(`Chat.handle`), one cost five Python calls and about 1.1 us of CPU before its write was
queued: the rate limit, parsing, the checks of its names and text (`str.isprintable` on each
name, ~30 ns a call), the room, the `Write`. Here the same steps are C, with the names and
text of ASCII checked in one pass over their bytes; msgspec decodes, as before.

What is not a plain chat message (another event, a frame that does not decode, a name or
text the checks refuse, a room it has not joined, tokens switched on) goes to the service's
Python as it is (`Chat.handle`, `Chat.handle_event`), which answers it as it always did,
ERROR included: the rules are written once, there, and this is their shortcut for the case
that passes them all (protocol._plain_message's rules, the same in C).
"""

from cpython.unicode cimport PyUnicode_FindChar
from libc.string cimport memchr

from fastchat._hub cimport Hub, Member, Room

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const unsigned char* PyUnicode_1BYTE_DATA(object o)


cdef inline bint _printable_name(str s, Py_ssize_t limit, bint slash) except -1:
    """protocol._plain_message's rule for a name: 1..limit characters, printable, not all
    spaces, and (`slash` False) no "/"."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char* p
    cdef unsigned char c
    cdef bint blank = True
    if n == 0 or n > limit:
        return False
    if not PyUnicode_IS_ASCII(s):
        return s.isprintable() and not s.isspace() and (slash or "/" not in s)
    p = PyUnicode_1BYTE_DATA(s)
    for i in range(n):
        c = p[i]
        # ASCII's printable characters are 0x20-0x7e; of them only the space is a space.
        if c < 0x20 or c == 0x7f or (c == 0x2f and not slash):
            return False
        if c != 0x20:
            blank = False
    return not blank


cdef inline bint _text(str s, Py_ssize_t limit) except -1:
    """protocol._plain_message's rule for a text: 1..limit characters, no NUL, not all
    whitespace."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char* p
    cdef unsigned char c
    if n == 0 or n > limit:
        return False
    if not PyUnicode_IS_ASCII(s):
        return PyUnicode_FindChar(s, 0, 0, n, 1) == -1 and not s.isspace()
    p = PyUnicode_1BYTE_DATA(s)
    if memchr(p, 0, <size_t>n) != NULL:
        return False
    for i in range(n):
        c = p[i]
        # str.isspace in ASCII: \t \n \v \f \r, 0x1c-0x1f and the space. Nearly every
        # text has something else in its first characters.
        if not (0x09 <= c <= 0x0d or 0x1c <= c <= 0x20):
            return True
    return False


cpdef bint plain_message(object msg, Py_ssize_t name_max, Py_ssize_t max_chars) except -1:
    """True if a decoded SendMessage passes every check of protocol._validate (the same
    rules as protocol._plain_message, which the tests hold this to)."""
    cdef object client_id = msg.client_id
    return (
        _printable_name(msg.room, name_max, False)
        and _printable_name(msg.user, name_max, True)
        and (client_id is None or client_id.isprintable())
        and _text(msg.message, max_chars)
    )


cdef class Lane:
    """`receive` for the service (service.Chat wires it): the chat message's fast way."""

    cdef:
        object _decode          # events.client_decoder.decode
        object _send_message    # events.SendMessage
        object _write           # store.Write
        object _submit          # the store's submit
        object _admit           # Chat.admit: the rate limits (only when they are on)
        object _handle          # Chat.handle(member, data)
        object _handle_event    # Chat.handle_event(member, event, data)
        int _op                 # store.OP_MESSAGE
        bint _limited           # a rate limit is on
        bint _open              # no tokens (auth off): the sender's names are not checked
        Py_ssize_t _max_frame, _name_max, _max_chars
        public unsigned long long messages_in  # chat messages queued for the store

    def __init__(self, chat, decode, send_message, write, int op, limits, int name_max):
        # From the service (`chat`): its store's queue, and its Python for the rest.
        self._decode = decode
        self._send_message = send_message
        self._write = write
        self._submit = chat.store.submit
        self._admit = chat.admit
        self._handle = chat.handle
        self._handle_event = chat.handle_event
        self._op = op
        self._limited = limits.rate > 0
        self._open = not chat.auth.enabled
        self._max_frame = limits.max_frame_bytes
        self._name_max = name_max
        self._max_chars = limits.max_message_chars
        self.messages_in = 0

    def receive(self, Member member, data):
        """One text frame (str from the sockets, bytes from sinks) from a client."""
        if self._limited and not self._admit(member):
            return
        cdef Py_ssize_t size = len(data)
        if type(data) is str and size * 4 > self._max_frame:
            size = len((<str>data).encode("utf-8", "surrogatepass"))
        if size > self._max_frame:
            self._handle(member, data)  # TOO_LARGE
            return
        try:
            event = self._decode(data)
        except Exception:  # invalid JSON or fields: parsed again there, for its ERROR
            self._handle(member, data)
            return
        if (
            type(event) is not self._send_message
            or not self._open
            or not plain_message(event, self._name_max, self._max_chars)
        ):
            self._handle_event(member, event, data)
            return
        if member.said(event.room) is None:
            self._handle_event(member, event, data)  # NOT_JOINED
            return
        self.messages_in += 1
        # The room's name as the hub's Room has it (Member.said); no tokens (`_open`), so
        # no identity: the message has no `sub`.
        self._submit(
            self._write(
                self._op, member._said_name, event.user, event.message, event.client_id, member
            )
        )


cdef class Publisher:
    """A committed run of chat messages to their rooms, in C: `delivery.Delivery.on_committed`
    hands each batch's plain messages here (single process, each from a socket's sender,
    stored anew), and does everything else itself. For each: its event encoded once, its
    room's version bumped (the REST page cache's), the hub's broadcast, the room's recent
    events (resumes), and the sender's own copy if it has left the room since it sent."""

    cdef:
        Hub _hub                # None: another kind of hub (a test's fake), `run` takes none
        dict _versions          # Delivery.versions
        dict _recent            # Delivery._recent
        object _encode          # msgspec's JSON encode
        object _event           # events.MessageEvent
        object _format_ms       # timeparse.format_ms
        int _op                 # store.OP_MESSAGE
        object _ts              # the last row's ts, and its text: a batch shares one
        object _ts_text
        # The highest message id handed to the hub (Delivery.mark): ids rise in commit
        # order, so "stored with id <= this" is "already broadcast".
        public long long published

    def __init__(self, hub, dict versions, dict recent, encode, event, format_ms, int op):
        self._hub = hub if isinstance(hub, Hub) else None
        self._versions = versions
        self._recent = recent
        self._encode = encode
        self._event = event
        self._format_ms = format_ms
        self._op = op
        self._ts = None
        self._ts_text = None
        self.published = 0

    cpdef Py_ssize_t run(self, list results, Py_ssize_t i) except -1:
        """Publish results[i:] while they are plain chat messages; the index of the first
        that is not (len(results): all were)."""
        cdef Py_ssize_t n = len(results)
        cdef tuple item, row
        cdef long long item_id
        cdef str key
        cdef Member member
        cdef Room room
        cdef bint joined
        cdef object payload, ts, count, recent
        if self._hub is None:
            return i
        while i < n:
            item = <tuple>results[i]
            if type(item[1]) is not tuple or item[2] is not False:
                break  # refused (StoreError), or a retry of one stored (duplicate)
            write = item[0]
            if write.op != self._op:
                break
            if write.member is None:
                break  # from REST: its future gets the answer
            member = <Member>write.member
            row = <tuple>item[1]
            item_id = row[0]
            if item_id <= self.published:
                break  # ids went back (an older copy restored): Delivery clears `recent`
            ts = row[4]
            if ts != self._ts:
                self._ts_text = self._format_ms(ts)
                self._ts = ts
            payload = self._encode(
                self._event(row[0], row[1], row[2], row[3], self._ts_text, row[5])
            )
            room = member._said_room
            if room is not None and row[1] is member._said_name:
                # The room its sender named last (the lane stored it under that Room's
                # name), and is still in (Member.said): its Room, and its key.
                key = room.key
                joined = True
            else:
                key = "r:" + <str>row[1]
                room = self._hub._rooms.get(key)
                joined = key in member.rooms
            count = self._versions.get(key)
            self._versions[key] = 1 if count is None else count + 1
            self.published = item_id
            if room is not None:
                self._hub.publish_to(room, payload, None)
            recent = self._recent.get(key)
            if recent is not None:
                recent.add(item_id, payload)
            if not joined:  # left since: the broadcast missed it
                self._hub.send(member, payload)
            i += 1
        return i
