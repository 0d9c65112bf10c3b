"""Test doubles and helpers: a scripted `BidiModel` and WebSocket conveniences.

`ScriptedModel` is a real BidiModel subclass driven through the real `BidiAgent` loop:
- text "calculate EXPR" asks for the calculator tool, then says the result aloud;
- text "use NAME {json}" asks for any tool with that input;
- text "fail" makes receive() raise (a model failure);
- text "hang" answers, then never takes audio again (a stalled model);
- text "stream" starts a reply that keeps producing audio until stopped;
- any other text is answered with "You said: TEXT" (transcript and audio);
- audio is recorded and answered with a user transcript and the same audio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import wsproto.events
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from httpx_ws.transport import ASGIWebSocketTransport
from starlette.applications import Starlette
from strands.bidi.models import BidiModel
from strands.bidi.types import AudioDelta, BidiContentDelta, BidiMessage
from strands.bidi.types.events import (
    BidiAudioDeltaEvent,
    BidiAudioStartEvent,
    BidiAudioStopEvent,
    BidiConnectionStartEvent,
    BidiOutputEvent,
    BidiResponseStartEvent,
    BidiResponseStopEvent,
    BidiToolUseBlocksEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)
from strands.types.content import TextBlock
from strands.types.tools import ToolResultBlock

from app.models import ModelProvider

_STOP = object()


def tone(samples: int, value: int = 1000) -> bytes:
    """A constant PCM16 signal (a square-ish test tone is not needed; level is enough)."""
    return value.to_bytes(2, "little", signed=True) * samples


class ScriptedModel(BidiModel):
    def __init__(self, input_rate: int = 16000, output_rate: int = 16000) -> None:
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.audio_in = bytearray()
        self.texts: list[str] = []
        self.tool_results: list[ToolResultBlock] = []
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.stop_calls = 0
        self.hang = False
        self._queue: asyncio.Queue[Any] | None = None
        self._streamer: asyncio.Task[None] | None = None

    def get_config(self) -> dict[str, Any]:
        return {"model_id": "scripted"}

    def update_config(self, **kwargs: Any) -> None:
        pass

    def get_audio_config(self) -> Any:
        pcm = {"channels": 1, "format": "pcm"}
        return {
            "input": {"sample_rate": self.input_rate, **pcm},
            "output": {"sample_rate": self.output_rate, **pcm},
        }

    async def start(
        self, system_prompt: Any = None, tools: Any = None, messages: Any = None, **kw: Any
    ) -> None:
        self._queue = asyncio.Queue()
        self.started.set()

    async def stop(self) -> None:
        self.stop_calls += 1
        if self._streamer is not None:
            self._streamer.cancel()
        if self._queue is not None:
            self._queue.put_nowait(_STOP)
        self.stopped.set()

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        assert self._queue is not None
        yield BidiConnectionStartEvent("conn-1", "scripted")
        while (item := await self._queue.get()) is not _STOP:
            if isinstance(item, Exception):
                raise item
            yield item

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        assert self._queue is not None
        if isinstance(content, AudioDelta):
            if self.hang:
                await asyncio.Event().wait()  # never takes this audio; cancelled at stop
            pcm = content.source["bytes"]
            self.audio_in += pcm
            self._say(None, pcm, transcript_role="user", transcript=f"{len(pcm)} bytes")
            return
        first = content.content[0]
        if isinstance(first, ToolResultBlock):
            self.tool_results.append(first)
            text = first.content[0].get("text", "")
            self._say(f"The answer is {text}.", tone(1600))
            return
        text = " ".join(b.text for b in content.content if isinstance(b, TextBlock))
        self.texts.append(text)
        if text == "hang":
            self.hang = True
            self._say("hanging", b"")
        elif text == "fail":
            self._queue.put_nowait(RuntimeError("scripted model failure"))
        elif text == "stream":
            self._streamer = asyncio.create_task(self._stream())
        elif text.startswith(("calculate ", "use ")):
            rid = uuid.uuid4().hex
            if text.startswith("calculate "):
                name, tool_input = "calculator", {"expression": text[10:]}
            else:
                name, _, raw = text[4:].partition(" ")
                tool_input = json.loads(raw)
            tool_use = {"toolUseId": f"t-{rid[:8]}", "name": name, "input": tool_input}
            self._queue.put_nowait(BidiResponseStartEvent(rid))
            self._queue.put_nowait(BidiToolUseBlocksEvent([tool_use]))  # type: ignore[list-item]
            self._queue.put_nowait(BidiResponseStopEvent(rid))
        else:
            self._say(f"You said: {text}", tone(1600))

    def _say(
        self, text: str | None, pcm: bytes, transcript_role: str = "assistant", transcript: str = ""
    ) -> None:
        assert self._queue is not None
        q, rid, cid = self._queue, uuid.uuid4().hex, uuid.uuid4().hex
        q.put_nowait(BidiResponseStartEvent(rid))
        spoken = text if text is not None else transcript
        role: Any = "assistant" if text is not None else transcript_role
        q.put_nowait(BidiTranscriptStartEvent(role, cid))
        half = len(spoken) // 2
        q.put_nowait(BidiTranscriptDeltaEvent(spoken[:half], role, cid))
        q.put_nowait(BidiTranscriptDeltaEvent(spoken[half:], role, cid))
        q.put_nowait(BidiTranscriptStopEvent(role, cid))
        aid = uuid.uuid4().hex
        q.put_nowait(BidiAudioStartEvent(aid))
        q.put_nowait(BidiAudioDeltaEvent(base64.b64encode(pcm).decode(), "pcm", self.output_rate, 1, aid))
        q.put_nowait(BidiAudioStopEvent(aid))
        q.put_nowait(BidiResponseStopEvent(rid))

    async def _stream(self) -> None:
        assert self._queue is not None
        rid, aid = uuid.uuid4().hex, uuid.uuid4().hex
        await self._queue.put(BidiResponseStartEvent(rid))
        await self._queue.put(BidiAudioStartEvent(aid))
        chunk = base64.b64encode(tone(320)).decode()
        while True:
            await self._queue.put(BidiAudioDeltaEvent(chunk, "pcm", self.output_rate, 1, aid))
            await asyncio.sleep(0.005)


class ScriptedProvider:
    """A `ModelProvider` whose models the test can inspect afterwards."""

    def __init__(self, **model_kwargs: Any) -> None:
        self.models: list[ScriptedModel] = []
        self._kwargs = model_kwargs

    def build(self) -> BidiModel:
        model = ScriptedModel(**self._kwargs)
        self.models.append(model)
        return model

    def provider(self) -> ModelProvider:
        return ModelProvider("scripted", self.build)

    @property
    def model(self) -> ScriptedModel:
        return self.models[-1]


@asynccontextmanager
async def connect(app: Starlette, query: str = "") -> AsyncIterator[AsyncWebSocketSession]:
    url = "ws://test/ws" + (f"?{query}" if query else "")
    async with (
        httpx.AsyncClient(transport=ASGIWebSocketTransport(app), base_url="http://test") as client,
        aconnect_ws(url, client) as ws,
    ):
        yield ws


async def receive_json(ws: AsyncWebSocketSession, timeout: float = 5.0) -> dict[str, Any]:
    message = await ws.receive_text(timeout=timeout)
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def receive_until(
    ws: AsyncWebSocketSession, kind: str, timeout: float = 5.0, **match: Any
) -> list[Any]:
    """Messages up to and including the first of `type` `kind` (and matching fields).
    Binary frames appear in the list as bytes."""
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while True:
            event = await ws.receive()
            data = getattr(event, "data", None)
            item = json.loads(data) if isinstance(data, str) else data
            seen.append(item)
            if (
                isinstance(item, dict)
                and item.get("type") == kind
                and all(item.get(k) == v for k, v in match.items())
            ):
                return seen


async def send_close(ws: AsyncWebSocketSession, code: int) -> None:
    """Send a close frame with `code`; leaving the `connect` block then ends the stream.
    (httpx-ws's own close() races its background reader when called inside the block.)"""
    await ws.send(wsproto.events.CloseConnection(code=code))


class FakeOpenWeatherMap:
    """An httpx mock transport answering like OpenWeatherMap's current-weather API."""

    def __init__(self, description: str = "clear sky", temp: float = 21.0, humidity: int = 40) -> None:
        self.requests: list[httpx.Request] = []
        self.body = {
            "name": "Paris",
            "sys": {"country": "FR"},
            "weather": [{"description": description}],
            "main": {"temp": temp, "feels_like": temp - 1, "humidity": humidity},
            "wind": {"speed": 2.0},
        }
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body)


def of_type(messages: list[Any], kind: str) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict) and m.get("type") == kind]


def gone(pid: int) -> bool:
    """Whether no process (not even an unreaped zombie) has this id."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False
