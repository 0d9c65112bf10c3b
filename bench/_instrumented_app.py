"""`python -m app`, plus what the soak (bench/_soak.py) reads of it from outside: on
SIGUSR1 it writes one line to stdout,

    bench-state tasks=N lag_max_ms=X lags_over_50ms=Y

N being the asyncio tasks alive in the server's loop, X the longest the loop was late
for a timer since the previous line, Y how often it was more than 50 ms late (a stall:
every session's frames wait that long).

The app has no endpoint for either (/health counts sessions), and the soak must not add
one to app/: a signal handler outside app/ can read them without changing what the
server does. The count is taken in a loop callback (`call_soon_threadsafe`), not in the
handler itself, which may run in the middle of asyncio's own bookkeeping. The lag probe
is a timer callback every 10 ms, started by the first signal: a callback, not a task, so
it does not change the task count.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

from app.__main__ import main

MARK = "bench-state"
PERIOD = 0.01
STALL = 0.05


class LagProbe:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.worst = 0.0
        self.stalls = 0
        self.due = loop.time() + PERIOD
        loop.call_at(self.due, self.tick)

    def tick(self) -> None:
        lag = self.loop.time() - self.due
        self.worst = max(self.worst, lag)
        self.stalls += lag > STALL
        self.due = self.loop.time() + PERIOD
        self.loop.call_at(self.due, self.tick)

    def read(self) -> str:
        line = f"lag_max_ms={self.worst * 1000:.1f} lags_over_50ms={self.stalls}"
        self.worst, self.stalls = 0.0, 0
        return line


probe: LagProbe | None = None


def _report(loop: asyncio.AbstractEventLoop) -> None:
    global probe
    lag = probe.read() if probe else "lag_max_ms=- lags_over_50ms=-"
    probe = probe or LagProbe(loop)
    # os.write, not print: logging may be half-way through a buffered write to stdout.
    os.write(sys.stdout.fileno(), f"{MARK} tasks={len(asyncio.all_tasks(loop))} {lag}\n".encode())


def _on_signal(signum: int, frame: FrameType | None) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not serving yet: the soak asks again
    loop.call_soon_threadsafe(_report, loop)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _on_signal)
    sys.exit(main())
