"""`python -m app`, plus one thing for the soak (bench/_soak.py): on SIGUSR1 it writes
`bench-tasks N` to stdout, N being the asyncio tasks alive in the server's loop.

The app has no endpoint that reports its tasks (/health counts sessions), and the soak
must not add one to app/; a signal handler outside app/ can count them without changing
what the server does. The count is taken in a loop callback (`call_soon_threadsafe`),
not in the handler itself, which may run in the middle of asyncio's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType

from app.__main__ import main

MARK = "bench-tasks"


def _count(loop: asyncio.AbstractEventLoop) -> None:
    # os.write, not print: logging may be half-way through a buffered write to stdout.
    os.write(sys.stdout.fileno(), f"{MARK} {len(asyncio.all_tasks(loop))}\n".encode())


def _on_signal(signum: int, frame: FrameType | None) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        os.write(sys.stdout.fileno(), f"{MARK} no-loop\n".encode())
        return
    loop.call_soon_threadsafe(_count, loop)


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _on_signal)
    sys.exit(main())
