"""The broadcast hub: rooms, members, and coalesced fan-out.

The hot path is syscalls, not Python (DESIGN.md): one picows `send()` per frame per socket
costs about 4.5 us wall, almost all of it `send(2)`; the same frames coalesced into one write
per socket per loop tick cost about 0.5 us per frame. So the hub:

* frames each published payload once per room (server frames are unmasked, so every member
  gets the same bytes);
* queues those bytes for each member by reference while they are its only pending frame (a
  lone message, the paced case: no copy per member, and the kernel copies from one hot
  frame), and copies into the member's own buffer once a second frame joins it;
* flushes every dirty socket once per loop iteration, one write for all its pending frames:
  `send(2)` straight on the socket when the transport holds nothing back; a big room's
  flush in runs of FLUSH_CHUNK sockets, one per iteration, so that a message that arrives
  meanwhile is read, committed and written with the rest of the same run, not after it.

Policy (who may join, limits, validation) stays in Python; only this bookkeeping is here.
All methods run on the event loop thread.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.stdint cimport uint8_t
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from picows.picows cimport MemoryBuffer, WSCloseCode, WSTransport
from cpython.list cimport PyList_GET_ITEM
from cpython.ref cimport PyObject

cdef extern from *:
    """
    #define FC_PREFETCH(p) __builtin_prefetch((const void *)(p))
    """
    void FC_PREFETCH(const void* p) noexcept nogil

cdef extern from "<sys/socket.h>" nogil:
    Py_ssize_t send(int sockfd, const void* buf, size_t n, int flags)
    int MSG_NOSIGNAL

# A fast member keeps at most this much buffer capacity between flushes; a burst may grow it,
# and it is given back after the flush so idle connections stay small.
cdef Py_ssize_t _KEEP_CAPACITY = 16 * 1024
# Sockets a scheduled flush writes before the loop reads again. A write to a socket costs
# about 4.5 us of kernel time (loopback), so a room of 1,000's flush is 4.5 ms in one
# callback, in which the loop reads nothing. In runs of FLUSH_CHUNK the loop reads, commits
# and queues between two, and the members not written yet get the new frames in the same
# write. Measured (issue 14, 3 interleaved runs each, against one run per flush): fan-out
# 1.21x the deliveries per server CPU-s (21 frames a write, 16 before), unpipelined and
# pipelined ingest even, paced p99 even. Runs of 256: fan-out 1.31x, unpipelined 0.95x;
# of 128: fan-out 1.4x, unpipelined 0.95x and pipelined 0.92x (a round there is 100-200
# sockets, and the reads between its runs made each commit smaller).
FLUSH_CHUNK = 512
cdef Py_ssize_t _FLUSH_CHUNK = FLUSH_CHUNK
CLOSE_GRACE_SECONDS = 1.0


cdef inline long long _now_ns() noexcept nogil:
    """CLOCK_MONOTONIC in ns: the clock of Python's time.monotonic_ns() (a vDSO call, ~20 ns)."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int _wait_bucket(long long ns) noexcept nogil:
    """Histogram bucket of a wait: 8 per octave from 1 us (bounds 6-12 % apart), bucket 0
    below 1 us, the last one everything from ~2^(WAIT_BUCKETS/8 - 1) us up. Counted in
    eighths of a microsecond, so every wait is below its bucket's upper bound exactly."""
    cdef long long u = ns // 125
    if u < 8:
        return 0
    cdef int e = 0
    while (u >> (e + 4)) != 0:
        e += 1
    # u is in [8 * 2^e, 16 * 2^e): the 3 bits below the top one pick the eighth of the octave.
    cdef int b = 1 + e * 8 + <int>((u >> e) & 7)
    return b if b < WAIT_BUCKETS else WAIT_BUCKETS - 1


def wait_bucket(long long ns):
    """The histogram bucket of a wait of `ns` nanoseconds (what a flush records)."""
    return _wait_bucket(ns)


