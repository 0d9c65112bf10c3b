"""Input rate limits per session: audio seconds per second, and other messages per second.

Each is a token bucket: it holds up to `burst` tokens and refills at `rate` tokens a
second; a frame takes its cost (audio: its bytes; anything else: 1). The policy, as
docs/protocol.md ("Input rate limits") states it:

- a frame over the limit is not dropped: the reader waits until the bucket has refilled
  enough to cover it, so an over-limit client is read no faster than the limit and its
  own send buffer fills (backpressure, as for a full input queue);
- the first wait of an episode sends one `rate_limited` error (not fatal);
- an episode that would last longer than RATE_LIMIT_GRACE seconds ends the session
  (`rate_limited`, fatal, close 1008). An episode ends once no frame has had to wait for
  CALM_SECONDS: not at the first frame that does not, because a pause of the server's
  own (a busy event loop) lets the bucket refill a little under a client that is still
  sending too fast, and that must not start a new episode with a new warning.

The bucket may go into debt, so a single frame larger than the burst is paced (or
refused) like a run of small ones rather than waiting forever. `take` is the per-frame
path: a clock read and a few float operations, no allocation; only a frame over the
limit reaches the `pace` coroutine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import anyio
from starlette import status

from app.config import Settings
from app.errors import ProtocolError, SessionError
from app.wire.outbound import Error

BYTES_PER_SAMPLE: Final = 2  # PCM16 mono
CALM_SECONDS: Final = 1.0


class RateLimited(SessionError):
    code = "rate_limited"
    fatal = True
    close_code = status.WS_1008_POLICY_VIOLATION


class InputLimit:
    __slots__ = (
        "_burst",
        "_clock",
        "_delayed_until",
        "_episode",
        "_grace",
        "_rate",
        "_stamp",
        "_tokens",
        "_warning",
        "what",
    )

    def __init__(
        self,
        what: str,
        rate: float,
        burst: float,
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`rate` tokens a second, up to `burst`; a `rate` of 0 means no limit. `what` says,
        in the client's terms, what the limit is ("audio faster than 2x real time")."""
        self.what = what
        self._rate = rate or 1.0
        self._burst = burst if rate else math.inf  # an endless bucket never makes a frame wait
        self._grace = grace
        self._clock = clock
        self._tokens = self._burst
        self._stamp = clock()
        self._episode: float | None = None  # when the current over-limit episode began
        self._delayed_until = -math.inf  # when the last delay ended
        self._warning = ProtocolError(
            "rate_limited", f"{what}; reading is slowed, and the session closes if it goes on for {grace:g} s"
        ).to_wire()

    def take(self, amount: float) -> float:
        """Charge `amount`; the seconds to wait before accepting the frame (0.0: accept now)."""
        now = self._clock()
        tokens = self._tokens + (now - self._stamp) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        tokens -= amount
        self._tokens = tokens
        self._stamp = now
        if tokens >= 0.0:
            if self._episode is not None and now - self._delayed_until >= CALM_SECONDS:
                self._episode = None
            return 0.0
        return -tokens / self._rate

    async def pace(self, wait: float, warn: Callable[[Error], Awaitable[None]]) -> None:
        """Wait `wait` seconds (from `take`) before the frame is accepted; warn the client once
        an episode, and raise `RateLimited` rather than let the episode outlast the grace."""
        now = self._clock()
        starting = self._episode is None
        episode = self._episode = now if self._episode is None else self._episode
        if now + wait - episode > self._grace:
            raise RateLimited(f"{self.what} for more than {self._grace:g} s")
        self._delayed_until = now + wait
        if starting:
            await warn(self._warning)
        await anyio.sleep(wait)


@dataclass(frozen=True, slots=True)
class InputLimits:
    audio: InputLimit  # costs are bytes of PCM16 at the session's input rate
    text: InputLimit  # every other frame the client sends costs 1

    @classmethod
    def for_session(cls, settings: Settings, input_rate: int) -> InputLimits:
        grace = settings.rate_limit_grace
        bytes_per_second = BYTES_PER_SAMPLE * input_rate
        audio = InputLimit(
            f"audio faster than {settings.audio_rate_limit:g}x real time",
            settings.audio_rate_limit * bytes_per_second,
            settings.audio_burst_seconds * bytes_per_second,
            grace,
        )
        text = InputLimit(
            f"more than {settings.text_rate_limit:g} messages a second",
            settings.text_rate_limit,
            settings.text_burst,
            grace,
        )
        return cls(audio, text)
