"""`LocalModel`: an offline speech-to-speech BidiModel that behaves on the wire like Nova Sonic.

    audio in ─> resample to 16 kHz ─> Endpointer ─> Recognizer ─> user transcript
                                                       │ final text
    text in ──────────────────────────────────────────┴─> Brain ─> tool calls (agent loop)
                                                                └─> sentences ─> Synthesizer ─> audio out

Each stage is its own module and can be replaced; the listening half (endpointing,
recognition, user transcripts) is `listener.Listener`. Audio is sent at most `audio_lead_s`
ahead of the playback it implies, so the server knows what the client is still playing:
when the user speaks while a reply is being produced or played, the reply is cut off
(`BidiBargeInEvent`, then the open streams are closed, as Nova Sonic does).

Tasks: strands calls `start()` and `stop()` from tasks of its own, maybe not the same
one, so no `async with` can span them. `start()` starts one owner task instead
(`local-model:owner`), whose task group holds the model's other tasks: the listener
(`local-model:listener`: endpointing, barge-in; it never waits for a decoder), the
recognition (`local-model:recognition`: a borrowed decoder, in threads; see `listener`
for how sessions share the decoders) and the current response (`local-model:response`:
brain, synthesis, paced audio), whose task handle is a cancel scope of its own: a
barge-in cancels that response alone and waits for it to end. `stop()` cancels the
group and waits, up to `stop_timeout`, for the owner to end. All cancelling goes through
anyio, never `Task.cancel()`, so a task still waits for the decoder thread it started
(see `recognizer`), and the recognition task hands its decoder back as it ends: once
`stop()` returns, no task of the model is left and no decoder is lent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio
from anyio import TaskHandle
from anyio.abc import TaskGroup
from strands.bidi.types import AudioDelta, BidiContentDelta, BidiMessage
from strands.bidi.types.events import (
    BidiAudioDeltaEvent,
    BidiAudioStartEvent,
    BidiAudioStopEvent,
    BidiBargeInEvent,
    BidiOutputEvent,
    BidiResponseStartEvent,
    BidiResponseStopEvent,
    BidiToolUseBlocksEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)
from strands.types.content import Message, Messages, TextBlock
from strands.types.tools import ToolResultBlock, ToolSpec, ToolUse

from app.audio import Resampler
from app.models.base import QueuedModel, new_id
from app.models.local.brain import Brain, CallTool, Say
from app.models.local.listener import Listener
from app.models.local.recognizer import Recognizer
from app.models.local.synthesizer import Synthesizer
from app.models.local.text import split_sentences

logger = logging.getLogger(__name__)

_RUNNING: Final = (TaskHandle.Status.PENDING, TaskHandle.Status.CANCELLING)


class LocalModel(QueuedModel):
    def __init__(
        self,
        *,
        brain: Brain,
        recognizer: Recognizer,
        synthesizer: Synthesizer,
        input_sample_rate: int = 16000,
        output_sample_rate: int = 24000,
        silence_ms: int = 500,
        max_utterance_s: float = 15.0,
        audio_lead_s: float = 1.0,
        chunk_ms: int = 100,
        history_limit: int = 200,
        queue_size: int = 64,
        stop_timeout: float = 2.0,
        model_id: str = "local",
    ) -> None:
        super().__init__(
            model_id=model_id, input_sample_rate=input_sample_rate, output_sample_rate=output_sample_rate
        )
        self.brain = brain
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.silence_ms = silence_ms
        self.max_utterance_s = max_utterance_s
        self.audio_lead_s = audio_lead_s
        self._chunk_bytes = output_sample_rate * chunk_ms // 1000 * 2
        self._history_limit = history_limit
        self._queue_size = queue_size
        self._stop_timeout = stop_timeout

    # BidiModel --------------------------------------------------------------

    async def start(
        self,
        system_prompt: str | None = None,
        tools: list[ToolSpec] | None = None,
        messages: Messages | None = None,
        **kwargs: Any,
    ) -> None:
        # Both bounded (backpressure, as in the session): audio waiting for the listener,
        # and events waiting for the agent's reader.
        self._open_events(self._queue_size)
        self._audio: asyncio.Queue[bytes] = asyncio.Queue(self._queue_size)
        self._system_prompt = system_prompt
        self._tools = list(tools or [])
        self._history: Messages = self._seed(messages or [])
        self._listener = Listener(
            recognizer=self.recognizer,
            audio=self._audio,
            input_sample_rate=self.input_sample_rate,
            silence_ms=self.silence_ms,
            max_utterance_s=self.max_utterance_s,
            emit=self._emit,
            user_speaks=self._user_speaks,
            user_turn=self._user_turn,
        )
        self._response: TaskHandle[None] | None = None
        self._turn_lock = asyncio.Lock()
        self._turn = 0
        self._pending_tools: set[str] = set()
        self._playback_end = 0.0
        # What the current response has open, so a barge-in can close it.
        self._response_id: str | None = None
        self._transcript_id: str | None = None
        self._audio_id: str | None = None
        self._spoken: list[str] = []
        self._tasks: TaskGroup | None = None
        self._ended = anyio.Event()
        ready = anyio.Event()
        # The group's host, held here (the loop keeps tasks only weakly) until stop() ends it.
        self._owner = asyncio.create_task(self._own(ready), name="local-model:owner")
        with anyio.CancelScope(shield=True):  # send() may start a response as soon as we return
            await ready.wait()

    async def _own(self, ready: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                self._tasks = tasks
                tasks.start_soon(self._guard, self._listener.listen, name="local-model:listener")
                tasks.start_soon(self._guard, self._listener.recognise, name="local-model:recognition")
                ready.set()
                await anyio.sleep_forever()  # until stop() cancels the group
        finally:
            self._ended.set()

    async def stop(self) -> None:
        if self._events is None:
            return
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        try:
            with anyio.move_on_after(self._stop_timeout) as waiting:
                await self._ended.wait()
            if waiting.cancelled_caught:
                logger.warning("local model did not stop within %.1fs", self._stop_timeout)
        finally:
            self._close_events()

    async def send(self, content: BidiMessage | BidiContentDelta) -> None:
        if self._events is None:
            raise RuntimeError("local model not started")
        if isinstance(content, AudioDelta):
            await self._audio.put(content.source["bytes"])
            return
        results = [b for b in content.content if isinstance(b, ToolResultBlock)]
        if results:
            await self._on_tool_results(results)
            return
        text = " ".join(b.text for b in content.content if isinstance(b, TextBlock)).strip()
        if text:
            await self._user_turn(text)

    # conversation ------------------------------------------------------------

    @staticmethod
    def _seed(messages: Messages) -> Messages:
        """Text of an earlier conversation (the agent replays it after a restart)."""
        seeded: Messages = []
        for message in messages:
            texts = [c["text"] for c in message["content"] if "text" in c]
            if texts and message["role"] in ("user", "assistant"):
                seeded.append({"role": message["role"], "content": [{"text": " ".join(texts)}]})
        return seeded

    def _remember(self, message: Message) -> None:
        history = self._history
        history.append(message)
        if len(history) > self._history_limit:
            del history[: len(history) - self._history_limit]
            # Start at a user's own words, never at an orphaned tool result.
            while history and not (history[0]["role"] == "user" and "text" in history[0]["content"][0]):
                history.pop(0)

    def _speaking(self) -> bool:
        producing = self._response is not None and self._response.status in _RUNNING
        return producing or time.monotonic() < self._playback_end

    def _start_response(self) -> None:
        assert self._tasks is not None  # set before start() returns
        self._response = self._tasks.start_soon(self._guard, self._produce, name="local-model:response")

    async def _user_speaks(self) -> None:
        # Checked on every chunk of the user's speech, not only as an utterance starts, so
        # the reply to the first part of an utterance cut at its bound does not talk over
        # the rest. Never waits for a turn being started (that may wait for a reply to
        # finish, and the listener must not): the next chunk checks again.
        if self._speaking() and not self._turn_lock.locked():
            async with self._turn_lock:
                await self._barge_in()

    async def _user_turn(self, text: str) -> None:
        # Typed text (the input pump) and an end of speech (the recognition task) both
        # start turns; one at a time: a new turn barges in on the running one, never runs
        # beside it.
        async with self._turn_lock:
            if self._speaking():
                await self._barge_in()
            if self._pending_tools:  # interrupted mid tool call: keep the history well formed
                self._remember(
                    {
                        "role": "user",
                        "content": [
                            {
                                "toolResult": {
                                    "toolUseId": i,
                                    "status": "error",
                                    "content": [{"text": "interrupted"}],
                                }
                            }
                            for i in sorted(self._pending_tools)
                        ],
                    }
                )
                self._pending_tools.clear()
            self._turn += 1
            self._remember({"role": "user", "content": [{"text": text}]})
            self._start_response()

    async def _on_tool_results(self, results: list[ToolResultBlock]) -> None:
        async with self._turn_lock:
            ours = [r for r in results if r.tool_use_id in self._pending_tools]
            if not ours:
                return  # results for a turn the user already interrupted
            self._remember({"role": "user", "content": [dict(r.to_dict()) for r in ours]})  # type: ignore[misc]
            self._pending_tools.difference_update(r.tool_use_id for r in ours)
            if not self._pending_tools:
                if self._response is not None:  # the response that asked for them: let it finish
                    await self._response.wait()
                self._start_response()

    async def _emit(self, event: BidiOutputEvent) -> None:
        if self._events is not None:  # None only once stop() gave up waiting for a task
            await self._events.put(event)

    async def _fail(self, exc: BaseException) -> None:
        logger.error("local model failed: %s: %s", type(exc).__name__, exc)
        if self._events is not None:
            await self._events.put(exc)

    async def _guard(self, part: Callable[[], Awaitable[None]]) -> None:
        """One of the model's tasks: its failure is the model's."""
        try:
            await part()
        except Exception as exc:  # cancellation is no Exception: it goes on up
            await self._fail(exc)

    # response ------------------------------------------------------------------

    async def _produce(self) -> None:
        self._response_id = new_id()
        self._spoken = []
        await self._emit(BidiResponseStartEvent(self._response_id))
        to_client = Resampler(self.synthesizer.sample_rate, self.output_sample_rate)
        calls: list[CallTool] = []
        buffer = ""
        replies = self.brain.respond(list(self._history), self._tools, self._system_prompt)
        async with contextlib.aclosing(replies):  # type: ignore[type-var]
            async for event in replies:
                if isinstance(event, Say):
                    sentences, buffer = split_sentences(buffer + event.text, final=False)
                    for sentence in sentences:
                        await self._speak(sentence, to_client)
                else:
                    calls.append(event)
        sentences, _ = split_sentences(buffer, final=True)
        for sentence in sentences:
            await self._speak(sentence, to_client)
        await self._close_streams(to_client.flush())
        content: list[Any] = [{"text": " ".join(self._spoken)}] if self._spoken else []
        uses: list[ToolUse] = [{"toolUseId": c.tool_use_id, "name": c.name, "input": c.input} for c in calls]
        content += [{"toolUse": use} for use in uses]
        if content:
            self._remember({"role": "assistant", "content": content})
        self._spoken = []
        if uses:
            self._pending_tools = {use["toolUseId"] for use in uses}
            await self._emit(BidiToolUseBlocksEvent(uses))
        response_id, self._response_id = self._response_id, None
        await self._emit(BidiResponseStopEvent(response_id))

    async def _speak(self, sentence: str, to_client: Resampler) -> None:
        if self._transcript_id is None:
            self._transcript_id = new_id()
            await self._emit(BidiTranscriptStartEvent("assistant", self._transcript_id))
            delta = sentence
        else:
            delta = " " + sentence
        pcm = to_client(await self.synthesizer.synthesize(sentence))
        await self._emit(BidiTranscriptDeltaEvent(delta, "assistant", self._transcript_id))
        self._spoken.append(sentence)
        await self._play(pcm)

    async def _play(self, pcm: bytes) -> None:
        if not pcm:
            return
        if self._audio_id is None:
            self._audio_id = new_id()
            await self._emit(BidiAudioStartEvent(self._audio_id))
        step, rate = self._chunk_bytes, self.output_sample_rate
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            now = time.monotonic()
            ahead = self._playback_end - now
            if ahead > self.audio_lead_s:  # pace: stay at most audio_lead_s ahead of playback
                await anyio.sleep(ahead - self.audio_lead_s)
                now = time.monotonic()
            self._playback_end = max(now, self._playback_end) + len(chunk) / 2 / rate
            audio = base64.b64encode(chunk).decode("ascii")
            await self._emit(BidiAudioDeltaEvent(audio, "pcm", rate, 1, self._audio_id))

    async def _close_streams(self, tail: bytes = b"") -> None:
        if tail:
            await self._play(tail)
        if self._transcript_id is not None:
            transcript_id, self._transcript_id = self._transcript_id, None
            await self._emit(BidiTranscriptStopEvent("assistant", transcript_id))
        if self._audio_id is not None:
            audio_id, self._audio_id = self._audio_id, None
            await self._emit(BidiAudioStopEvent(audio_id))

    async def _barge_in(self) -> None:
        if self._response is not None:  # no effect on one that has ended
            self._response.cancel()
            await self._response.wait()
        self._playback_end = 0.0
        await self._emit(BidiBargeInEvent())
        await self._close_streams()
        if self._spoken:
            self._remember({"role": "assistant", "content": [{"text": " ".join(self._spoken)}]})
            self._spoken = []
        if self._response_id is not None:
            response_id, self._response_id = self._response_id, None
            await self._emit(BidiResponseStopEvent(response_id))
