# cython: language_level=3, boundscheck=False, wraparound=False
"""The paced scenario's timed receiver, in C: picows calls `on_ws_frame` through its vtable,
so a chat frame costs no Python call, no bytes copy and no decode. One process reads all
999 members of the room (~100k frames/s); a receiver in Python falls 1.4-2 ms behind the
server's writes, which then counts as latency (bench/RESULTS.md). Built by `make bench`
(`cythonize -i bench/_recv.pyx`); `python -m bench.loadgen paced --receiver python` runs
the Python one instead.

The frame is the server's CHAT_MESSAGE event around the text the generator wrote
(`loadgen.chat_payload`: "<seq> <send ns> <padding>"): the id right after the prefix, the
send time after `"message":"` and the sequence number. Any other layout raises, which picows
turns into a disconnection, counted as a failure of the run.
"""

from libc.string cimport memcmp
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec
from cpython.bytes cimport PyBytes_FromStringAndSize
from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport

cdef bytes _PREFIX = b'{"type":"CHAT_MESSAGE","id":'
cdef bytes _KEY = b'"message":"'


cdef inline long long _now() noexcept nogil:
    """CLOCK_MONOTONIC in ns: the clock of time.monotonic_ns(), which stamps the sends."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class CTimed(WSListener):
    """Counts chat frames (`n`), checks their ids rise (`disorder`), records the latency of
    each from the pacer's `seq_from`-th on (`timed` of them) into `lat`, an array('q') given
    by `bind` (appended to past its capacity). Other frames (`frames`) go to the Python
    `other(payload)` of the subclass."""

    cdef public long long n
    cdef public long long timed
    cdef public long long seq_from
    cdef public long long last_id
    cdef public long long disorder
    cdef public long long frames
    cdef long long[::1] _lat
    cdef Py_ssize_t _cap
    cdef public object lat

    def bind(self, lat, long long seq_from=0):
        """Record into `lat` the latencies of the pacer's messages from number `seq_from` on
        (earlier ones, the warm-up, are counted in `n` and checked for order, not timed)."""
        self.lat = lat
        self._lat = lat
        self._cap = len(lat)
        self.timed = 0
        self.seq_from = seq_from

    def unbind(self):
        """The latencies recorded, as a new array (the bound one cannot be resized)."""
        self._lat = None
        self._cap = 0
        self.lat = self.lat[: self.timed]
        return self.lat

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef long long now = _now()
        if frame.msg_type != WSMsgType.TEXT:
            self.frames += 1
            return
        cdef const char* p = frame.payload_ptr
        cdef Py_ssize_t size = frame.payload_size
        cdef Py_ssize_t pl = len(_PREFIX), kl = len(_KEY)
        cdef Py_ssize_t i
        cdef long long id_ = 0, sent = 0, seq = 0
        if size <= pl or memcmp(p, <const char*>_PREFIX, pl) != 0:
            self.frames += 1
            self.other(PyBytes_FromStringAndSize(p, size))
            return
        i = pl
        while i < size and 48 <= p[i] <= 57:
            id_ = id_ * 10 + (p[i] - 48)
            i += 1
        if i == pl or i >= size or p[i] != 44:  # digits, then ","
            raise ValueError("a CHAT_MESSAGE without an id")
        while i + kl <= size and memcmp(p + i, <const char*>_KEY, kl) != 0:
            i += 1
        i += kl
        while i < size and 48 <= p[i] <= 57:  # the sequence number
            seq = seq * 10 + (p[i] - 48)
            i += 1
        if i >= size or p[i] != 32:
            raise ValueError("a CHAT_MESSAGE without a sequence number")
        i += 1
        if i >= size or not (48 <= p[i] <= 57):
            raise ValueError("a CHAT_MESSAGE without a send time")
        while i < size and 48 <= p[i] <= 57:
            sent = sent * 10 + (p[i] - 48)
            i += 1
        if id_ <= self.last_id:
            self.disorder += 1
        self.last_id = id_
        self.n += 1
        if seq < self.seq_from:
            return
        if self.timed < self._cap:
            self._lat[self.timed] = now - sent
        else:
            self.lat.append(now - sent)
        self.timed += 1
