"""Speech recognition with pocketsphinx and the US English model its wheel carries.

Two kinds of decoder: a grammar decoder (a JSGF grammar of the phrases the rules brain
understands: fast, real-time factor ~0.03-0.08, ~60 MB) and a generic language-model
decoder for free speech (~0.2-0.3, ~90 MB). Decoders are expensive to build (0.1-0.3 s)
and not thread-safe, so each process keeps a small pool; an utterance borrows a decoder
from its first speech frame to its final hypothesis. Decoding runs in the pool's threads.

Dither is on: test and browser audio often holds runs of exact digital silence, whose
log energy otherwise upsets the decoder's live cepstral mean normalisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

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

    Each pool has its own worker threads (one per decoder), so recognition never waits
    behind unrelated work in the event loop's default executor.
    """

    def __init__(self, size: int, grammar: str | None = None) -> None:
        self.grammar = grammar
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="asr")
        self._size = size
        self._built = 0
        self._idle: list[Decoder] = []
        self._available = asyncio.Semaphore(size)
        self.closed = False

    def _build(self) -> Decoder:
        decoder = Decoder(_config(with_lm=self.grammar is None))
        if self.grammar is not None:
            decoder.add_jsgf_string(_GRAMMAR_SEARCH, self.grammar)
            decoder.activate_search(_GRAMMAR_SEARCH)
        return decoder

    def prewarm(self) -> None:
        """Build one decoder now (blocking), so the first utterance does not wait for it."""
        if self._built == 0:
            self._idle.append(self._build())
            self._built = 1

    async def acquire(self) -> Decoder:
        await self._available.acquire()
        if self._idle:
            return self._idle.pop()
        self._built += 1
        try:
            return await self.run(self._build)
        except BaseException:
            self._built -= 1
            self._available.release()
            raise

    def close(self) -> None:
        """At app shutdown: no new work; threads end once their current job does."""
        self.closed = True
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._idle.clear()

    def release(self, decoder: Decoder) -> None:
        self._idle.append(decoder)
        self._available.release()

    def run[R](self, fn: Callable[..., R], *args: object) -> asyncio.Future[R]:
        return asyncio.wrap_future(self.executor.submit(fn, *args))


def _words(hypothesis: object) -> str:
    text = getattr(hypothesis, "hypstr", "") if hypothesis is not None else ""
    return " ".join(str(text).split())


def _feed(decoder: Decoder, pcm: bytes) -> str:
    decoder.process_raw(pcm, False, False)
    return _words(decoder.hyp())


def _finish(decoder: Decoder) -> str:
    decoder.end_utt()
    return _words(decoder.hyp())


class Recognizer:
    """One session's utterances: `begin`, `feed` (partial text), `finish` (final text).

    Work on the borrowed decoder is chained: a job starts only after the previous one
    ended, even when the awaiting task was cancelled, so a decoder goes back to the pool
    only once its thread is done with it.
    """

    def __init__(self, pool: DecoderPool) -> None:
        self._pool = pool
        self._decoder: Decoder | None = None
        self._last: asyncio.Future[object] | None = None

    @property
    def active(self) -> bool:
        return self._decoder is not None

    async def _on_decoder[R](self, fn: Callable[..., R], *args: object) -> R:
        assert self._decoder is not None
        previous = self._last
        if previous is not None and not previous.done():
            await asyncio.shield(previous)
        future = self._pool.run(fn, self._decoder, *args)
        self._last = future  # type: ignore[assignment]
        return await asyncio.shield(future)

    async def begin(self) -> None:
        await self.cancel()
        self._decoder = await self._pool.acquire()
        await self._on_decoder(Decoder.start_utt)

    async def feed(self, pcm: bytes) -> str:
        if self._decoder is None:
            return ""
        return await self._on_decoder(_feed, pcm)

    async def finish(self) -> str:
        if self._decoder is None:
            return ""
        text = await self._on_decoder(_finish)
        self._give_back()
        return text

    async def cancel(self) -> None:
        """End any utterance in progress and return the decoder (safe to call at any time)."""
        if self._decoder is None:
            return
        decoder, pool, last = self._decoder, self._pool, self._last
        self._decoder, self._last = None, None

        def end_then_release(_: object = None) -> None:
            if pool.closed:  # the app shut down while the decoder was busy: let it go
                return
            done = pool.run(_end_quietly, decoder)
            done.add_done_callback(lambda _: pool.release(decoder))

        if last is not None and not last.done():
            last.add_done_callback(end_then_release)
        else:
            end_then_release()

    def _give_back(self) -> None:
        decoder, self._decoder, self._last = self._decoder, None, None
        if decoder is not None:
            self._pool.release(decoder)


def _end_quietly(decoder: Decoder) -> None:
    # An utterance that was never started or already ended: nothing to end.
    with contextlib.suppress(RuntimeError):
        decoder.end_utt()
