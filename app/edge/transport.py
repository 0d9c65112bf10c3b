"""What one WebSocket connection may hold, and for how long: uvicorn's Sans-I/O WebSocket
protocol with the bounds it lacks for a client that stops reading.

What uvicorn 0.54's `websockets-sansio` does (its `wsproto` protocol is the same here):
an app's send waits while the transport's write buffer is over its high-water mark
(`pause_writing`), with no deadline, so a client that reads nothing holds its session's
relay, and so its model, for ever; a pong is written without waiting, so a client that
sends pings and reads nothing grows the buffer without limit (measured: 1 GB in 40 s);
and closing calls `transport.close()`, which waits for the buffer to drain, so such a
client keeps its socket, file descriptor and queued bytes, and a graceful shutdown waits
for it for ever. (The legacy `websockets` protocol drains after every write, pongs
included, but is deprecated.)

Here:
1. the high-water mark is MAX_OUTBOUND_BUFFER_BYTES, and so is the socket's send buffer
   in the kernel (Linux doubles it for its bookkeeping); over the mark the client is
   *behind*: reading stops as well (real TCP backpressure on its data and pings alike),
   and a ping read all the same (after a close) gets no pong;
2. a client behind for SLOW_CLIENT_TIMEOUT is cut: the app gets a disconnect (1008,
   `slow_client`), sends waiting for room raise `ClientGone`, a close frame is queued in
   case the client ever reads again, and the close deadline starts;
3. once the transport is closing, for whatever reason (our close, the client's, a
   keepalive timeout, shutdown, the app returning), it is aborted if still open
   CLOSE_TIMEOUT seconds later.

Timers are armed when the buffer crosses its mark or a close starts, never per frame; a
data frame with room to go costs one method call more than uvicorn's own `send`.

uvicorn builds a protocol per connection and passes it nothing of the app's, so the limits
(and the app's refusal counter) come through the ASGI lifespan state under `LIMITS_KEY`;
app/main.py puts them there. Without a lifespan, the defaults apply and refusals are only
logged.
"""

from __future__ import annotations

import asyncio
import socket
from asyncio import TimerHandle
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette import status
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.config import Settings
from app.edge.refusals import RefusalReason, Refusals
from app.wire.connection import SLOW_CLIENT, ClientGone

LIMITS_KEY: Final = "transport_limits"


@dataclass(frozen=True, slots=True)
class TransportLimits:
    handshake_timeout: float
    max_connections: int  # 0: unlimited
    slow_client_timeout: float
    max_outbound_buffer_bytes: int
    close_timeout: float
    refusals: Refusals = field(default_factory=Refusals)

    @classmethod
    def of(cls, settings: Settings, refusals: Refusals | None = None) -> TransportLimits:
        return cls(
            handshake_timeout=settings.handshake_timeout,
            max_connections=settings.max_connections,
            slow_client_timeout=settings.slow_client_timeout,
            max_outbound_buffer_bytes=settings.max_outbound_buffer_bytes,
            close_timeout=settings.close_timeout,
            refusals=refusals or Refusals(),
        )

    def refuse(self, reason: RefusalReason, detail: str) -> None:
        self.refusals.record(reason, detail)


DEFAULT_LIMITS: Final = TransportLimits.of(Settings())


