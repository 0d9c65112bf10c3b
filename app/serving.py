"""How uvicorn serves the app's WebSockets: the implementation, frame limit, keepalive,
and the proxies whose X-Forwarded-For it trusts (FORWARDED_ALLOW_IPS).

`python -m app` passes `websocket_options(settings)` to uvicorn; a deployment that runs
uvicorn itself should pass the same (see docs/protocol.md).

The implementation is websockets' Sans-I/O protocol, pinned rather than "auto" (which
picks by what is installed): it refuses a frame over `ws_max_size` from its header,
before reading the payload, and bounds decompression by the same limit; wsproto reads
the frame in and inflates compressed data without a bound before uvicorn counts it.
"""

from __future__ import annotations

from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from app.config import Settings
from app.wire.connection import KEEPALIVE_TIMEOUT


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's protocol, except that a keepalive timeout reaches the app as what it is.

    uvicorn answers a missed pong by closing the transport, and the app then receives the
    same disconnect (1005, no reason) as for any dropped connection. This puts the close
    uvicorn sends (1011, "keepalive ping timeout") in the app's queue first. It relies on
    uvicorn's `keepalive_timeout`, `close_sent`, `transport` and `queue`, checked by
    tests/integration/test_session_ends.py against the installed uvicorn.

    It also keeps a refused handshake from being logged as an error (see `send`).
    """

    def keepalive_timeout(self) -> None:
        if not (self.close_sent or self.transport.is_closing()):
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011, "reason": KEEPALIVE_TIMEOUT})
        super().keepalive_timeout()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        # A denial response (a handshake the gate refused) completes the handshake, but
        # uvicorn does not mark it so and logs "ASGI callable returned without completing
        # handshake." at ERROR for every refusal (Kludex/uvicorn#3138): a flood of refused
        # clients would page an operator. Relies on uvicorn's `handshake_complete`.
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


def websocket_options(settings: Settings) -> dict[str, Any]:
    """MAX_MESSAGE_BYTES acts at the WebSocket layer: a larger frame is refused with 1009
    before it is buffered, and never reaches the app (whose own check then never fires)."""
    return {
        "ws": WebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        # The client address in logs (uvicorn's access lines) from these proxies' X-Forwarded-For.
        "proxy_headers": True,
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
    }
