from collections.abc import Callable
from typing import Any

from fastchat._hub import Hub, Member
from fastchat.protocol import Limits

def plain_message(msg: Any, name_max: int, max_chars: int) -> bool: ...

class Lane:
    messages_in: int
    def __init__(
        self,
        chat: Any,
        decode: Callable[[bytes | str], Any],
        send_message: type,
        write: type,
        op: int,
        limits: Limits,
        name_max: int,
    ) -> None: ...
    def receive(self, member: Member, data: bytes | str) -> None: ...

class Publisher:
    published: int
    def __init__(
        self,
        hub: Hub | Any,
        versions: dict[str, int],
        recent: dict[str, Any],
        encode: Callable[[Any], bytes],
        event: type,
        format_ms: Callable[[int], str],
        op: int,
    ) -> None: ...
    def run(self, results: list[Any], i: int) -> int: ...
