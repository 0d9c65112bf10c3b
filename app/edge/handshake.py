"""Connections that never become requests: a deadline for the request headers (so for
the WebSocket handshake), and a cap on the connections open at once.

uvicorn (0.54, httptools and h11 alike) arms its keep-alive timeout only once a response
is done, so a connection that sends nothing, or its headers a byte at a time, is held
for ever (measured: 300 of them, all held). Its `limit_concurrency` does not cover this:
it is checked when a request's headers are complete, a WebSocket upgrade skips it
altogether, and it counts running tasks as well as connections.

So, in uvicorn's httptools protocol (what "auto" picks; `uvicorn[standard]` installs it):
- HANDSHAKE_TIMEOUT runs from the TCP accept (and, on a kept-alive connection, from the
  first byte of each later request) to the end of the request headers; then the client
  gets a 408 and the connection is closed. What follows the headers of a WebSocket
  upgrade is the app's to do (the gate, then the accept), not the client's to stall.
- A connection beyond MAX_CONNECTIONS (HTTP and WebSocket connections together, this one
  included) gets a 503 and is closed before anything is read.
Both are refusals, counted and logged through the app's `Refusals` (app/edge/transport.py
says how the protocol finds it).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.edge.transport import TransportLimits, limits_of


def _response(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


REQUEST_TIMEOUT: Final = _response(b"408 Request Timeout")
SERVICE_UNAVAILABLE: Final = _response(b"503 Service Unavailable")


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timer: TimerHandle | None = None  # per connection, set on the instance

    @property
    def limits(self) -> TransportLimits:
        return limits_of(self.app_state)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limits.max_connections
        if limit and len(self.connections) > limit:
            self.limits.refuse("connection_limit", f"MAX_CONNECTIONS={limit} connections open")
            transport.write(SERVICE_UNAVAILABLE)
            transport.close()
            return
        self._start_header_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_clock()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_timer is None:  # a later request on a kept-alive connection
            self._start_header_clock()

    def on_headers_complete(self) -> None:
        self._stop_header_clock()
        super().on_headers_complete()

    def _start_header_clock(self) -> None:
        self.header_timer = self.loop.call_later(self.limits.handshake_timeout, self._header_timeout)

    def _stop_header_clock(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        timeout = self.limits.handshake_timeout
        self.limits.refuse("handshake_timeout", f"no complete request headers within {timeout:g} s")
        self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
