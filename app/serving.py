"""How uvicorn serves the app: its HTTP and WebSocket protocols, frame limit, keepalive,
and the proxies whose X-Forwarded-For it trusts (FORWARDED_ALLOW_IPS).

`python -m app` passes `server_options(settings)` to uvicorn; a deployment that runs
uvicorn itself should pass the same (see docs/protocol.md).

The WebSocket implementation is websockets' Sans-I/O protocol, pinned rather than "auto"
(which picks by what is installed): it refuses a frame over `ws_max_size` from its
header, before reading the payload, and bounds decompression by the same limit; wsproto
reads the frame in and inflates compressed data without a bound before uvicorn counts it.
Both protocols are subclassed for the edge's transport limits (app/edge/handshake.py,
app/edge/transport.py), which reach them through the app's lifespan state.
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.drain import drain_of
from app.edge.handshake import GuardedHttpProtocol
from app.edge.transport import GuardedWebSocketProtocol
from app.wire.connection import KEEPALIVE_TIMEOUT


class WebSocketProtocol(GuardedWebSocketProtocol):
    """The edge's protocol, except that a keepalive timeout reaches the app as what it is,
    and a server shutting down lets the session say goodbye.

    uvicorn answers a missed pong by closing the transport, and the app then receives the
    same disconnect (1005, no reason) as for any dropped connection. This puts the close
    uvicorn sends (1011, "keepalive ping timeout") in the app's queue first. It relies on
    uvicorn's `keepalive_timeout`, `close_sent`, `transport` and `queue`, checked by
    tests/integration/test_session_ends.py against the installed uvicorn.

    On shutdown uvicorn calls `shutdown()` on every connection, and its own sends a bare
    close 1012 at once: the client never gets the `connection_close` the protocol
    promises. Here a session is told to close now instead (app/drain.py), and sends
    `connection_close` (`server_shutdown`) before its 1012; the close deadline bounds the
    rest. Under `python -m app` the drain has run before this (app/server.py), so only a
    server without it (uvicorn run directly) gets here with sessions still open. uvicorn's
    own path stays for what is not a session: a handshake in progress (500), a close
    already under way, and a client that reads nothing (behind: no goodbye reaches it).
    """

    def keepalive_timeout(self) -> None:
        if not (self.close_sent or self.transport.is_closing()):
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011, "reason": KEEPALIVE_TIMEOUT})
        super().keepalive_timeout()

    def shutdown(self) -> None:
        drain = drain_of(self.app_state)
        if drain is None or not self.handshake_complete or self.close_sent or self.behind or self.lost:
            super().shutdown()
            return
        drain.close_now()  # every session at once; idempotent, called once per connection


def server_options(settings: Settings) -> dict[str, Any]:
    """MAX_MESSAGE_BYTES acts at the WebSocket layer: a larger frame is refused with 1009
    before it is buffered, and never reaches the app (whose own check then never fires).
    The classes are module-level, not built per settings: `--reload` pickles them into its
    worker process."""
    return {
        "http": GuardedHttpProtocol,
        "ws": WebSocketProtocol,
        "ws_max_size": settings.max_message_bytes,
        "ws_ping_interval": settings.ws_ping_interval,
        "ws_ping_timeout": settings.ws_ping_timeout,
        # The client address in logs (uvicorn's access lines) from these proxies' X-Forwarded-For.
        "proxy_headers": True,
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
    }
