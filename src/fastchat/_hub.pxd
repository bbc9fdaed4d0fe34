# C-level layout of the hub, so other Cython code can cimport it (the picows model:
# .pyx code, .pxd layout and signatures, .pyi Python surface).
from picows.picows cimport WSTransport

# Buckets of Hub._wait_hist: 8 per octave of microseconds, from 1 us to ~2^26 us (~67 s).
cdef enum:
    WAIT_BUCKETS = 210


cdef class Room


cdef class Member:
    cdef:
        readonly bint is_fast               # True: picows socket; False: an external sink
        readonly WSTransport transport      # fast members only
        object _buffer_size                 #   its uvloop transport's get_write_buffer_size
        readonly object sink                # other members: .deliver(list[bytes]), .close(code, reason)
        bytes _shared                       # fast members: the only pending frame, by reference
        char* _buf                          # fast members: pending frames, already framed
        Py_ssize_t _size                    #   (used once a second frame is queued)
        Py_ssize_t _capacity
        list _pending                       # sink members: pending payloads
        readonly dict rooms                 # room key -> Room
        bint _dirty
        readonly bint slow                  # over the high-water mark: dropped at next flush
        readonly bint closed
        readonly bint closing               # close() was called: nothing more is queued
        public object state                 # per-connection session state, owned by the service
        # A frame arrived since the last keepalive sweep (the listener sets it, the sweep
        # reads and clears it): a C field, so a frame touches no other object to say so.
        public bint seen
        # The room a chat message of this member last named, as it named it (no "r:"), and
        # its Room while the member is in it (Hub.leave forgets it): lane.Lane's and
        # lane.Publisher's membership check, without a dict lookup by a new string.
        str _said_name
        Room _said_room

    cdef int _append(self, const char* data, Py_ssize_t n) except -1
    cdef int _queue(self, bytes frame) except -1
    cdef Py_ssize_t _queued(self) noexcept
    cdef const char* _data(self) noexcept
    cdef void _clear(self) noexcept
    cdef void _release(self) noexcept
    cdef Room said(self, str name)


cdef class Room:
    cdef:
        readonly str key
        readonly str name                   # the key without its "r:" (what clients say)
        dict _members                       # Member -> None, insertion-ordered


cdef class Hub:
    cdef:
        object _loop
        object _flush_handle
        dict _rooms
        dict _all                           # every attached member -> None
        list _dirty                         # members with frames to write, in order
        Py_ssize_t _dirty_at                # the next of them to write
        readonly Py_ssize_t high_water
        readonly Py_ssize_t max_pending
        public object on_slow               # callback(member) when a slow consumer is dropped
        readonly unsigned long long deliveries
        readonly unsigned long long publishes
        readonly unsigned long long writes
        readonly unsigned long long slow_drops
        readonly unsigned long long write_failures  # members whose write raised (then closed)
        readonly Py_ssize_t fast_members
        readonly Py_ssize_t sink_members
        # Flush timing (CLOCK_MONOTONIC ns; three clock reads per flush, none per member).
        # A flush's wait: from the first frame queued for it (publish/send) to its end.
        long long _queued_ns                # when the pending flush was scheduled, 0: none
        readonly unsigned long long flushes # flushes that had dirty members
        readonly long long flush_ns_sum     # time inside flush(), summed
        readonly long long flush_ns_max
        readonly long long wait_ns_sum      # waits, summed (one per flush: its oldest frame)
        readonly long long wait_ns_max
        unsigned long long _wait_hist[WAIT_BUCKETS]

    cpdef Member attach_transport(self, WSTransport transport)
    cpdef Member attach_sink(self, object sink)
    cpdef list detach(self, Member member)
    cpdef int join(self, Member member, str key) except -1
    cpdef int leave(self, Member member, str key) except -1
    cpdef int count(self, str key)
    cpdef list members(self, str key)
    cpdef list connections(self)
    cpdef int publish(self, str key, bytes payload, Member exclude=*) except -1
    cdef int publish_to(self, Room room, bytes payload, Member exclude) except -1
    cpdef int send(self, Member member, bytes payload) except -1
    cpdef flush(self)
    cdef _flush_upto(self, Py_ssize_t limit)
    cdef void _drained(self) noexcept
    cdef int _flush(self, list dirty, Py_ssize_t* at, Py_ssize_t end) except -1
    cdef _failed(self, Member m, exc)
    cdef void _timed(self, long long queued_ns, long long start_ns) noexcept
    cpdef close(self, Member member, int code, str reason)
    cpdef drop_slow(self, Member member)
    cdef int _mark_dirty(self, Member member) except -1
    cdef _drop_slow(self, Member m)
