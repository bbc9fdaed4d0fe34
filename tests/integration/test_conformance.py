"""RFC 6455 conformance of both ports, judged by the Autobahn TestSuite's own case files
(run by kosoku). A chat server does not echo, so the server is started with its testing-only
echo endpoints (CONFORMANCE_ECHO=1, path /echo on each port): the same frame handling as the
chat path, answering the way the cases expect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import websockets
from kosoku import FailureError, run_fuzzingclient

from tests.conftest import ServerProcess, start_server

# 1 framing, 2 pings, 3 reserved bits, 4 opcodes, 5 fragmentation, 6 UTF-8, 7 close handling,
# 9 big and many messages, 10 auto-fragmentation. Not 12/13: permessage-deflate is not
# offered, so those cases test nothing here.
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
# Every case passes on both URLs. 7.1.2 (two close frames in one read) needed help: picows
# parses one frame ahead and refused the second with 1002 before we answered the first
# (fastport.ConnectionLog answers it first).
KNOWN: dict[str, set[str]] = {"fast": set(), "http": set()}


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(
        tmp_path_factory.mktemp("conf") / "c.db",
        env={"CONFORMANCE_ECHO": "1", "RATE_LIMIT": "0", "MAX_FRAME_BYTES": str(16 << 20)},
    )
    yield srv
    srv.stop()


async def run_cases(url: str) -> list:  # type: ignore[type-arg]
    try:
        return await run_fuzzingclient(url, CASES, concurrency=8)
    except FailureError as failure:
        return list(failure.results)


@pytest.mark.parametrize("port", ["fast", "http"])
async def test_autobahn_cases_pass(echo_server: ServerProcess, port: str) -> None:
    base = echo_server.ws_fast if port == "fast" else echo_server.ws_http
    url = base.replace("/ws", "/echo")
    results = await asyncio.wait_for(run_cases(url), 300)
    assert len(results) > 250
    failed = [r.case_id for r in results if not r.passed and r.case_id not in KNOWN[port]]
    if failed:
        # Judged again alone: eight cases at a time on a loaded machine (a clean-clone run
        # beside another suite) once left two UTF-8 cases' closing handshakes unfinished
        # within the suite's time limits (6.22.31 "UNCLEAN", 6.22.32); a real breach of
        # the RFC fails every time, alone too.
        again = await asyncio.wait_for(run_fuzzingclient_alone(url, failed), 300)
        failed = [
            f"{r.case_id}: {r.behavior.value}/{r.behavior_close.value} {r.result_close}"
            for r in again
            if not r.passed
        ]
    assert not failed, "\n".join(failed)


async def run_fuzzingclient_alone(url: str, cases: list[str]) -> list:  # type: ignore[type-arg]
    try:
        return await run_fuzzingclient(url, cases, concurrency=1)
    except FailureError as failure:
        return list(failure.results)


async def test_echo_endpoints_are_off_by_default(server: ServerProcess) -> None:
    for url in server.ws_urls():
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url.replace("/ws", "/echo"))
        assert info.value.response.status_code in (403, 404)
