"""Every refusal, counted by reason and logged once: a handshake turned away (auth,
origin, capacity) or a session ended by a limit (rate, slow client, idle, duration).

A flood of refusals must not become a flood of log lines: within `log_interval` seconds
one line is written per reason, and the next line says how many were not logged since.
Counts are never throttled; `/health` shows them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

logger = logging.getLogger(__name__)

RefusalReason = Literal[
    "unauthorized",  # no or bad credentials (HTTP 401)
    "forbidden",  # credentials fine but not allowed (HTTP 403)
    "origin",  # an Origin not on the allow-list (HTTP 403)
    "auth_unavailable",  # JWTs cannot be checked: the JWKS could not be fetched (HTTP 503)
    "capacity",  # MAX_SESSIONS reached (HTTP 503)
    "draining",  # the server is shutting down (HTTP 503, app/drain.py)
    "rate_limited",  # input faster than allowed, for too long (close 1008)
    "slow_client",  # a client that stopped reading (close 1008)
    "idle",  # no frame for IDLE_TIMEOUT (close 1000)
    "max_duration",  # MAX_SESSION_DURATION reached (close 1000)
    "handshake_timeout",  # a connection that never became a session
    "connection_limit",  # MAX_CONNECTIONS open connections reached (HTTP 503)
]


class Refusals:
    def __init__(self, log_interval: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.counts: Counter[str] = Counter()
        self._log_interval = log_interval
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()

    def record(self, reason: RefusalReason, detail: str) -> None:
        """Count one refusal; `detail` says why, for the log (never a token or user text)."""
        self.counts[reason] += 1
        now = self._clock()
        last = self._last_logged.get(reason)
        if last is not None and now - last < self._log_interval:
            self._unlogged[reason] += 1
            return
        self._last_logged[reason] = now
        skipped = self._unlogged.pop(reason, 0)
        more = f" ({skipped} more since the last line)" if skipped else ""
        logger.warning(
            "refused: reason=%s %s%s", reason, detail, more, extra={"reason": reason, "unlogged": skipped}
        )
