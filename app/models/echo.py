"""`echo`: a cloud-free BidiModel for diagnostics, client development and load tests.

It speaks the same event shapes as Nova Sonic. Text comes back as an assistant
transcript; audio comes straight back as assistant audio at the output rate; and
`/tool NAME {json}` asks for that tool through the agent's normal tool loop, then says
the result. An audio reply stays open while audio keeps arriving and closes after
`audio_idle_s` of silence, as a turn would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from base64 import b64encode
from collections.abc import AsyncGenerator
from typing import Any

from strands.bidi.models import BidiModel
from strands.bidi.models.configs import AudioConfig
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
from strands.types.tools import ToolResultBlock, ToolSpec

from app.audio import Resampler

_STOP = object()


def _new_id() -> str:
    return uuid.uuid4().hex


class EchoModel(BidiModel):
    def __init__(
        self,
        *,
        model_id: str = "echo",
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        queue_size: int = 64,
        audio_idle_s: float = 0.5,
    ) -> None:
        self._config: dict[str, Any] = {"model_id": model_id}
        self.input_sample_rate = input_sample_rate
        self.output_sample_rate = output_sample_rate
        self._queue_size = queue_size
        self._audio_idle_s = audio_idle_s
        self._events: asyncio.Queue[Any] | None = None
        self._tool_names: dict[str, str] = {}
        self._audio_id: str | None = None  # content id of the open audio reply, if any
        self._audio_response_id = ""
        self._resampler = Resampler(input_sample_rate, output_sample_rate)

    def get_config(self) -> dict[str, Any]:
        return self._config

    def update_config(self, **model_config: Any) -> None:
        self._config.update(model_config)

    def get_audio_config(self) -> AudioConfig:
        return {
            "input": {"sample_rate": self.input_sample_rate, "channels": 1, "format": "pcm"},
            "output": {"sample_rate": self.output_sample_rate, "channels": 1, "format": "pcm"},
        }

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Any = None,
        **kwargs: Any,
    ) -> None:
        # Bounded: when the client reads slowly, send() waits, and that wait reaches the
        # session's input queues (backpressure rather than unbounded buffering).
        self._events = asyncio.Queue(self._queue_size)
        self._connection_id = _new_id()

    async def stop(self) -> None:
        events, self._events = self._events, None
        if events is None:
            return
        while not events.empty():  # make room so the sentinel never blocks
            events.get_nowait()
        events.put_nowait(_STOP)

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        events = self._events
        if events is None:
            raise RuntimeError("echo model not started")
        yield BidiConnectionStartEvent(self._connection_id, self.model_id)
        while True:
            if self._audio_id is None:
                item = await events.get()
            else:
                try:
                    async with asyncio.timeout(self._audio_idle_s):
                        item = await events.get()
                except TimeoutError:
                    for event in self._close_audio():
                        yield event
                    continue
            if item is _STOP:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        events = self._events
        if events is None:
            raise RuntimeError("echo model not started")
        if isinstance(content, AudioDelta):
            await self._echo_audio(events, content.source["bytes"])
            return
        blocks = content.content
        if blocks and isinstance(blocks[0], ToolResultBlock):
            for result in blocks:
                assert isinstance(result, ToolResultBlock)
                await self._say_tool_result(events, result)
            return
        text = "\n".join(b.text for b in blocks if isinstance(b, TextBlock))
        for event in self._close_audio():
            await events.put(event)
        if text.startswith("/tool "):
            await self._request_tool(events, text.removeprefix("/tool ").strip())
        else:
            await self._say(events, text)

    async def _echo_audio(self, events: asyncio.Queue[Any], pcm: bytes) -> None:
        if self._audio_id is None:
            self._audio_response_id, self._audio_id = _new_id(), _new_id()
            await events.put(BidiResponseStartEvent(self._audio_response_id))
            await events.put(BidiAudioStartEvent(self._audio_id))
        out = self._resampler(pcm)
        if out:
            audio = b64encode(out).decode("ascii")
            await events.put(BidiAudioDeltaEvent(audio, "pcm", self.output_sample_rate, 1, self._audio_id))

    def _close_audio(self) -> list[BidiOutputEvent]:
        if self._audio_id is None:
            return []
        content_id, self._audio_id = self._audio_id, None
        return [BidiAudioStopEvent(content_id), BidiResponseStopEvent(self._audio_response_id)]

    async def _say(self, events: asyncio.Queue[Any], text: str) -> None:
        response_id, content_id = _new_id(), _new_id()
        await events.put(BidiResponseStartEvent(response_id))
        await events.put(BidiTranscriptStartEvent("assistant", content_id))
        await events.put(BidiTranscriptDeltaEvent(text, "assistant", content_id))
        await events.put(BidiTranscriptStopEvent("assistant", content_id))
        await events.put(BidiResponseStopEvent(response_id))

    async def _request_tool(self, events: asyncio.Queue[Any], command: str) -> None:
        name, _, raw_input = command.partition(" ")
        try:
            tool_input = json.loads(raw_input) if raw_input.strip() else {}
        except ValueError:
            await self._say(events, f"I could not read the input for {name}: it is not valid JSON.")
            return
        if not isinstance(tool_input, dict):
            await self._say(events, f"The input for {name} must be a JSON object.")
            return
        response_id, tool_use_id = _new_id(), f"tooluse_{_new_id()[:16]}"
        self._tool_names[tool_use_id] = name
        await events.put(BidiResponseStartEvent(response_id))
        await events.put(
            BidiToolUseBlocksEvent([{"toolUseId": tool_use_id, "name": name, "input": tool_input}])
        )
        await events.put(BidiResponseStopEvent(response_id))

    async def _say_tool_result(self, events: asyncio.Queue[Any], result: ToolResultBlock) -> None:
        name = self._tool_names.pop(result.tool_use_id, "the tool")
        text = " ".join(str(part.get("text", part.get("json", ""))) for part in result.content)
        if result.status == "success":
            await self._say(events, f"{name} says: {text}")
        else:
            await self._say(events, f"{name} failed: {text}")
