"""Speech recognition with pocketsphinx and the US English model its wheel carries.

Two kinds of decoder: a grammar decoder (a JSGF grammar of the phrases the rules brain
understands: fast, real-time factor ~0.03-0.08, ~60 MB) and a generic language-model
decoder for free speech (~0.2-0.3, ~90 MB). Decoders are expensive to build (0.1-0.3 s)
and not thread-safe, so each process keeps a small pool; an utterance borrows a decoder
from its first speech frame to its final hypothesis (which the listener bounds).

Decoding runs in anyio's worker threads (`to_thread.run_sync`), at most one per decoder
(the pool's `CapacityLimiter`). run_sync does not abandon its thread when the awaiting
task is cancelled through anyio: the task waits for the job to end, so a decoder goes
back to the pool only once no thread uses it. The hand-back does no work in a thread
(the next borrower ends an utterance left open), so it is a list append that a closed
pool cannot fail, and it needs no deadline of its own: it waits for nothing but the job
in progress. (`Task.cancel()` from outside anyio does abandon the thread: the model's
tasks are cancelled through their task group, never that way.)

Dither is on: test and browser audio often holds runs of exact digital silence, whose
log energy otherwise upsets the decoder's live cepstral mean normalisation.

That normalisation learns the channel from each utterance and carries it to the next one
on the same decoder, but a pooled decoder's next utterance may be another session's: after
15 s of one session's noise, the next session's clear question decodes as nothing at all.
So the cepstral mean belongs to the session (`Recognizer`): each borrow starts from the
session's own (a fresh decoder's at first) and each final hypothesis takes it back.

How sessions share the pool (bounded utterances, the order of the waiting, speech kept
while waiting) is in `listener`. Note that pocketsphinx keeps the GIL while it decodes:
the threads keep decoding off the event loop's code path, but each job holds the loop for
its duration (about 1 ms per 30 ms of speech), which is why speech is fed in small chunks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Final

import anyio
import anyio.to_thread
from pocketsphinx import Config, Decoder, get_model_path

logger = logging.getLogger(__name__)

SAMPLE_RATE: Final = 16000
_GRAMMAR_SEARCH: Final = "phrases"


def _config(with_lm: bool) -> Config:
    model = get_model_path()
    config = Config(
        hmm=os.path.join(model, "en-us", "en-us"),
        dict=os.path.join(model, "en-us", "cmudict-en-us.dict"),
        samprate=SAMPLE_RATE,
        dither=True,
        # "Final result does not match the grammar" is logged as an ERROR for every
        # utterance outside the grammar: expected here, and it would flood stderr.
        loglevel="FATAL",
    )
    if with_lm:
        config["lm"] = os.path.join(model, "en-us", "en-us.lm.bin")
    else:
        config["lm"] = None
    return config


class DecoderPool:
    """At most `size` decoders of one kind, built on first need and reused.

    The pool's own limiter bounds its threads, so recognition never waits behind
    unrelated work holding anyio's default thread limiter.
    """

    def __init__(self, size: int, grammar: str | None = None) -> None:
        self.grammar = grammar
        self.limiter = anyio.CapacityLimiter(size)
        self._size = size
        self._built = 0
        self._idle: list[Decoder] = []
        self._available = anyio.Semaphore(size)  # FIFO: waiters get decoders in turn
        self.fresh_cmn = ""  # a new decoder's cepstral mean, once one is built
        self.closed = False

    @property
    def lent(self) -> int:
        """Decoders borrowed and not handed back yet."""
        return self._size - self._available.value

    def _build(self) -> Decoder:
        decoder = Decoder(_config(with_lm=self.grammar is None))
        if self.grammar is not None:
            decoder.add_jsgf_string(_GRAMMAR_SEARCH, self.grammar)
            decoder.activate_search(_GRAMMAR_SEARCH)
        return decoder

    def prewarm(self) -> None:
        """Build one decoder now (blocking), so the first utterance does not wait for it."""
        if self._built == 0:
            self._idle.append(self._new(self._build()))
            self._built = 1

    async def acquire(self) -> Decoder:
        await self._available.acquire()
        try:
            if self._idle:
                return self._idle.pop()
            decoder = self._new(await self.run(self._build))
        except BaseException:
            self._available.release()
            raise
        self._built += 1
        return decoder

    def _new(self, decoder: Decoder) -> Decoder:
        self.fresh_cmn = self.fresh_cmn or decoder.get_cmn()
        return decoder

    def release(self, decoder: Decoder) -> None:
        if not self.closed:  # after close, a decoder handed back is let go
            self._idle.append(decoder)
        self._available.release()

    async def run[R](self, fn: Callable[..., R], *args: object) -> R:
        """`fn(*args)` in a worker thread; a cancelled caller still waits for it to end."""
        if self.closed:
            raise RuntimeError("decoder pool closed")
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def close(self) -> None:
        """At app shutdown: no new work; decoders still lent are let go when handed back."""
        self.closed = True
        self._idle.clear()


def _words(hypothesis: object) -> str:
    text = getattr(hypothesis, "hypstr", "") if hypothesis is not None else ""
    return " ".join(str(text).split())


def _start(decoder: Decoder, cmn: str) -> None:
    # A decoder handed back mid-utterance (a cancelled session) ends it here, in a
    # thread of its next borrower, so a hand-back never needs a thread of its own.
    with contextlib.suppress(RuntimeError):  # no utterance in progress: nothing to end
        decoder.end_utt()
    decoder.set_cmn(cmn)  # this session's channel, not the last borrower's
    decoder.start_utt()


def _feed(decoder: Decoder, pcm: bytes) -> str:
    decoder.process_raw(pcm, False, False)
    return _words(decoder.hyp())


def _finish(decoder: Decoder) -> tuple[str, str]:
    decoder.end_utt()
    return _words(decoder.hyp()), decoder.get_cmn()


class Recognizer:
    """One session's utterances: `begin`, `feed` (partial text), `finish` (final text).

    Jobs on the borrowed decoder run one at a time (`_busy`), and each holds `_busy` until
    its thread is done, even when its task is cancelled: so `finish` and `cancel`, which
    take `_busy` before handing the decoder back, never return one a thread still uses.
    """

    def __init__(self, pool: DecoderPool) -> None:
        self._pool = pool
        self._decoder: Decoder | None = None
        self._cmn = ""  # this session's cepstral mean, from its last utterance
        self._busy = anyio.Lock(fast_acquire=True)  # no yield per frame when free

    @property
    def active(self) -> bool:
        return self._decoder is not None

    async def begin(self) -> None:
        await self.cancel()
        self._decoder = await self._pool.acquire()
        await self._job(_start, self._cmn or self._pool.fresh_cmn)

    async def feed(self, pcm: bytes) -> str:
        return await self._job(_feed, pcm) or ""

    async def finish(self) -> str:
        ended = await self._job(_finish, give_back=True)
        if ended is None:
            return ""
        text, self._cmn = ended
        return text

    async def cancel(self) -> None:
        """Drop any utterance in progress and return the decoder (safe to call at any time)."""
        # Shielded: the caller is often being cancelled; the wait is for at most the
        # decoder's current job, which its own task waits for anyway.
        with anyio.CancelScope(shield=True):
            async with self._busy:
                self._give_back()

    async def _job[R](self, fn: Callable[..., R], *args: object, give_back: bool = False) -> R | None:
        async with self._busy:
            if self._decoder is None:  # no utterance, or cancelled meanwhile
                return None
            try:
                return await self._pool.run(fn, self._decoder, *args)
            finally:
                if give_back:
                    self._give_back()

    def _give_back(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            self._pool.release(decoder)
