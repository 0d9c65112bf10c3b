"""The baseline of bench/load.py: a bare Starlette WebSocket echo that does only what any
relay of this protocol must, and nothing of ours (no edge checks, session, queues, agent
or model, no logging):

- a binary frame is received and sent back as it is;
- a JSON audio message is parsed (`json.loads`), its audio base64-decoded, then encoded
  again (base64, `json.dumps`) into the `audio` message our server sends, and sent back.

With `BASELINE_HOPS=N` (bench/floor.py), each frame is handed on N times, through a
bounded `asyncio.Queue` to a task of its own each time, before the last task sends the
reply: the task switches a relay through strands' `BidiAgent` cannot avoid (N=2: the
agent loop's model reader and our output relay), and nothing else of ours.

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

import asyncio
import base64
import itertools
import json
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message
from starlette.websockets import WebSocket

from app.config import load_settings
from app.serving import server_options

SESSION_START = json.dumps({"type": "session_start", "session_id": "baseline", "protocol": 1})


HOPS = int(os.environ.get("BASELINE_HOPS", "0"))
QUEUE_SIZE = 64


def answer(message: Message) -> bytes | str | None:
    """The reply to one frame: a binary frame as it is; a JSON audio message decoded and
    encoded again into our `audio` message; None for anything else (a relay would pass it
    on; the benchmark sends none)."""
    data: bytes | None = message.get("bytes")
    if data is not None:
        return data
    audio = json.loads(message["text"]).get("audio")
    if audio is None:
        return None
    pcm = base64.b64decode(audio)
    reply = {"type": "audio", "sample_rate": 16000, "format": "pcm16"}
    reply["audio"] = base64.b64encode(pcm).decode("ascii")
    return json.dumps(reply)


async def send(websocket: WebSocket, frame: bytes | str | None) -> None:
    if isinstance(frame, bytes):
        await websocket.send_bytes(frame)
    elif frame is not None:
        await websocket.send_text(frame)


async def hand_on(source: asyncio.Queue[Message], to: asyncio.Queue[Message]) -> None:
    while True:
        await to.put(await source.get())


async def answer_from(source: asyncio.Queue[Message], websocket: WebSocket) -> None:
    while True:
        await send(websocket, answer(await source.get()))


async def relay(websocket: WebSocket, hops: int) -> None:
    if not hops:  # the baseline proper: one task, no hand-off; `send` written out, as a
        # call to it would add a coroutine frame to every frame the baseline relays
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            frame = answer(message)
            if isinstance(frame, bytes):
                await websocket.send_bytes(frame)
            elif frame is not None:
                await websocket.send_text(frame)
        return
    queues: list[asyncio.Queue[Message]] = [asyncio.Queue(QUEUE_SIZE) for _ in range(hops)]
    async with asyncio.TaskGroup() as tasks:
        handers = [tasks.create_task(hand_on(a, b)) for a, b in itertools.pairwise(queues)]
        last = tasks.create_task(answer_from(queues[-1], websocket))
        while (message := await websocket.receive())["type"] != "websocket.disconnect":
            await queues[0].put(message)
        for task in (*handers, last):
            task.cancel()


def create_app(hops: int = HOPS) -> Starlette:
    open_sessions = 0

    async def echo(websocket: WebSocket) -> None:
        nonlocal open_sessions
        await websocket.accept()
        open_sessions += 1
        try:
            await websocket.send_text(SESSION_START)
            await relay(websocket, hops)
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
