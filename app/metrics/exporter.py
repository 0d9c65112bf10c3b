"""Serving the metrics, and the app's background work for them.

`GET /metrics` answers in Prometheus' text format (or OpenMetrics, if the scraper asks).
With METRICS_PORT=0 it is a route of the app, on the main port; with a port set it is
served only there, by a small HTTP server in a thread of its own, and the main port has
no /metrics. Either way the text is built off the event loop.

`Exporter.running()` is the part of the app's lifespan that belongs to the metrics: the
event-loop lag probe, the METRICS_PORT listener, and in multiprocess mode the once-a-second
flush; all stop with the app.

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, prometheus-client's own switch): each
process writes its values to files in that directory and any process's scrape sums the
files of all of them, so with several uvicorn workers one scrape sees the whole server.
The listener then binds METRICS_PORT with SO_REUSEPORT in every worker: whichever answers,
the answer is complete. `voice_sessions_active` counts live processes only: a process that
stops removes its share, and a scrape drops the share of one that died.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import anyio
from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.edge.refusals import Refusals
from app.errors import ConfigError
from app.metrics.instruments import Metrics
from app.registry import SessionRegistry

logger = logging.getLogger(__name__)

PATH: Final = "/metrics"
LAG_INTERVAL: Final = 0.25  # seconds between event-loop lag samples
FLUSH_INTERVAL: Final = 1.0  # multiprocess mode: how stale another process's scrape may be
LISTENER_STOP_TIMEOUT: Final = 5.0


class Exporter:
    def __init__(
        self,
        metrics: Metrics,
        sessions: SessionRegistry,
        refusals: Refusals,
        *,
        host: str,
        port: int,
        multiproc_dir: str,
    ) -> None:
        self.metrics = metrics
        self._sessions = sessions
        self._refusals = refusals
        self._host = host
        self._port = port
        self._dir = _multiproc_dir(multiproc_dir)
        if self._dir is None:
            self.registry = metrics.registry
        else:
            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=str(self._dir))

    def routes(self) -> list[BaseRoute]:
        """The app's /metrics route: none when METRICS_PORT serves them apart."""
        return [] if self._port else [Route(PATH, self._endpoint)]

    def flush(self) -> None:
        self.metrics.flush(len(self._sessions), self._refusals.counts)

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The scrape's body and content type (blocking: the multiprocess files are read)."""
        self.flush()
        if self._dir is not None:
            _forget_dead_processes(self._dir)
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    async def _endpoint(self, request: Request) -> Response:
        body, content_type = await anyio.to_thread.run_sync(self.render, request.headers.get("accept", ""))
        return Response(body, headers={"content-type": content_type})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        listener = self._listen() if self._port else None
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch_loop_lag, self.metrics, name="metrics:loop-lag")
                if self._dir is not None:
                    tasks.start_soon(self._flush_every, FLUSH_INTERVAL, name="metrics:flush")
                yield
                tasks.cancel_scope.cancel()
        finally:
            if listener is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(LISTENER_STOP_TIMEOUT):
                    await anyio.to_thread.run_sync(listener.stop, abandon_on_cancel=True)
            self.flush()  # what the last sessions sent, for the other processes' scrapes
            if self._dir is not None:
                mark_process_dead(os.getpid(), str(self._dir))

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await anyio.sleep(seconds)
            self.flush()

    def _listen(self) -> Listener:
        try:
            return Listener(self._host, self._port, self._wsgi, share_port=self._dir is not None)
        except OSError as exc:
            hint = (
                "" if self._dir else " (several worker processes need PROMETHEUS_MULTIPROC_DIR to share it)"
            )
            raise ConfigError(
                f"METRICS_PORT={self._port}: cannot listen on {self._host}: {exc}{hint}"
            ) from exc

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not Found"]
        body, content_type = self.render(environ.get("HTTP_ACCEPT", ""))
        start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]


async def watch_loop_lag(metrics: Metrics, interval: float = LAG_INTERVAL) -> None:
    """Sleep `interval` again and again; how late each wake-up comes is the lag every
    session's frames see too (a blocking call, too much work for one core)."""
    observe, clock = metrics.loop_lag.observe, anyio.current_time
    while True:
        due = clock() + interval
        await anyio.sleep(interval)
        observe(max(0.0, clock() - due))  # asyncio may wake a timer a clock tick early


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A line per scrape would be noise; failures show on the scraper's side."""


class Listener(ThreadingMixIn, WSGIServer):
    """The METRICS_PORT server: the standard library's WSGI server, a thread per scrape."""

    daemon_threads = True  # a scrape in progress does not hold up the process's exit

    def __init__(self, host: str, port: int, app: WSGIApplication, *, share_port: bool) -> None:
        self.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self.allow_reuse_port = share_port
        super().__init__((host, port), _QuietHandler)
        self.set_app(app)
        # Stopped by the lifespan; a daemon all the same, so that a process whose lifespan
        # never ends (a forced exit) is not kept alive by its metrics.
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.1,), name="metrics-listener", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()  # returns once serve_forever has
        self._thread.join()
        self.server_close()


def _multiproc_dir(raw: str) -> Path | None:
    values_in_files = values.ValueClass is not values.MutexValue
    if not raw:
        return None
    path = Path(raw)
    if not values_in_files:
        # prometheus-client chose where values live when it was imported, from the
        # process environment: a value read from .env alone comes too late.
        raise ConfigError(
            "PROMETHEUS_MULTIPROC_DIR must be set in the process environment (export it), "
            "not only in .env: prometheus-client reads it when it is imported"
        )
    if not path.is_dir():
        raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR={raw}: not a directory")
    return path


def _forget_dead_processes(path: Path) -> None:
    """Drop the live-gauge files of processes that died without saying so (killed): their
    sessions are not open any more."""
    for file in path.glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        if not _alive(pid):
            mark_process_dead(pid, str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
