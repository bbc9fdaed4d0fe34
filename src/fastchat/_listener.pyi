from collections.abc import Callable

from picows import WSFrame, WSListener, WSTransport

from fastchat._hub import Member
from fastchat.framing import Messages

class Listener(WSListener):
    member: Member | None
    messages: Messages
    on_text: Callable[[Member, str], None]
    def invalid_text(self, transport: WSTransport) -> None: ...
    def other_frame(
        self, transport: WSTransport, frame: WSFrame, member: Member, rsv: bool
    ) -> None: ...
