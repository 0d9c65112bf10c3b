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
from base64 import b64encode
from typing import Any

from strands.bidi.types import AudioDelta, BidiContentDelta, BidiMessage
from strands.bidi.types.events import (
    BidiAudioDeltaEvent,
    BidiAudioStartEvent,
    BidiAudioStopEvent,
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
from app.config import Settings
from app.models import ModelProvider
from app.models.base import QueuedModel, new_id


class EchoModel(QueuedModel):
    def __init__(
        self,
        *,
        model_id: str = "echo",
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        queue_size: int = 64,
        audio_idle_s: float = 0.5,
    ) -> None:
        super().__init__(
            model_id=model_id, input_sample_rate=input_sample_rate, output_sample_rate=output_sample_rate
        )
        self._queue_size = queue_size
        self._audio_idle_s = audio_idle_s
        self._tool_names: dict[str, str] = {}
        self._audio_id: str | None = None  # content id of the open audio reply, if any
        self._audio_response_id = ""
        self._resampler = Resampler(input_sample_rate, output_sample_rate)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_audio = 0.0  # loop time of the latest audio frame
        self._putting = 0  # audio frames waiting for room in the event queue

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Any = None,
        **kwargs: Any,
    ) -> None:
        self._open_events(self._queue_size)

    async def stop(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._close_events()

    def _watch_idle(self) -> None:
        """The idle timer of an open audio reply: one timer a reply, re-armed while audio
        keeps arriving (each frame only stamps the time), not a timeout a frame."""
        self._idle_timer = None
        events = self._events
        if self._audio_id is None or events is None:
            return
        loop = asyncio.get_running_loop()
        due = self._last_audio + self._audio_idle_s
        if loop.time() < due:  # audio came since: look again when it would be silence
            self._idle_timer = loop.call_at(due, self._watch_idle)
            return
        # A frame still being put (the queue was full) is audio arriving, not silence; and
        # the two closing events must fit behind what is queued.
        if self._putting or events.maxsize - events.qsize() < 2:
            self._idle_timer = loop.call_later(self._audio_idle_s / 4, self._watch_idle)
            return
        for event in self._close_audio():
            events.put_nowait(event)

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
        loop = asyncio.get_running_loop()
        self._last_audio = loop.time()
        if self._audio_id is None:
            self._audio_response_id, self._audio_id = new_id(), new_id()
            await events.put(BidiResponseStartEvent(self._audio_response_id))
            await events.put(BidiAudioStartEvent(self._audio_id))
            if self._idle_timer is None:
                self._idle_timer = loop.call_at(self._last_audio + self._audio_idle_s, self._watch_idle)
        out = self._resampler(pcm)
        if out:
            event = BidiAudioDeltaEvent(
                b64encode(out).decode("ascii"), "pcm", self.output_sample_rate, 1, self._audio_id
            )
            if events.full():
                self._putting += 1
                try:
                    await events.put(event)
                finally:
                    self._putting -= 1
            else:
                events.put_nowait(event)

    def _close_audio(self) -> list[BidiOutputEvent]:
        if self._audio_id is None:
            return []
        content_id, self._audio_id = self._audio_id, None
        return [BidiAudioStopEvent(content_id), BidiResponseStopEvent(self._audio_response_id)]

    async def _say(self, events: asyncio.Queue[Any], text: str) -> None:
        response_id, content_id = new_id(), new_id()
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
        response_id, tool_use_id = new_id(), f"tooluse_{new_id()[:16]}"
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


def echo_provider(settings: Settings) -> ModelProvider:
    def build() -> EchoModel:
        return EchoModel(
            model_id=settings.model_id or "echo",
            input_sample_rate=settings.input_sample_rate,
            output_sample_rate=settings.output_sample_rate,
            queue_size=settings.audio_queue_size,
        )

    return ModelProvider("echo", build)