def wait_bucket_upper_ns(b):
    """Upper bound (exclusive) in ns of histogram bucket `b` (see Hub.wait_histogram); the
    last bucket also holds everything above its bound."""
    if b <= 0:
        return 1000
    e, sub = divmod(b - 1, 8)
    return ((9 + sub) << e) * 125


cdef inline bytes _frame(bytes payload):
    """One unmasked FIN+TEXT frame holding `payload`."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
    cdef Py_ssize_t h
    if n < 126:
        h = 2
    elif n < 65536:
        h = 4
    else:
        h = 10
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, h + n)
    cdef uint8_t* p = <uint8_t*>PyBytes_AS_STRING(frame)
    cdef int i
    p[0] = 0x81
    if h == 2:
        p[1] = <uint8_t>n
    elif h == 4:
        p[1] = 126
        p[2] = <uint8_t>(n >> 8)
        p[3] = <uint8_t>(n & 0xFF)
    else:
        p[1] = 127
        for i in range(8):
            p[2 + i] = <uint8_t>((<unsigned long long>n >> (8 * (7 - i))) & 0xFF)
    memcpy(p + h, PyBytes_AS_STRING(payload), n)
    return frame


cdef inline int _write(WSTransport t, const char* p, Py_ssize_t n, Py_ssize_t held) except -1:
    """Write `n` bytes to a member. `held`: what its transport already buffers. When that
    is nothing, one `send(2)` straight on the socket (picows' `_fast_write` would ask uvloop
    for the buffer size a second time); whatever the kernel does not take, and everything
    when the transport holds bytes, goes through picows, which queues it behind them."""
    cdef Py_ssize_t sent
    if held == 0 and not t.is_secure:
        sent = send(t._socket, p, <size_t>n, MSG_NOSIGNAL)
        if sent == n:
            return 0
        if sent > 0:
            p += sent
            n -= sent
    t._fast_write(<char*>p, n)
    return 0


cdef inline void _prefetch(PyObject* o) noexcept nogil:
    FC_PREFETCH(o)
    FC_PREFETCH(<char*>o + 64)
    FC_PREFETCH(<char*>o + 128)


cdef inline void _ahead(list dirty, Py_ssize_t i) noexcept:
    """Fetch the next members' objects into the cache while the kernel takes this one's
    write: a member 3 ahead; the transport and buffer-size method of the one 2 ahead (its
    member fetched an iteration ago); the uvloop transport of the one after this.

    In a big room's flush every member's objects are cold (the sends between two of one
    member's writes go through the kernel's socket structures), and the loop otherwise
    stalls on each in turn. Measured (issue 14, paced: 1,000 members, 100 messages a
    second; 10 interleaved pairs against the loop without it): the server's user CPU a
    delivery 0.98 us against 1.07 (medians), lower in 8 of 10 pairs; the kernel's share
    of a delivery (5.3-6.8 us on that host) unchanged."""
    cdef PyObject* m
    _prefetch(PyList_GET_ITEM(dirty, i + 3))
    m = PyList_GET_ITEM(dirty, i + 2)
    if (<Member>m).is_fast:
        _prefetch(<PyObject*>(<Member>m).transport)
        _prefetch(<PyObject*>(<Member>m)._buffer_size)
    m = PyList_GET_ITEM(dirty, i + 1)
    if (<Member>m).is_fast and (<Member>m).transport is not None:
        _prefetch(<PyObject*>(<Member>m).transport.underlying_transport)


def frame_text(bytes payload):
    """The wire frame the hub sends for `payload` (exposed for tests and benchmarks)."""
    return _frame(payload)


cdef class Member:
    """One WebSocket connection, on either port."""

    def __cinit__(self):
        self._shared = None
        self._buf = NULL
        self._size = 0
        self._capacity = 0
        self.rooms = {}
        self._pending = []

    def __dealloc__(self):
        self._release()

    cdef Room said(self, str name):
        """The Room of chat room `name` (as a client names it) if this member is in it,
        else None. Chat messages come to the room they came to last, so that one is kept:
        a string compare instead of a new key, its hash and a lookup in `rooms`. Then
        `_said_name` is the Room's own `name`, one string for every member of the room:
        what the lane stores the message under, so that every dict it goes through
        afterwards (the store's unfiled rows by room, the publisher's) finds it by
        identity, its hash computed once."""
        cdef Room room
        if self._said_name is not None and name == self._said_name:  # identity first
            return self._said_room
        room = self.rooms.get("r:" + name)
        if room is not None:
            self._said_name = room.name
            self._said_room = room
        return room

    cdef void _release(self) noexcept:
        self._shared = None
        if self._buf != NULL:
            PyMem_Free(self._buf)
            self._buf = NULL
        self._size = 0
        self._capacity = 0

    cdef int _append(self, const char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t need = self._size + n
        cdef Py_ssize_t cap
        cdef char* grown
        if need > self._capacity:
            cap = self._capacity * 2 if self._capacity else 512
            while cap < need:
                cap *= 2
            grown = <char*>PyMem_Realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError("hub: cannot grow a member's outbound buffer")
            self._buf = grown
            self._capacity = cap
        memcpy(self._buf + self._size, data, n)
        self._size = need
        return 0

    cdef int _queue(self, bytes frame) except -1:
        """Queue one frame. While it is the only one it is held by reference (a room's
        frame is shared by all its members); a second one copies both into the buffer."""
        if self._shared is None and self._size == 0:
            self._shared = frame
            return 0
        if self._shared is not None:
            self._append(PyBytes_AS_STRING(self._shared), PyBytes_GET_SIZE(self._shared))
            self._shared = None
        return self._append(PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame))

    cdef Py_ssize_t _queued(self) noexcept:
        """Bytes queued in the hub (fast members)."""
        if self._shared is not None:
            return PyBytes_GET_SIZE(self._shared)
        return self._size

    cdef const char* _data(self) noexcept:
        """Where those bytes start: the shared frame, or the member's own buffer."""
        if self._shared is not None:
            return PyBytes_AS_STRING(self._shared)
        return self._buf

    cdef void _clear(self) noexcept:
        self._shared = None
        self._size = 0

    @property
    def buffered(self):
        """Bytes waiting in the hub for this member (not counting the transport's own buffer)."""
        if self.is_fast:
            return self._queued()
        return sum(len(p) for p in self._pending)

    @property
    def backlog(self):
        """Bytes queued for this client anywhere on our side: hub buffer plus transport
        (or sink) buffer. Used to pace long replays."""
        if self.is_fast:
            if self.transport.is_disconnected:
                return 0
            return self._queued() + self.transport.underlying_transport.get_write_buffer_size()
        return sum(len(p) for p in self._pending) + getattr(self.sink, "backlog", 0)


