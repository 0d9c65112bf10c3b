"""The baseline of bench/load.py: a bare Starlette WebSocket echo that does only what any
relay of this protocol must, and nothing of ours (no edge checks, session, queues, agent
or model, no logging):

- a binary frame is received and sent back as it is;
- a JSON audio message is parsed (`json.loads`), its audio base64-decoded, then encoded
  again (base64, `json.dumps`) into the `audio` message our server sends, and sent back.

On connect it sends a `session_start` text message, so set-up time is measured to the
same point as for our server. /health reports the open sessions, which bench/load.py
waits to fall to 0 between steps.

    HOST=127.0.0.1 PORT=8090 .venv/bin/python -m bench.baseline

It runs under the same uvicorn as `python -m app`: the same event loop (uvloop), HTTP
parser (httptools), WebSocket implementation (websockets' Sans-I/O) and limits
(`app.serving.server_options`: frame size, keepalive), but with uvicorn's own protocol
classes rather than ours: app/edge/'s subclasses (handshake timeout, connection limit,
outbound-buffer bound) are part of what our server adds, so the ratio counts them.
"""

from __future__ import annotations

import base64
import json
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from app.config import load_settings
from app.serving import server_options

SESSION_START = json.dumps({"type": "session_start", "session_id": "baseline", "protocol": 1})


def create_app() -> Starlette:
    open_sessions = 0

    async def echo(websocket: WebSocket) -> None:
        nonlocal open_sessions
        await websocket.accept()
        open_sessions += 1
        try:
            await websocket.send_text(SESSION_START)
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is not None:
                    await websocket.send_bytes(data)
                    continue
                audio = json.loads(message["text"]).get("audio")
                if audio is None:  # not audio: a relay would pass it on; the benchmark sends none
                    continue
                pcm = base64.b64decode(audio)
                reply = {"type": "audio", "sample_rate": 16000, "format": "pcm16"}
                reply["audio"] = base64.b64encode(pcm).decode("ascii")
                await websocket.send_text(json.dumps(reply))
        finally:
            open_sessions -= 1

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "sessions": open_sessions})

    return Starlette(routes=[WebSocketRoute("/ws", echo), Route("/health", health)])


def main() -> None:
    settings = load_settings()
    options = server_options(settings) | {"http": "httptools", "ws": "websockets-sansio"}
    uvicorn.run(
        create_app(),
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8090")),
        log_level="warning",
        access_log=False,
        **options,
    )


if __name__ == "__main__":
    main()
