"""The local model's listening half: the user's audio in, user transcripts and turns out.

    audio ─> listener: resample, endpoint, barge-in ─> Backlog ─> recognition: decoder,
                                                                   transcripts, turn

Two tasks in the model's task group (`local-model:listener`, `local-model:recognition`),
so that waiting for a speech decoder never stalls the session's input:

- the listener takes audio as it comes, finds utterances (`Endpointer`), interrupts a
  reply the user speaks over, and puts each utterance's speech in the `Backlog`; it
  never waits for a decoder;
- the recognition task borrows a decoder per utterance (`Recognizer`), feeds it what the
  backlog holds, shows partial transcripts, and at the utterance's end sends the final
  transcript and hands the turn to the brain.

Sharing LOCAL_ASR_DECODERS decoders between more sessions than that:
- an utterance is bounded: it ends at MAX_UTTERANCE_SECONDS of speech, or that long
  after it started by the clock (a client sending audio slower than real time), so every
  decoder comes back within the bound, whatever a client sends (noise never ends on
  its own);
- decoders go to sessions in the order they asked (the pool's semaphore is FIFO): a
  session that ends an utterance and starts the next queues behind those already
  waiting, so with k sessions waiting for D busy decoders, each waits at most about
  ceil(k / D) bounds, one while no more sessions speak than there are decoders;
- while a session waits its turn, its speech waits in its backlog (bounded, see
  `backlog`) and is decoded when the decoder comes, 10-30x faster than real time: late,
  never lost unless the user says more than one bound's worth while waiting.

An utterance ends after END_OF_SPEECH_MS of silence, at the bound, or after twice
END_OF_SPEECH_MS with no audio at all: the end of the audio is the end of the speech, for
a client that sent a recording faster than real time and stopped, or a push-to-talk
button released (the endpointer alone would wait for silence that never comes). Twice,
so that a pause in delivery (a network hiccup, a server busy for a moment) is not taken
for the end of the speech.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

import anyio
from strands.bidi.types.events import (
    BidiOutputEvent,
    BidiTranscriptDeltaEvent,
    BidiTranscriptStartEvent,
    BidiTranscriptStopEvent,
)

from app.audio import Resampler
from app.models.base import new_id
from app.models.local.backlog import Backlog
from app.models.local.endpointer import SAMPLE_RATE as ASR_RATE
from app.models.local.endpointer import Endpointer, Mark
from app.models.local.recognizer import Recognizer
from app.models.local.text import common_prefix, unshown_words

logger = logging.getLogger(__name__)

_AGREEING: Final = 5  # partial hypotheses that must agree on a word before it is shown
_UNSETTLED_TAIL: Final = 2  # newest words of a partial hypothesis never shown
_LONG_WAIT_S: Final = 1.0  # a wait for a decoder worth a line in the log


class Listener:
    def __init__(
        self,
        *,
        recognizer: Recognizer,
        audio: asyncio.Queue[bytes],
        input_sample_rate: int,
        silence_ms: int,
        max_utterance_s: float,
        emit: Callable[[BidiOutputEvent], Awaitable[None]],
        user_speaks: Callable[[], Awaitable[None]],
        user_turn: Callable[[str], Awaitable[None]],
    ) -> None:
        self.recognizer = recognizer
        self._audio = audio
        self._to_asr = Resampler(input_sample_rate, ASR_RATE)
        self._endpointer = Endpointer(silence_ms, max_utterance_s)
        self._backlog = Backlog(int(max_utterance_s * ASR_RATE) * 2, max_wait=max_utterance_s)
        self._no_audio_s = 2 * silence_ms / 1000
        self._max_utterance_s = max_utterance_s
        self._emit = emit
        self._user_speaks = user_speaks
        self._user_turn = user_turn
        # The utterance being recognised.
        self._user_id: str | None = None
        self._user_words: list[str] = []
        self._last_hypotheses: list[list[str]] = []

    # local-model:listener --------------------------------------------------------------

    async def listen(self) -> None:
        endpointer, backlog = self._endpointer, self._backlog
        started = 0.0
        while True:
            pcm = await self._next_audio()
            events = endpointer.flush() if pcm is None else endpointer.feed(self._to_asr(pcm))
            for mark, speech in events:
                if mark is Mark.SPEECH:
                    await self._user_speaks()
                    await backlog.add(speech)
                elif mark is Mark.START:
                    started = time.monotonic()
                    await self._user_speaks()
                    backlog.start()
                else:
                    backlog.end()
            # The bound by the clock too: a decoder is lent for at most that long.
            if endpointer.in_utterance and time.monotonic() - started >= self._max_utterance_s:
                endpointer.cut()
                backlog.end()

    async def _next_audio(self) -> bytes | None:
        """The next chunk of audio; None when, in speech, none came for twice END_OF_SPEECH_MS."""
        try:
            return self._audio.get_nowait()  # no timer while audio is waiting
        except asyncio.QueueEmpty:
            pass
        if not self._endpointer.in_speech:
            return await self._audio.get()
        with anyio.move_on_after(self._no_audio_s):
            return await self._audio.get()
        return None

    # local-model:recognition -------------------------------------------------------------

    async def recognise(self) -> None:
        backlog, recognizer = self._backlog, self.recognizer
        try:
            while True:
                await backlog.wait()
                asked = time.monotonic()
                await recognizer.begin()  # a decoder, in the order the sessions asked
                waited = time.monotonic() - asked
                if waited >= _LONG_WAIT_S:
                    logger.info("all speech decoders were busy: an utterance waited %.1fs for one", waited)
                self._user_id, self._user_words, self._last_hypotheses = None, [], []
                with backlog.decoding():
                    while (speech := await backlog.take()) is not None:
                        await self._hear(speech)
                    text = await recognizer.finish()
                await self._utterance_ended(text)
        finally:  # no thread still uses the decoder: this task waited for its jobs
            await recognizer.cancel()

    async def _hear(self, speech: bytes) -> None:
        if not self.recognizer.active:
            return
        words = (await self.recognizer.feed(speech)).split()
        # Show only words the last few hypotheses agree on, never the newest ones:
        # partial hypotheses keep revising their tail (and, early on, their head).
        recent = [*self._last_hypotheses[-(_AGREEING - 1) :], words]
        self._last_hypotheses = recent
        if len(recent) < _AGREEING:
            return
        agreed = min(common_prefix(recent[0], r) for r in recent[1:])
        stable = words[: min(agreed, len(words) - _UNSETTLED_TAIL)]
        if len(stable) > len(self._user_words) and stable[: len(self._user_words)] == self._user_words:
            await self._user_delta(stable[len(self._user_words) :])

    async def _user_delta(self, words: list[str]) -> None:
        if not words:
            return
        if self._user_id is None:
            self._user_id = new_id()
            await self._emit(BidiTranscriptStartEvent("user", self._user_id))
        delta = (" " if self._user_words else "") + " ".join(words)
        self._user_words += words
        await self._emit(BidiTranscriptDeltaEvent(delta, "user", self._user_id))

    async def _utterance_ended(self, text: str) -> None:
        # Transcript deltas cannot take words back: the final transcript is what was shown
        # plus the rest of the final hypothesis. The brain gets the final hypothesis itself,
        # or, when the decoder ends with none, the words the user was shown as final: an
        # utterance shown to the user is always answered.
        await self._user_delta(unshown_words(self._user_words, text.split()))
        if self._user_id is not None:
            user_id, self._user_id = self._user_id, None
            await self._emit(BidiTranscriptStopEvent("user", user_id))
        said = text or " ".join(self._user_words)
        if said:
            await self._user_turn(said)
