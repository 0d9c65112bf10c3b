"""IDLE_TIMEOUT and MAX_SESSION_DURATION: one watchdog per session, not a timer per frame.

The reader stamps `waiting_since` (a float store) when it starts waiting for the client's
next frame and sets it to infinity once one arrives, so time the server itself spends
not reading (a full input queue, a rate limit's wait) never counts as the client being
idle. The watchdog task sleeps until the earlier deadline and looks again; nothing is
rescheduled per frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, Literal

import anyio

Expiry = Literal["idle", "max_duration"]
NOT_WAITING: Final = math.inf


class Watchdog:
    __slots__ = ("_clock", "_deadline", "_idle", "waiting_since")

    def __init__(
        self, idle_timeout: float, max_duration: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """0 turns either off; the duration counts from now (the session's admission)."""
        self._clock = clock
        self._idle = idle_timeout or math.inf
        self._deadline = clock() + max_duration if max_duration else math.inf
        self.waiting_since = NOT_WAITING  # the reader's: when it began waiting for a frame

    @property
    def watches_idle(self) -> bool:
        """Whether the reader's `waiting_since` stamps are read (IDLE_TIMEOUT is on)."""
        return self._idle < math.inf

    @property
    def enabled(self) -> bool:
        return self._idle < math.inf or self._deadline < math.inf

    async def expired(self) -> Expiry:
        """Return which limit was reached, when one is (never, if both are off)."""
        while True:
            now = self._clock()
            if now >= self._deadline:
                return "max_duration"
            idle_at = self.waiting_since + self._idle  # infinite while the reader is busy
            if now >= idle_at:
                return "idle"
            # While the reader is busy, look again one idle period later.
            await anyio.sleep(min(self._deadline, idle_at, now + self._idle) - now)
