# cython: language_level=3, boundscheck=False, wraparound=False
"""The paced scenario's timed receivers, in C. One process reads all 999 members of the room
(~100k frames/s), so whatever it spends a frame is a queue the last copies of each message
wait in, which counts as the server's latency (bench/RESULTS.md, sessions 2 and 20).

* `CTimed`: picows calls `on_ws_frame` through its vtable, so a chat frame costs no Python
  call, no bytes copy and no decode (a receiver in Python fell 1.4-2 ms behind the server).
* `Stamper` (the default, `--receiver stamp`): once picows has connected and joined the
  members, it reads their sockets itself, with recvmsg(2) on an epoll set of its own: about
  1 us less of this process's CPU a frame than uvloop and picows, and the kernel's receive
  timestamp of each read, so a copy is also timed to its arrival in the socket.

Built by `make bench-build` (bench/build_recv.py); `--receiver python` needs neither.

The frame is the server's CHAT_MESSAGE event around the text the generator wrote
(`loadgen.chat_payload`: "<seq> <send ns> <padding>"): the id right after the prefix, the
send time after `"message":"` and the sequence number. Any other layout raises, which picows
turns into a disconnection and the Stamper into a failed run.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
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
    `other(payload)` of the subclass.

    Read by a `Stamper` instead of picows (`--receiver stamp`), it also records into
    `lat_socket` each copy's latency up to its arrival in the member's socket: the kernel's
    receive timestamp, taken inside the server's `send(2)` on loopback."""

    cdef public long long n
    cdef public long long timed
    cdef public long long seq_from
    cdef public long long last_id
    cdef public long long disorder
    cdef public long long frames
    cdef long long[::1] _lat
    cdef long long[::1] _lat_socket
    cdef bint _stamped
    cdef Py_ssize_t _cap
    cdef public object lat
    cdef public object lat_socket

    def bind(self, lat, long long seq_from=0, lat_socket=None):
        """Record into `lat` the latencies of the pacer's messages from number `seq_from` on
        (earlier ones, the warm-up, are counted in `n` and checked for order, not timed), and
        into `lat_socket` (as long, when given) those up to the socket."""
        self.lat = lat
        self._lat = lat
        self._cap = len(lat)
        if lat_socket is not None:
            if len(lat_socket) != self._cap:
                raise ValueError("lat_socket must be as long as lat")
            self.lat_socket = lat_socket
            self._lat_socket = lat_socket
        self._stamped = lat_socket is not None
        self.timed = 0
        self.seq_from = seq_from

    def unbind(self):
        """The latencies recorded, as a new array (the bound one cannot be resized)."""
        self._lat = None
        self._cap = 0
        self.lat = self.lat[: self.timed]
        if self._stamped:
            self._lat_socket = None
            self._stamped = False
            self.lat_socket = self.lat_socket[: self.timed]
        return self.lat

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef long long now = _now()
        if frame.msg_type != WSMsgType.TEXT:
            self.frames += 1
            return
        if not self._chat(frame.payload_ptr, frame.payload_size, now, 0):
            self.frames += 1
            self.other(PyBytes_FromStringAndSize(frame.payload_ptr, frame.payload_size))

    cdef bint _chat(self, const char* p, Py_ssize_t size, long long now, long long at_socket) except -1:
        """Count, check and time one text frame; False if it is not a chat message.
        `at_socket`: when it reached the socket (CLOCK_MONOTONIC ns), 0 if unknown."""
        cdef Py_ssize_t pl = len(_PREFIX), kl = len(_KEY)
        cdef Py_ssize_t i
        cdef long long id_ = 0, sent = 0, seq = 0
        if size <= pl or memcmp(p, <const char*>_PREFIX, pl) != 0:
            return False
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
            return True
        if self.timed < self._cap:
            self._lat[self.timed] = now - sent
            if self._stamped:
                self._lat_socket[self.timed] = at_socket - sent if at_socket else -1
        else:
            self.lat.append(now - sent)
            if self._stamped:
                self.lat_socket.append(at_socket - sent if at_socket else -1)
        self.timed += 1
        return True