def limits_of(app_state: Mapping[str, Any]) -> TransportLimits:
    """The app's limits from the lifespan state; the defaults where no lifespan ran."""
    limits = app_state.get(LIMITS_KEY)
    return limits if isinstance(limits, TransportLimits) else DEFAULT_LIMITS


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    # Per connection, set on the instance when they change (uvicorn's __init__ is kept).
    behind = False  # the write buffer is over its high-water mark
    lost = False
    cut: tuple[int, str] | None = None  # why we cut the client: what waiting sends raise
    slow_timer: TimerHandle | None = None
    abort_timer: TimerHandle | None = None

    @property
    def limits(self) -> TransportLimits:
        return limits_of(self.app_state)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limit = self.limits.max_outbound_buffer_bytes
        self.transport.set_write_buffer_limits(high=limit)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # The kernel's share too: left to autotuning, a socket's send buffer grows to
            # tcp_wmem's maximum (4 MB on Linux) for a client that reads nothing, and the
            # process sees no backpressure until that is full.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limit)
        self.transport = _CloseDeadline(self.transport, self._abort_later)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for timer in (self.slow_timer, self.abort_timer):
            if timer is not None:
                timer.cancel()
        self.slow_timer = self.abort_timer = None
        super().connection_lost(exc)

    # the client falling behind ----------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self.behind = True
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        if self.slow_timer is None:
            self.slow_timer = self.loop.call_later(self.limits.slow_client_timeout, self._slow_client)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.behind = False
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        # uvicorn's own, except that reading stays paused while the client is behind.
        message = await self.queue.get()
        if self.read_paused and self.queue.empty() and not self.behind:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def handle_ping(self) -> None:
        if self.behind:
            # It reads nothing of what it is owed already: no pong on top. Reading is
            # paused while behind, so this is only for what uvicorn reads after a close
            # (it reads on, for the client's close frame).
            self.conn.data_to_send()
            return
        super().handle_ping()

    def _slow_client(self) -> None:
        self.slow_timer = None
        if self.close_sent or not self.handshake_complete or self.transport.is_closing():
            return  # closing already: the close deadline applies
        code = status.WS_1008_POLICY_VIOLATION
        self.cut = (code, SLOW_CLIENT)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": SLOW_CLIENT})
        self.conn.send_close(code, SLOW_CLIENT)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # Sends waiting for room fail now (uvicorn raises ClientDisconnected, see `send`).
        self.disconnected = True
        self.writable.set()
        self._abort_later()

    def send(self, message: ASGISendEvent) -> Coroutine[Any, Any, None]:
        """A data frame with room to go (the hot path) is uvicorn's own send, which then
        completes without waiting, so nothing below can happen to it: no extra await."""
        if (
            message["type"] == "websocket.send"
            and self.cut is None
            and self.close_timer is None
            and self.writable.is_set()
        ):
            return super().send(message)
        return self._guarded_send(message)

    async def _guarded_send(self, message: ASGISendEvent) -> None:
        try:
            await super().send(message)
        except ClientDisconnected:
            if self.cut is None:
                raise
            # Not an OSError, so Starlette passes it through instead of making it a 1006.
            raise ClientGone(*self.cut) from None
        if self.close_timer is not None:  # the app has sent its close
            self._abort_later()
        elif not self.handshake_complete and _ends_denial(message):
            # A denial response (a handshake the gate refused) completes the handshake, but
            # uvicorn does not mark it so and logs "ASGI callable returned without completing
            # handshake." at ERROR for every refusal (Kludex/uvicorn#3138): a flood of refused
            # clients would page an operator. Relies on uvicorn's `handshake_complete`.
            self.handshake_complete = True

    # the close deadline -------------------------------------------------------------

    def _abort_later(self) -> None:
        if self.abort_timer is None and not self.lost:
            self.abort_timer = self.loop.call_later(self.limits.close_timeout, self._abort)

    def _abort(self) -> None:
        self.abort_timer = None
        if not self.lost:
            self.transport.abort()  # drops what is queued; connection_lost follows at once


def _ends_denial(message: ASGISendEvent) -> bool:
    return message["type"] == "websocket.http.response.body" and not message.get("more_body", False)


class _CloseDeadline(asyncio.Transport):
    """The connection's transport, except that `close()` also starts the close deadline:
    uvicorn closes in a dozen places, and each must end within CLOSE_TIMEOUT. Only what
    uvicorn's WebSocket protocol and this module call is passed through."""

    def __init__(self, transport: asyncio.Transport, on_close: Callable[[], None]) -> None:
        super().__init__()
        self._transport = transport
        self._on_close = on_close
        # The pass-throughs are the transport's own bound methods, set on the instance:
        # a write (once a frame) is then a direct call, not one through a Python method.
        self.write = transport.write  # type: ignore[method-assign]
        self.abort = transport.abort  # type: ignore[method-assign]
        self.is_closing = transport.is_closing  # type: ignore[method-assign]
        self.pause_reading = transport.pause_reading  # type: ignore[method-assign]
        self.resume_reading = transport.resume_reading  # type: ignore[method-assign]
        self.get_write_buffer_size = transport.get_write_buffer_size  # type: ignore[method-assign]

    def close(self) -> None:
        self._transport.close()
        self._on_close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)
