"""Real uvicorn servers on free loopback ports, for end-to-end tests.

`serving` stops its server gracefully however the block ends: a test that fails with a
browser or client still connected must not leave a socket, a connection or the app's
lifespan open behind it, because `filterwarnings = error` turns the `ResourceWarning`
the garbage collector raises for it into a failure of whichever test runs next.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio
import uvicorn

# uvicorn notices `should_exit` within 0.1 s, then waits up to the config's
# timeout_graceful_shutdown for connections; this bounds the whole stop.
STOP_DEADLINE: Final = 15.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until uvicorn accepts: no start-up race
    return sock


@asynccontextmanager
async def serving(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """A uvicorn server for `config` for the duration of the block, and its port."""
    server = uvicorn.Server(config)
    stopped = anyio.Event()

    async def serve(sock: socket.socket) -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    with listening_socket() as sock:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve, sock)
            try:
                yield server, sock.getsockname()[1]
            finally:
                # A graceful stop even when the block failed: cancelling `serve` instead
                # would skip uvicorn's shutdown (open connections, the app's lifespan).
                # Shielded, so a cancelled test still cleans up; bounded by the deadline.
                server.should_exit = True
                with anyio.CancelScope(shield=True), anyio.fail_after(STOP_DEADLINE):
                    await stopped.wait()