# ---------------------------------------------------------------------------------------------
# Stamper: the same members read with recvmsg(2), for the kernel's receive timestamps
# ---------------------------------------------------------------------------------------------

cdef extern from "<sys/socket.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    struct msghdr:
        void* msg_name
        unsigned int msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    Py_ssize_t recvmsg(int fd, msghdr* msg, int flags)
    int setsockopt(int fd, int level, int name, const void* val, unsigned int len)
    cmsghdr* CMSG_FIRSTHDR(msghdr* msg)
    cmsghdr* CMSG_NXTHDR(msghdr* msg, cmsghdr* cmsg)
    unsigned char* CMSG_DATA(cmsghdr* cmsg)
    int SOL_SOCKET
    int MSG_DONTWAIT
    int SO_TIMESTAMPNS
    int SCM_TIMESTAMPNS


cdef extern from "<sys/epoll.h>" nogil:
    union epoll_data_t "epoll_data":
        void* ptr
        int fd
        unsigned int u32
        unsigned long long u64
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLLIN
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    int EPOLL_CLOEXEC

cdef extern from "<errno.h>" nogil:
    int errno
    int EAGAIN
    int EINTR

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef enum:
    _BUF = 262144  # one read's buffer, shared by all members
    _EVENTS = 256


cdef inline long long _clock(int which) noexcept nogil:
    cdef timespec ts
    clock_gettime(which, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class Stamper:
    """Reads members' sockets itself, once picows has connected and joined them and stopped
    reading (`add`), with `recvmsg(2)` and SO_TIMESTAMPNS: each read carries the kernel's
    time of arrival of its last segment, which on loopback is stamped inside the server's
    `send(2)` (`netif_rx`). So each copy has two latencies: to its arrival in the socket (the
    server's part) and to its read here (the server's part plus this load generator's queue,
    the only figure a picows receiver can give).

    The frames are the server's: unmasked, FIN set (fastchat and the Go builds never
    fragment). A text frame goes to the member's `CTimed._chat`; a ping gets its pong
    through picows' transport (`pong(member, payload)`, the server pings silent clients);
    a close or EOF marks the member `disconnected`, and an EOF or a failed read also takes
    its socket out of the set. One epoll set for all, watched by the event loop as one fd
    (`fileno`) and drained by `drain()` until no member has data waiting."""

    cdef int _ep
    cdef list _members
    cdef list _rest  # per member: bytes of a frame begun in an earlier read, or None
    cdef char* _buf
    cdef char _control[64]
    cdef public long long reads
    cdef public long long unstamped
    cdef public object pong

    def __cinit__(self):
        self._ep = epoll_create1(EPOLL_CLOEXEC)
        if self._ep < 0:
            raise OSError(errno, "epoll_create1")
        self._buf = <char*>malloc(_BUF)
        if self._buf == NULL:
            raise MemoryError()
        self._members = []
        self._rest = []

    def __dealloc__(self):
        if self._ep >= 0:
            close(self._ep)
        free(self._buf)

    def fileno(self):
        return self._ep

    def add(self, CTimed member, int fd):
        """Read `member`'s socket `fd` from now on (its picows transport must not read it)."""
        cdef int one = 1
        cdef epoll_event ev
        if setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) != 0:
            raise OSError(errno, "setsockopt(SO_TIMESTAMPNS)")
        ev.events = EPOLLIN
        ev.data.u64 = len(self._members)
        if epoll_ctl(self._ep, EPOLL_CTL_ADD, fd, &ev) != 0:
            raise OSError(errno, "epoll_ctl")
        self._members.append((member, fd))
        self._rest.append(None)

    def drain(self):
        """Read every member with data waiting, until none has."""
        cdef epoll_event events[_EVENTS]
        cdef int k, ready
        while True:
            ready = epoll_wait(self._ep, events, _EVENTS, 0)
            if ready < 0:
                if errno == EINTR:
                    continue
                raise OSError(errno, "epoll_wait")
            for k in range(ready):
                self._read(<Py_ssize_t>events[k].data.u64)
            if ready < _EVENTS:
                return

    cdef int _read(self, Py_ssize_t slot) except -1:
        cdef CTimed member
        cdef int fd
        member, fd = self._members[slot]
        cdef object rest = self._rest[slot]
        cdef Py_ssize_t have = 0, got, at, need, size, head
        cdef iovec iov
        cdef msghdr msg
        cdef cmsghdr* c
        cdef timespec* ts
        cdef long long now, arrived, offset
        cdef unsigned char b0, b1
        if rest is not None:
            have = PyBytes_GET_SIZE(rest)
            memcpy(self._buf, PyBytes_AS_STRING(rest), have)
            self._rest[slot] = None
        iov.iov_base = self._buf + have
        iov.iov_len = _BUF - have
        msg.msg_name = NULL
        msg.msg_namelen = 0
        msg.msg_iov = &iov
        msg.msg_iovlen = 1
        msg.msg_control = self._control
        msg.msg_controllen = sizeof(self._control)
        msg.msg_flags = 0
        got = recvmsg(fd, &msg, MSG_DONTWAIT)
        if got < 0:
            if errno == EAGAIN or errno == EINTR:
                if have:
                    self._rest[slot] = PyBytes_FromStringAndSize(self._buf, have)
                return 0
            member.disconnected = True
            epoll_ctl(self._ep, EPOLL_CTL_DEL, fd, NULL)
            return 0
        if got == 0:  # EOF: readable for ever, so out of the set
            member.disconnected = True
            epoll_ctl(self._ep, EPOLL_CTL_DEL, fd, NULL)
            return 0
        now = _now()
        self.reads += 1
        arrived = 0
        c = CMSG_FIRSTHDR(&msg)
        while c != NULL:
            if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SCM_TIMESTAMPNS:
                ts = <timespec*>CMSG_DATA(c)
                # Realtime to monotonic: the two clocks' offset read now (they only drift
                # apart by NTP's slewing, parts per million).
                offset = _clock(CLOCK_REALTIME) - _now()
                arrived = <long long>ts.tv_sec * 1000000000 + ts.tv_nsec - offset
            c = CMSG_NXTHDR(&msg, c)
        if arrived == 0:
            self.unstamped += 1
        have += got
        at = 0
        while have - at >= 2:
            b0 = <unsigned char>self._buf[at]
            b1 = <unsigned char>self._buf[at + 1]
            if b1 & 0x80:
                raise ValueError("a masked frame from the server")
            size = b1 & 0x7F
            head = 2
            if size == 126:
                if have - at < 4:
                    break
                size = (<unsigned char>self._buf[at + 2] << 8) | <unsigned char>self._buf[at + 3]
                head = 4
            elif size == 127:
                raise ValueError("a frame over 64 kB")
            need = head + size
            if need > _BUF:
                raise ValueError("a frame larger than the read buffer")
            if have - at < need:
                break
            if not (b0 & 0x80):
                raise ValueError("a fragmented frame")
            if b0 & 0x0F == 1:
                if not member._chat(self._buf + at + head, size, now, arrived):
                    member.frames += 1
                    member.other(PyBytes_FromStringAndSize(self._buf + at + head, size))
            elif b0 & 0x0F == 9:
                member.frames += 1
                self.pong(member, PyBytes_FromStringAndSize(self._buf + at + head, size))
            elif b0 & 0x0F == 8:
                member.frames += 1
                member.disconnected = True
            else:
                member.frames += 1
            at += need
        if at < have:
            self._rest[slot] = PyBytes_FromStringAndSize(self._buf + at, have - at)
        return 0
