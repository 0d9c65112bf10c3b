"""How often a session lets strands restart its model connection.

strands restarts a connection that times out (Nova Sonic's `modelTimeoutException`) and
replays the history into the new one, with no limit: a model that keeps failing would be
retried against Bedrock for as long as the client stays. `RestartBudget` allows
`MODEL_MAX_RESTARTS` restarts within any `MODEL_RESTART_WINDOW` seconds (Nova's ordinary
restarts, after about three minutes of silence or at the eight-minute connection cap, are
far apart) and refuses the next one: strands' before-restart hook raises, the restart is
not attempted, and the session ends with `model_restart_limit`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from starlette import status
from strands.bidi.hooks import BidiBeforeConnectionRestartEvent

from app.errors import SessionError
from app.wire.outbound import ErrorCode


class RestartLimitError(SessionError):
    code: ErrorCode = "model_restart_limit"
    fatal = True
    # The model service keeps failing: a client may try again later.
    close_code = status.WS_1013_TRY_AGAIN_LATER


class RestartBudget:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._recent: deque[float] = deque()

    def spend(self, event: BidiBeforeConnectionRestartEvent | None = None) -> None:
        """A strands before-restart hook: raises once the budget is spent."""
        now = self._clock()
        recent = self._recent
        while recent and now - recent[0] >= self.window:
            recent.popleft()
        if len(recent) >= self.limit:
            raise RestartLimitError(
                f"the model connection failed {len(recent) + 1} times within {self.window:g} s; giving up"
            )
        recent.append(now)
