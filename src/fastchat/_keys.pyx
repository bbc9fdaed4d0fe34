"""The client-id filter's per-key step in C (trailing.ClientKeys: its scheme is there).

A key's three spots come from MurmurHash3 (mmh3.hash_bytes, x64, seed 0) of its parts
joined by NUL: the low 32 bits of the digest's two halves, `a` and `b | 1`, give the spots
`a`, `a + b` and `a + 2b`, masked. In Python each `add` and `may_hold` cost ~0.45 us, ~0.4 us
of it in big-integer arithmetic and bytearray indexing around a 45 ns hash; every new
message with a client id asks once and adds once (unpipelined-ids: 6 % of the loop). Here
the same bits, the same spots: a filter saved by either reads the same.
"""

from mmh3 import hash_bytes


cdef inline unsigned long long _low32(const unsigned char* p) noexcept:
    return p[0] | (p[1] << 8) | (p[2] << 16) | (<unsigned long long>p[3] << 24)


cdef inline int _spots(object key, unsigned long long mask, unsigned long long* out) except -1:
    cdef bytes digest = hash_bytes(f"{key[0]}\0{key[1]}\0{key[2]}")
    cdef const unsigned char* d = digest
    cdef unsigned long long a = _low32(d), b = _low32(d + 8) | 1
    out[0] = a & mask
    out[1] = (a + b) & mask
    out[2] = (a + 2 * b) & mask
    return 0


def add(bytearray bits, unsigned long long mask, key):
    """Set `key`'s three spots in `bits` (a power of two of them, `mask` the last)."""
    cdef unsigned long long spot[3]
    cdef unsigned char* b = bits
    _spots(key, mask, spot)
    for i in range(3):
        b[spot[i] >> 3] |= 1 << (spot[i] & 7)


def holds(bytearray bits, unsigned long long mask, key):
    """Whether all of `key`'s three spots are set."""
    cdef unsigned long long spot[3]
    cdef unsigned char* b = bits
    _spots(key, mask, spot)
    for i in range(3):
        if not b[spot[i] >> 3] & (1 << (spot[i] & 7)):
            return False
    return True
