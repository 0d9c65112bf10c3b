"""The session's socket: send, receive and close, with the transport's failures mapped.

Every way a client can be gone (a disconnect message, a close the server itself made, a
stream torn down under a send, a send after close) becomes one exception, `ClientGone`,
carrying the close code and the reason the session logs. Nothing else in the service
touches the Starlette `WebSocket`, so this is where frames and bytes are counted, and the
error messages sent (app/metrics).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import anyio
from starlette import status
from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from app.wire.outbound import ServerMessage, dumps

if TYPE_CHECKING:
    from app.metrics import Metrics

Frame = str | bytes

# The close reason when a client stops answering the server's pings (uvicorn's own words).
KEEPALIVE_TIMEOUT: Final = "keepalive ping timeout"
# The close reason when the server cuts a client that stopped reading (app/edge/transport.py).
SLOW_CLIENT: Final = "slow_client"

# Closes the server made before the app saw anything (uvicorn's WebSocket layer), by code.
_SERVER_CLOSES: Final = {
    status.WS_1012_SERVICE_RESTART: "server_shutdown",
    status.WS_1009_MESSAGE_TOO_BIG: "message_too_large",
    status.WS_1007_INVALID_FRAME_PAYLOAD_DATA: "invalid_utf8",
}


def disconnect_reason(code: int, reason: str = "") -> str:
    """What the session logs for a close it did not make."""
    if code == status.WS_1011_INTERNAL_ERROR and reason == KEEPALIVE_TIMEOUT:
        return "keepalive_timeout"
    if code == status.WS_1008_POLICY_VIOLATION and reason == SLOW_CLIENT:
        return SLOW_CLIENT
    return _SERVER_CLOSES.get(code, "client_disconnect")


class ClientGone(Exception):
    """The socket is closed: send nothing more."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.reason = disconnect_reason(code, reason)


class ClientConnection:
    __slots__ = ("_error_sent", "_receive", "_traffic", "_websocket")

    def __init__(self, websocket: WebSocket, metrics: Metrics) -> None:
        self._websocket = websocket
        self._receive = websocket.receive
        self._traffic = metrics.traffic
        self._error_sent = metrics.error_sent

    @property
    def query_params(self) -> QueryParams:
        return self._websocket.query_params

    async def accept(self, subprotocol: str | None = None) -> None:
        await self._websocket.accept(subprotocol)

    async def receive(self) -> Frame:
        """The next frame's data: bytes for a binary frame, str for a text frame."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            raise ClientGone(message.get("code", status.WS_1005_NO_STATUS_RCVD), message.get("reason") or "")
        self._traffic.frames_in += 1
        data: bytes | None = message.get("bytes")
        if data is not None:
            return data
        text: str = message.get("text") or ""
        return text

    async def send(self, frame: Frame) -> None:
        try:
            if isinstance(frame, str):
                await self._websocket.send_text(frame)
                # isascii() is O(1), and true for all but text with non-ASCII characters.
                size = len(frame) if frame.isascii() else len(frame.encode())
            else:
                await self._websocket.send_bytes(frame)
                size = len(frame)
        except _TRANSPORT_ERRORS as exc:
            raise self._gone(exc) from None
        traffic = self._traffic
        traffic.frames_out += 1
        traffic.bytes_out += size

    async def send_message(self, message: ServerMessage) -> None:
        if message["type"] == "error":  # counted as it goes, so a client that has it sees it counted
            self._error_sent(message["code"])
        await self.send(dumps(message))

    async def close(self, code: int) -> None:
        try:
            await self._websocket.close(code)
        except _TRANSPORT_ERRORS as exc:
            raise self._gone(exc) from None

    def _gone(self, exc: Exception) -> ClientGone:
        if isinstance(exc, WebSocketDisconnect):  # starlette turns the server's OSError into this
            return ClientGone(exc.code)
        # Starlette's "send once a close message has been sent" (a RuntimeError) means the
        # socket is already closed; any other RuntimeError is a bug and propagates.
        state = self._websocket.application_state
        if isinstance(exc, RuntimeError) and state is not WebSocketState.DISCONNECTED:
            raise exc
        return ClientGone(status.WS_1006_ABNORMAL_CLOSURE)  # or a transport's stream is gone


_TRANSPORT_ERRORS: Final = (
    WebSocketDisconnect,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    RuntimeError,
)
