"""Every WebSocket frame's first step, on either URL, in C.

picows hands each frame to its listener's `on_ws_frame`, a cpdef method. Overridden in a
Python class, every frame costs a bound method, an argument tuple and a Python frame before
any of our code runs, and then one more Python call to reach the service. Here a whole text
message in one frame (nearly every frame a chat client sends) goes from picows' C call
straight to the service's `receive`, with picows' frame and transport read as C structs.
Measured (`make bench-micro`, group `receive`: frames over loopback, from the socket to
`receive`): 170 ns a frame, against 680 ns with the same rules in Python; about 3 % of a
message's server CPU on unpipelined ingest.

Everything else a frame can be (fragments, binary, pings and pongs, close, reserved bits),
and what a connection does when it opens or closes, stays in Python: `fastport.FastListener`,
which is this class with those parts.
"""

from picows.picows cimport WSFrame, WSListener, WSMsgType, WSTransport

from fastchat._hub cimport Member


cdef class Listener(WSListener):
    """The per-frame part of `fastport.FastListener`."""

    cdef:
        # The connection's member in the hub, from `on_ws_connected` until it is closed.
        public Member member
        # framing.Messages: the message being reassembled from fragments, if any.
        public object messages
        # Called with (member, text) for each whole text message: the service's `receive`.
        public object on_text

    cpdef on_ws_frame(self, WSTransport transport, WSFrame frame):
        cdef Member member = self.member
        if member is None:
            return
        member.seen = True  # keepalive: any frame, a pong included, proves it is alive
        cdef WSMsgType kind = frame.msg_type
        if transport.is_close_frame_sent and kind != WSMsgType.CLOSE:
            return  # we are closing it: only its close frame matters now
        cdef bint rsv = frame.rsv1 or frame.rsv2 or frame.rsv3
        if kind == WSMsgType.TEXT and frame.fin and not rsv and self.messages.fragments is None:
            # A whole text message in one frame, decoded by picows in C with no copy:
            # framing.Messages' rule for it, which it would answer the same.
            try:
                text = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self.invalid_text(transport)
                return
            self.on_text(member, text)
            return
        self.other_frame(transport, frame, member, rsv)

    def invalid_text(self, transport):
        """A text frame that is not UTF-8 (RFC 6455 8.1): close 1007."""
        raise NotImplementedError

    def other_frame(self, transport, frame, member, rsv):
        """Any frame but a whole text message: framing.Messages' rules."""
        raise NotImplementedError
