"""Worker processes for CPU-bound tool work: `await workers.run(fn, *args)`.

Big-integer arithmetic holds the GIL and cannot be interrupted, so neither a thread nor a
deadline keeps it from freezing the event loop (health checks, every session, SIGTERM).
`ProcessWorkers` runs such a function in a separate process instead. A call that is
cancelled (TOOL_TIMEOUT, or its session ending) kills its process, so runaway work stops
burning CPU at once; the next call starts a fresh process.

At most `size` (TOOL_PROCESSES) processes exist; further calls wait for one, and that
wait counts against the caller's deadline. Processes start lazily and are forked by
multiprocessing's forkserver, which has already imported the plugins' dependencies
(strands alone takes about a second to import), so a start costs milliseconds and a
call on a running process well under one.

The function goes by reference and must be defined at the top level of a module; a
plugin file counts (the worker loads it from the same path, under the same name). As
with any multiprocessing start method but fork, a script that starts the server must
guard it with `if __name__ == "__main__":`. Arguments and results cross by pickle, so
keep them plain data; an exception comes back as the same class with the same args, so
a tool's own `ValueError` subclass reaches the tool, and the model, unchanged.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

import anyio

logger = logging.getLogger(__name__)

# A killed process is gone within milliseconds; this only bounds a cleanup that waits.
REAP_TIMEOUT = 2.0
# Imported once by the forkserver, so every worker forked from it starts with them.
_PRELOAD = ["__main__", "app.plugins"]


class WorkerError(RuntimeError):
    """The worker process failed (ended, or sent an unreadable reply), not the function."""


def _resolve(module_name: str, path: str | None, qualname: str) -> Callable[..., Any]:
    module = sys.modules.get(module_name)
    if module is None:
        if path is None:
            raise WorkerError(f"module {module_name} has no file to load in a worker")
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise WorkerError(f"module {module_name} cannot be loaded in a worker")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return cast(Callable[..., Any], target)


def _serve(conn: Connection) -> None:
    """A worker's life: run one request at a time until the server closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group; the server ends us
    while True:
        try:
            module_name, path, qualname, args = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            reply: tuple[Any, ...] = (True, _resolve(module_name, path, qualname)(*args))
        except Exception as exc:
            # By name, not by pickle: pickle must import the class's module by name, and
            # a plugin's module (voice_agent_tools.x) cannot be imported that way.
            kind = type(exc)
            reply = (False, kind.__module__, kind.__qualname__, exc.args, f"{kind.__name__}: {exc}")
        try:
            data = pickle.dumps(reply)
        except Exception as exc:  # a result or exception argument that pickle cannot carry
            data = pickle.dumps((False, "", "", (), f"{qualname} gave an unpicklable reply: {exc}"))
        conn.send_bytes(data)


def _rebuild(module_name: str, qualname: str, args: tuple[Any, ...], text: str) -> Exception:
    """The worker's exception, as the same class here (where the caller's module is loaded)."""
    target: Any = sys.modules.get(module_name)
    for part in qualname.split(".") if target is not None else ():
        target = getattr(target, part, None)
    if not (isinstance(target, type) and issubclass(target, Exception)):
        return WorkerError(text)
    try:
        rebuilt: Exception = target(*args)
    except TypeError:  # a constructor that does not take its own args back
        rebuilt = WorkerError(text)
    return rebuilt


class _Worker:
    def __init__(self, context: multiprocessing.context.ForkServerContext) -> None:
        self.conn, self._child_conn = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(self._child_conn,), name="tool-worker", daemon=True
        )

    def start(self) -> None:  # blocking: the first start waits for the forkserver to load
        self.process.start()
        self._child_conn.close()

    async def call(self, request: bytes) -> bytes:
        try:
            self.conn.send_bytes(request)
            await anyio.wait_readable(self.conn)
            return self.conn.recv_bytes()
        except (EOFError, OSError):
            raise WorkerError("the worker process ended unexpectedly") from None

    async def stop(self) -> None:
        """Kill the process and wait, with a deadline, until it is reaped."""
        self._child_conn.close()
        if self.process.pid is not None:
            self.process.kill()
            with anyio.CancelScope(shield=True), anyio.move_on_after(REAP_TIMEOUT):
                await anyio.wait_readable(self.process.sentinel)
            self.process.join(0)
            if self.process.exitcode is None:
                logger.warning("tool worker %d did not end within %.0fs", self.process.pid, REAP_TIMEOUT)
            else:
                self.process.close()
        self.conn.close()


class ProcessWorkers:
    def __init__(self, size: int) -> None:
        self.size = size
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(_PRELOAD)  # no effect once the forkserver runs
        self._slots = anyio.Semaphore(size)
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for diagnostics and tests)."""
        return [w.process.pid for w in self._live if w.process.pid is not None]

    async def run[T](self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker process; its exception is raised here. Cancelling the
        call kills the process."""
        path = getattr(sys.modules.get(fn.__module__), "__file__", None)
        request = pickle.dumps((fn.__module__, path, fn.__qualname__, args))
        async with self._slots:
            if self._closed:
                raise WorkerError("the tool workers are shut down")
            worker = self._idle.pop() if self._idle else await self._start()
            try:
                reply = await worker.call(request)
            except BaseException:
                self._live.discard(worker)
                await worker.stop()
                raise
            self._idle.append(worker)
        try:
            ok, *value = pickle.loads(reply)
        except Exception as exc:  # e.g. a result of a class this process cannot import
            raise WorkerError(f"unreadable reply from a worker ({type(exc).__name__})") from None
        if ok:
            return cast(T, value[0])
        raise _rebuild(*value)

    async def prewarm(self) -> None:
        """Start one idle worker now, so the first call does not wait for it (the first
        start also starts the forkserver: about a second). A failure is only logged: the
        calls that need a worker will report it."""
        async with self._slots:
            if self._closed or self._idle:
                return
            try:
                self._idle.append(await self._start())
            except Exception as exc:
                logger.warning("could not start a tool worker ahead of time: %s", exc)

    async def _start(self) -> _Worker:
        worker = _Worker(self._context)
        self._live.add(worker)
        try:
            await anyio.to_thread.run_sync(worker.start)
        except BaseException:
            self._live.discard(worker)
            await worker.stop()
            raise
        return worker

    async def aclose(self) -> None:
        """Kill every worker; a call still running gets a `WorkerError`."""
        self._closed = True
        idle, self._idle = self._idle, []
        for worker in self._live - set(idle):
            if worker.process.pid is not None:
                worker.process.kill()  # its caller sees the pipe end and cleans up
        for worker in idle:
            self._live.discard(worker)
            await worker.stop()
