"""Whether the store can be read and written, as last observed: `/api/v1/health` and
`/ready` ask here, never the database per request."""

from __future__ import annotations

import asyncio
import time
from typing import Final

from fastchat.store import Store

# How long a health answer is reused.
HEALTH_SECONDS: Final = 0.25


class StoreHealth:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._problem: str | None = None
        self._until = 0.0
        self._failures = 0
        self._check: asyncio.Future[str | None] | None = None

    def if_fresh(self) -> tuple[bool, str | None]:
        """(True, what `problem` would answer) while the last observation is current, else
        (False, None): then `problem` asks the store."""
        if time.monotonic() < self._until and self.store.failed_batches == self._failures:
            return True, self._problem
        return False, None

    async def problem(self) -> str | None:
        """None when the store can be read and written, else why not. As last observed: the
        store is asked at most every HEALTH_SECONDS, by one check that concurrent requests
        share (wrk on /health at 14k requests/s asked the database 14k times a second), and
        at once after a write has failed since."""
        fresh, problem = self.if_fresh()
        if fresh:
            return problem
        if self._check is None:
            self._check = asyncio.ensure_future(self._ask(self.store.failed_batches))
        return await asyncio.shield(self._check)

    async def _ask(self, failures: int) -> str | None:
        try:
            await self.store.check()
            problem = None
        except Exception as exc:  # any failure means "not healthy", with the reason
            problem = f"error: {exc}"
        self._problem, self._failures = problem, failures
        self._until = time.monotonic() + HEALTH_SECONDS
        self._check = None
        return problem
