"""docs/PROTOCOL.md's examples are real: they decode, and the server answers them as shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import msgspec
import pytest

from fastchat import events
from tests.conftest import ServerProcess
from tests.integration.wsclient import Client

DOC = Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md"
EXAMPLES = dict(
    re.findall(r"<!-- example: ([\w-]+) -->\s*```json\n(.*?)\n```", DOC.read_text(), re.S)
)


def test_the_doc_has_its_examples() -> None:
    assert set(EXAMPLES) >= {"join", "send", "comment", "message-event", "error"}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_each_example_decodes(name: str) -> None:
    raw = EXAMPLES[name].encode()
    kind = json.loads(raw)["type"]
    if name in (
        "message-event",
        "message-edited",
        "error",
        "error-send",
        "history-page",
        "members-page",
    ):
        msgspec.json.decode(raw, type=events.AnyServerEvent)
    else:
        assert kind in events.CLIENT_EVENT_TYPES
        events.client_decoder.decode(raw)


def test_every_client_event_and_error_code_is_documented() -> None:
    text = DOC.read_text()
    for kind in events.CLIENT_EVENT_TYPES:
        assert f"`{kind}`" in text, kind
    from fastchat.errors import CLOSE_CODE, HTTP_STATUS, ErrorCode

    codes = {code for name, code in vars(ErrorCode).items() if not name.startswith("_")}
    assert codes == set(HTTP_STATUS) | set(CLOSE_CODE)  # every code has its status or close
    for code in codes:
        assert f"`{code}`" in text, code
    for code, status in HTTP_STATUS.items():  # and the doc says the same status
        if status not in (400, 503):
            assert re.search(rf"`{code}` \|[^\n]*\b{status}\b", text), (code, status)


async def test_the_examples_against_the_server(server: ServerProcess) -> None:
    async with await Client.connect(server.ws_fast) as c:
        await c.send(EXAMPLES["join"])
        joined = await c.expect("ROOM_JOINED")
        assert joined["room"] == "general"
        await c.send(EXAMPLES["send"])
        event = await c.expect("CHAT_MESSAGE")
        documented = json.loads(EXAMPLES["message-event"])
        assert set(event) == set(documented)
        assert {k: event[k] for k in ("room", "user", "message", "client_id")} == {
            k: documented[k] for k in ("room", "user", "message", "client_id")
        }
        await c.send(EXAMPLES["comment"])
        assert (await c.expect("POST_COMMENT"))["comment"] == "Great post!"
        await c.send({"type": "SHOUT"})
        assert (await c.expect("ERROR")) == json.loads(EXAMPLES["error"])
        refused = json.loads(EXAMPLES["error-send"])
        await c.send({**json.loads(EXAMPLES["send"]), "message": "x" * 4100})
        assert (await c.expect("ERROR")) == refused