cdef class Room:
    def __cinit__(self, str key):
        self.key = key
        self.name = key[2:] if key[1:2] == ":" else key
        self._members = {}


cdef class Hub:
    """Rooms keyed by string; members from both ports share them."""

    def __cinit__(self, loop, Py_ssize_t high_water=1024 * 1024, Py_ssize_t max_pending=4096):
        self._loop = loop
        self._flush_handle = None
        self._rooms = {}
        self._all = {}
        self._dirty = []
        self._dirty_at = 0
        self.high_water = high_water
        self.max_pending = max_pending
        self.on_slow = None
        self._queued_ns = 0

    # ---------------------------------------------------------------- membership

    cpdef Member attach_transport(self, WSTransport transport):
        # Per idle connection, picows keeps the parsed handshake (~1.5 kB) and a 1 kB write
        # buffer that only its own send() uses; we write with send(2) or _fast_write. Free
        # both: the buffer grows back on demand (resize() reallocs from NULL). Issue 7:
        # < 6 kB/conn.
        transport.request = None
        transport.response = None
        cdef MemoryBuffer wb = transport._write_buffer
        if wb is not None and wb.data != NULL and wb.size == 0:
            PyMem_Free(wb.data)
            wb.data = NULL
            wb.capacity = 0
        cdef Member m = Member.__new__(Member)
        m.is_fast = True
        m.transport = transport
        # Bound once: a flush asks it of every socket it writes (a method looked up and
        # bound per call cost an allocation each).
        m._buffer_size = transport.underlying_transport.get_write_buffer_size
        self._all[m] = None
        self.fast_members += 1
        return m

    cpdef Member attach_sink(self, object sink):
        cdef Member m = Member.__new__(Member)
        m.is_fast = False
        m.sink = sink
        self._all[m] = None
        self.sink_members += 1
        return m

    cpdef list detach(self, Member member):
        """Forget a connection; returns the keys of the rooms it was in."""
        cdef list left = list(member.rooms)
        cdef str key
        for key in left:
            self.leave(member, key)
        self._all.pop(member, None)
        if not member.closed:
            member.closed = True
            if member.is_fast:
                self.fast_members -= 1
            else:
                self.sink_members -= 1
        member._release()
        member._pending = []
        member._buffer_size = None
        return left

    cpdef int join(self, Member member, str key) except -1:
        """Add `member` to room `key` (idempotent); returns the room's member count."""
        cdef Room room = self._rooms.get(key)
        if room is None:
            room = Room(key)
            self._rooms[key] = room
        room._members[member] = None
        member.rooms[key] = room
        return len(room._members)

    cpdef int leave(self, Member member, str key) except -1:
        """Remove `member` from room `key`; returns the count left. Empty rooms are dropped."""
        cdef Room room = member.rooms.pop(key, None)
        if room is None:
            room = self._rooms.get(key)
            return len(room._members) if room is not None else 0
        room._members.pop(member, None)
        if member._said_room is room:
            member._said_name = None
            member._said_room = None
        cdef Py_ssize_t n = len(room._members)
        if n == 0:
            del self._rooms[key]
        return n

    cpdef int count(self, str key):
        cdef Room room = self._rooms.get(key)
        return len(room._members) if room is not None else 0

    cpdef list members(self, str key):
        cdef Room room = self._rooms.get(key)
        return list(room._members) if room is not None else []

    cpdef list connections(self):
        """Every attached member, in attach order."""
        return list(self._all)

    @property
    def connection_count(self):
        """How many members are attached (closing ones included, until detached)."""
        return len(self._all)

    @property
    def room_count(self):
        return len(self._rooms)

    def room_keys(self):
        return list(self._rooms)

    @property
    def membership_count(self):
        cdef Room room
        cdef Py_ssize_t total = 0
        for room in self._rooms.values():
            total += len(room._members)
        return total

    # ---------------------------------------------------------------- fan-out

    cdef int _mark_dirty(self, Member member) except -1:
        if not member._dirty:
            member._dirty = True
            self._dirty.append(member)
            if self._flush_handle is None:
                # The oldest frame of the coming flush is queued now: one clock read per flush.
                self._queued_ns = _now_ns()
                self._flush_handle = self._loop.call_soon(self._flush_due)
        return 0

    cpdef int publish(self, str key, bytes payload, Member exclude=None) except -1:
        """Queue `payload` for every member of room `key` but `exclude`; returns how many it
        was queued for."""
        cdef Room room = self._rooms.get(key)
        if room is None:
            return 0
        return self.publish_to(room, payload, exclude)

    cdef int publish_to(self, Room room, bytes payload, Member exclude) except -1:
        """`publish` to a room found already (lane.Publisher)."""
        cdef bytes frame = None
        cdef Py_ssize_t fn = 0
        cdef Py_ssize_t queued = 0
        cdef Member m
        self.publishes += 1
        for m in room._members:
            if m.slow or m.closed or m.closing or m is exclude:
                continue
            if m.is_fast:
                if frame is None:
                    frame = _frame(payload)
                    fn = PyBytes_GET_SIZE(frame)
                if m._queued() + fn > self.high_water:
                    # It cannot keep up: skip it now, drop it at the flush (it resumes from
                    # its last id when it reconnects, so nothing is lost to it).
                    m.slow = True
                    self._mark_dirty(m)
                    continue
                m._queue(frame)
            else:
                if len(m._pending) >= self.max_pending:
                    m.slow = True
                    self._mark_dirty(m)
                    continue
                m._pending.append(payload)
            self._mark_dirty(m)
            queued += 1
        self.deliveries += queued
        return queued

    cpdef int send(self, Member member, bytes payload) except -1:
        """Queue `payload` for one member, in order with its room traffic. Replies count
        against the outbound budget as room traffic does: a client that provokes ERRORs and
        never reads them is dropped as slow, not buffered without end."""
        cdef bytes frame
        if member.closed or member.slow or member.closing:
            return 0
        if member.is_fast:
            frame = _frame(payload)
            if member._queued() + PyBytes_GET_SIZE(frame) > self.high_water:
                member.slow = True
                self._mark_dirty(member)
                return 0
            member._queue(frame)
        else:
            member._pending.append(payload)
        self._mark_dirty(member)
        return 1

    def _flush_due(self):
        """The scheduled flush: FLUSH_CHUNK dirty members at most; the rest in the next loop
        iteration, after the loop has read what arrived (members dirtied meanwhile join the
        end of the queue; those still in it get the new frames in the same write)."""
        self._flush_handle = None
        self._flush_upto(self._dirty_at + _FLUSH_CHUNK)

    cpdef flush(self):
        """Write every dirty member's pending frames now: one write per socket."""
        self._flush_upto(PY_SSIZE_T_MAX)

    cdef _flush_upto(self, Py_ssize_t limit):
        """Write the dirty members from the queue's head up to index `limit`.

        Exception-safe: a member whose write (or slow-consumer drop) raises is reported and
        closed, and the flush goes on with the members after it. Only one `try` per flush
        on the way through; a failure resumes the loop at the next member."""
        cdef list dirty = self._dirty
        cdef Py_ssize_t at = self._dirty_at
        cdef Py_ssize_t n = len(dirty)
        if limit < n:
            n = limit
        if at >= n:  # nothing due (`limit` is always past the head)
            self._drained()
            return
        cdef long long queued_ns = self._queued_ns
        cdef long long start_ns = _now_ns()
        try:
            while at < n:
                try:
                    self._flush(dirty, &at, n)
                except Exception as exc:
                    self._failed(<Member>dirty[at], exc)
                    at += 1
        finally:
            # Past a failure no `except Exception` catches (KeyboardInterrupt, SystemExit),
            # the member that raised is skipped; whoever was not reached stays due.
            self._dirty_at = at + 1 if at < n else at
            if self._dirty_at >= len(dirty):
                self._drained()
            elif self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush_due)
            self._timed(queued_ns, start_ns)

    cdef void _drained(self) noexcept:
        """Every dirty member written: the queue starts again, and so does its clock."""
        self._dirty = []
        self._dirty_at = 0
        self._queued_ns = 0

    cdef _failed(self, Member m, exc):
        """A member's write raised: it has lost frames, so it is closed (1011; 1008 if it was
        being dropped as slow), to resume from its last id on reconnecting, like a slow
        consumer. The exception goes to the loop's exception handler (logged) and counts in
        `write_failures`; it never stops the flush of the others."""
        self.write_failures += 1
        self._loop.call_exception_handler(
            {"message": "hub: writing to a member failed; closing it", "exception": exc}
        )
        m._clear()
        m._pending = []
        try:
            if m.slow:
                self.close(m, WSCloseCode.POLICY_VIOLATION, "slow consumer: outbound buffer over limit")
            else:
                self.close(m, WSCloseCode.INTERNAL_ERROR, "delivery failed; resume from your last id")
        except Exception as again:
            self._loop.call_exception_handler(
                {"message": "hub: closing a member whose write failed failed too", "exception": again}
            )

    cdef void _timed(self, long long queued_ns, long long start_ns) noexcept:
        """Flush timing: two clock reads per flush (start, end) plus the one at queue time.
        `queued_ns` is 0 when the flush was called directly with nothing scheduled."""
        cdef long long end_ns = _now_ns()
        cdef long long took = end_ns - start_ns
        cdef long long waited = end_ns - queued_ns if queued_ns else took
        self.flushes += 1
        self.flush_ns_sum += took
        if took > self.flush_ns_max:
            self.flush_ns_max = took
        self.wait_ns_sum += waited
        if waited > self.wait_ns_max:
            self.wait_ns_max = waited
        self._wait_hist[_wait_bucket(waited)] += 1

    @property
    def wait_histogram(self):
        """The waits (oldest frame queued -> end of the flush that wrote it), one count per
        flush, as [[upper bound ns, count], ...] for the non-empty buckets, ascending."""
        cdef int b
        return [
            [wait_bucket_upper_ns(b), self._wait_hist[b]]
            for b in range(WAIT_BUCKETS)
            if self._wait_hist[b]
        ]

    cdef int _flush(self, list dirty, Py_ssize_t* at, Py_ssize_t end) except -1:
        """Flush `dirty` from index `at[0]` up to `end`, keeping `at[0]` on the member being
        written, so that when one raises the caller knows which, and carries on after it."""
        cdef Member m
        cdef list pending
        cdef WSTransport t
        cdef Py_ssize_t n, held
        cdef Py_ssize_t i = at[0]
        while i < end:
            at[0] = i
            if i + 3 < end:
                _ahead(dirty, i)
            m = <Member>dirty[i]
            i += 1
            m._dirty = False
            if m.closed:
                continue
            if m.slow:
                self._drop_slow(m)
                continue
            if m.is_fast:
                n = m._queued()
                if n == 0:
                    continue
                t = m.transport
                if t.is_disconnected or t.is_close_frame_sent:
                    m._clear()
                    continue
                held = <Py_ssize_t>m._buffer_size()
                if held > self.high_water:
                    m.slow = True
                    self._drop_slow(m)
                    continue
                _write(t, m._data(), n, held)
                self.writes += 1
                m._clear()
                if m._capacity > _KEEP_CAPACITY:
                    m._release()
            else:
                if not m._pending:
                    continue
                pending = m._pending
                m._pending = []
                self.writes += 1
                m.sink.deliver(pending)
        at[0] = end
        return 0

    cpdef drop_slow(self, Member member):
        """Drop a member whose outbound budget went on frames written outside the hub's
        queue (pongs, fastport.py): the same count, log and close as a slow consumer."""
        if member.closed or member.closing:
            return
        member.slow = True
        self._drop_slow(member)

    cdef _drop_slow(self, Member m):
        self.slow_drops += 1
        m._clear()
        m._pending = []
        if self.on_slow is not None:
            self.on_slow(m)
        self.close(m, WSCloseCode.POLICY_VIOLATION, "slow consumer: outbound buffer over limit")

    cpdef close(self, Member member, int code, str reason):
        """Send what is pending, then a close frame, then disconnect."""
        if member.closed or member.closing:
            return
        member.closing = True
        cdef WSTransport t
        cdef bytes why = reason.encode()[:123]
        if member.is_fast:
            t = member.transport
            if member._queued() and not member.slow and not (t.is_disconnected or t.is_close_frame_sent):
                t._fast_write(<char*>member._data(), member._queued())
            member._clear()
            t.send_close(<WSCloseCode>code, why)
            # Let the client answer with its own close frame (a clean closing handshake, and
            # no RST eating our close frame while it is still sending); drop it if it won't.
            # Dropped means aborted: a graceful close waits for the write buffer to drain,
            # which a client that never reads never lets happen, so it kept its buffer and
            # its descriptor, and went on sending frames we read and threw away.
            self._loop.call_later(CLOSE_GRACE_SECONDS, (<object>t).disconnect, False)
        else:
            if member._pending and not member.slow:
                pending = member._pending
                member._pending = []
                member.sink.deliver(pending)
            member.sink.close(code, reason)
