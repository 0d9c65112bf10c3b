"""Speech heard and not yet recognised: the bounded buffer between listening and recognition.

The listener (endpointing) never waits for a decoder: it appends each utterance's speech
here, and the recognition task takes it as fast as its decoder allows. Normally that is
at once (a grammar decoder runs 10-30x faster than real time) and the backlog stays
near empty; it fills while the session waits its turn for a decoder, all of them being
busy with other sessions' utterances.

It holds at most `limit` bytes, one utterance at its longest (MAX_UTTERANCE_SECONDS).
When it is full the listener waits for room (backpressure), but never longer than that
bound: an utterance that started that long ago and still waits for a decoder is dropped
to make room, with a warning in the log. Only a session that waits for a decoder, and
speaks more than a bound's worth meanwhile, loses speech (its oldest); a client sending
faster than real time just waits for its own decoding, and other sessions' use of the
decoders never stalls this session's input for longer than one bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import anyio

logger = logging.getLogger(__name__)

_BYTES_PER_SECOND: Final = 16000 * 2


@dataclass(slots=True)
class _Utterance:
    started: float  # time.monotonic() of its first speech
    chunks: deque[bytes] = field(default_factory=deque)  # speech not taken yet
    size: int = 0  # bytes in `chunks`
    ended: bool = False


class Backlog:
    def __init__(self, limit: int, max_wait: float) -> None:
        self._limit = limit
        self._max_wait = max_wait
        self._utterances: deque[_Utterance] = deque()
        self._size = 0
        self._decoding = False
        # Pulsed (set, then cleared) on every change: wakes whoever waits for one.
        self._changed = asyncio.Event()

    @property
    def size(self) -> int:
        """Bytes of speech waiting."""
        return self._size

    # the listener's side ------------------------------------------------------------

    def start(self) -> None:
        """An utterance starts (the previous one has ended)."""
        self._utterances.append(_Utterance(time.monotonic()))
        self._pulse()

    async def add(self, speech: bytes) -> None:
        """Speech of the utterance started last."""
        while self._size + len(speech) > self._limit and len(self._utterances) > 1:
            if self._decoding:  # room comes as the recognition task takes speech
                await self._changed.wait()
                continue
            waited = time.monotonic() - self._utterances[0].started  # complete: only the last is open
            if waited >= self._max_wait:
                self._drop_oldest(waited)
                continue
            with anyio.move_on_after(self._max_wait - waited):  # a decoder, or the oldest too old
                await self._changed.wait()
        utterance = self._utterances[-1]
        utterance.chunks.append(speech)
        utterance.size += len(speech)
        self._size += len(speech)
        self._pulse()

    def end(self) -> None:
        """The utterance started last has ended."""
        self._utterances[-1].ended = True
        self._pulse()

    # the recognition task's side ---------------------------------------------------------

    async def wait(self) -> None:
        """Until there is an utterance to recognise."""
        while not self._utterances:
            await self._changed.wait()

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """While the recognition task holds a decoder (the listener then waits, never drops)."""
        self._decoding = True
        self._pulse()
        try:
            yield
        finally:
            self._decoding = False
            self._pulse()

    async def take(self) -> bytes | None:
        """The oldest utterance's next chunk of speech (waits for one); None once it has
        ended and all of it was taken: it is then gone, and the next is the oldest.

        Chunk by chunk, as the endpointer gave them, even when catching up: the partial
        transcripts come from the hypotheses after each."""
        while True:
            utterance = self._utterances[0]
            if utterance.chunks:
                speech = utterance.chunks.popleft()
                utterance.size -= len(speech)
                self._size -= len(speech)
                self._pulse()
                return speech
            if utterance.ended:
                self._utterances.popleft()
                self._pulse()
                return None
            await self._changed.wait()

    # ------------------------------------------------------------------------------------

    def _drop_oldest(self, waited: float) -> None:
        utterance = self._utterances.popleft()
        self._size -= utterance.size
        self._pulse()
        logger.warning(
            "no speech decoder free for %.1fs (all LOCAL_ASR_DECODERS busy): dropped %.1fs of speech",
            waited,
            utterance.size / _BYTES_PER_SECOND,
        )

    def _pulse(self) -> None:
        self._changed.set()
        self._changed.clear()
