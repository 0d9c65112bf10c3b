"""The live sessions of this process: health status, and waiting for them to end."""

from __future__ import annotations

import asyncio
import time


class SessionRegistry:
    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.last_change = time.time()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._ids

    def add(self, session_id: str) -> None:
        self._ids.add(session_id)
        self._idle.clear()
        self.last_change = time.time()

    def discard(self, session_id: str) -> None:
        self._ids.discard(session_id)
        if not self._ids:
            self._idle.set()
        self.last_change = time.time()

    async def wait_idle(self) -> None:
        await self._idle.wait()
