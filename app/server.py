"""How `python -m app` runs uvicorn: one process, several worker processes, or one that
reloads on code changes; in each, a server that drains (app/drain.py) before it stops.

What uvicorn's own `Server` does on SIGTERM or SIGINT (0.54, `handle_exit`, `shutdown`):
it closes its listener at once, calls `shutdown()` on every connection (a WebSocket gets a
bare close 1012 there and then), waits `timeout_graceful_shutdown` for the tasks, cancels
them, and finally raises the signal again, so a SIGTERM'd server exits 143. A deploy
would cut every answer mid-sentence. `DrainingServer` instead:

1. on the first signal begins the app's drain and keeps serving: the listener stays open,
   so probes get a real 503 from `/ready`, and handshakes a 503 `draining`; each session
   finishes what it is saying, for up to DRAIN_TIMEOUT, then closes (1012,
   `server_shutdown`). uvicorn's shutdown starts only once the drain is over, so its
   grace period (`shutdown_timeout`) covers only what is still closing, and cancels no
   session that the drain would let finish;
2. on a second signal closes every session now, with its `connection_close`;
3. on a third stops as uvicorn does on a second Ctrl+C (no more waiting);
and exits 0.

uvicorn installs `handle_exit` with `signal.signal`, so it runs between two bytecodes of
whatever the event loop was doing: it only hands the signal to the loop, with
`call_soon_threadsafe`, which also wakes the loop if it is waiting in its selector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from uvicorn.supervisors import ChangeReload, multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from app.config import Settings
from app.drain import Drain, drain_of

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def shutdown_timeout(settings: Settings) -> int:
    """uvicorn's `timeout_graceful_shutdown`: how long, once the drain is over, it waits for
    connections to finish before cancelling their tasks: a session still closing (its
    goodbye and its model's stop, STOP_TIMEOUT each) and a closing connection
    (CLOSE_TIMEOUT). Whole seconds, as uvicorn takes it."""
    return math.ceil(2 * settings.stop_timeout + settings.close_timeout) + 1


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, *, supervised: bool = False) -> None:
        super().__init__(config)
        # A worker under `Supervisor`: Ctrl+C reaches the whole process group, and the
        # supervisor passes it on as SIGTERM, so the worker's own SIGINT is ignored (else
        # the two would count as two signals, and skip the drain).
        self.supervised = supervised
        self.signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: Drain | None = None
        self._draining: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self._drain = drain_of(self.lifespan.state)  # None for an app without our lifespan
        self._loop = asyncio.get_running_loop()
        # Everything built so far (the imported modules, strands and boto3 among them, the
        # app, its tools and models) lives as long as the process: out of the cyclic
        # garbage collector's way. Its collections then walk only what sessions make, and
        # stop freezing the loop for 100-300 ms every minute or two under load; measured
        # with bench/load.py: set-up CPU 2.7 -> 1.5 ms a connection, set-up p99 21 -> 3 ms.
        gc.freeze()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not uvicorn's: that one records the signal to raise again once stopped.
        if self.supervised and sig == signal.SIGINT:
            return
        if self._loop is None:  # still starting: nothing to drain
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._on_signal, signal.Signals(sig).name)

    def _on_signal(self, name: str) -> None:
        self.signals += 1
        drain = self._drain
        if drain is None or self.signals > 2:
            # No drain (not our app): uvicorn's stop, then on the next signal its force
            # exit; with a drain, the third signal forces.
            self.force_exit = self.should_exit or self.signals > 2
            self.should_exit = True
            logger.info("%s: stopping%s", name, " now, without waiting" if self.force_exit else "")
        elif self.signals == 1:
            logger.info("%s: draining for up to %gs (again to close every session now)", name, drain.timeout)
            self._draining = asyncio.create_task(self._drain_then_exit(drain), name="server:drain")
        else:
            logger.info("%s: closing every session now (again to stop without waiting)", name)
            drain.close_now()

    async def _drain_then_exit(self, drain: Drain) -> None:
        try:
            await drain.run()
        except Exception:
            logger.exception("the drain failed; stopping")  # a bug: stop all the same
        finally:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._draining is not None and not self._draining.done():  # a forced exit
            self._draining.cancel()
            await asyncio.wait([self._draining])
        await super().shutdown(sockets)


class DrainingWorker(Process):
    """One of uvicorn's worker processes, serving with a `DrainingServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config, supervised=True)
        return self._server


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes: on SIGTERM or SIGINT it sends each worker
    SIGTERM and waits for them, and each drains. Here a signal that comes while they drain
    is passed on too (uvicorn's waits without looking), so a second one closes every
    session now, as it does with one process."""

    def join_all(self) -> None:
        for process in self.processes:
            while process.process.exitcode is None:
                process.process.join(0.1)
                stops = [sig for sig in self.signal_queue if sig in _STOP_SIGNALS]
                self.signal_queue.clear()  # the others (SIGHUP, SIGWINCH, ...) mean nothing now
                if stops:
                    self._signal_workers()

    def _signal_workers(self) -> None:
        for process in self.processes:
            if process.process.exitcode is None and process.pid is not None:
                logger.info("passing the signal on to worker [%d]", process.pid)
                os.kill(process.pid, signal.SIGTERM)


@contextmanager
def _draining_workers() -> Iterator[None]:
    # uvicorn's Multiprocess builds every worker (at start, after a crash, on SIGHUP and
    # SIGTTIN) as its module's `Process`, which serves with a plain `uvicorn.Server`, and
    # offers no other way in. Swapped while the supervisor runs, in the supervisor's own
    # process, which does nothing else; checked end to end by tests/integration/test_workers.py.
    original = multiprocess.Process
    multiprocess.Process = DrainingWorker  # type: ignore[misc]
    try:
        yield
    finally:
        multiprocess.Process = original  # type: ignore[misc]


def serve(config: uvicorn.Config) -> bool:
    """`uvicorn.run`'s three ways to serve, each with draining servers; whether it served
    (False: stopped before startup finished)."""
    if config.should_reload:
        server = DrainingServer(config)
        ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
        return True
    if config.workers > 1:
        with _draining_workers():
            Supervisor(config, sockets=[config.bind_socket()]).run()
        return True
    server = DrainingServer(config)
    server.run()
    return server.started
