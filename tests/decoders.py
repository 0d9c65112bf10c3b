"""Decoder pools a test can watch: real pocketsphinx grammar decoders throughout.

`WatchedPool` lets a test wait for a state of the pool (`await pool.until(...)`), say
until every decoder is lent, and records how long each borrower waited (`waits`).

`HeldPool`'s `process_raw` waits (in the
decoder's thread) until the test sets `go`: so a test knows a session is mid-recognition,
and can stop it, or close the pool, right then. The pool also records every decoder
handed back while a thread was still inside it (`early`), which must never happen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
from pocketsphinx import Decoder

from app.models.local.recognizer import DecoderPool, _config
from app.models.local.rules import RulesBrain

_HOLD_S = 30.0  # a test that never sets `go` fails instead of hanging its thread


class HeldDecoder(Decoder):  # type: ignore[misc]
    pool: HeldPool

    def process_raw(self, data: bytes, no_search: bool = False, full_utt: bool = False) -> Any:
        pool = self.pool
        pool.in_job.add(id(self))
        try:
            pool.loop.call_soon_threadsafe(pool.feeding.set)
            if not pool.go.wait(_HOLD_S):
                raise TimeoutError("the test never let the decoder go on")
            return super().process_raw(data, no_search, full_utt)
        finally:
            pool.in_job.discard(id(self))


class HeldPool(DecoderPool):
    def __init__(self, size: int) -> None:
        super().__init__(size, grammar=RulesBrain().grammar())
        self.loop = asyncio.get_running_loop()
        self.feeding = anyio.Event()  # a thread has started to feed a decoder
        self.go = threading.Event()  # held feeds may go on
        self.in_job: set[int] = set()  # decoders a thread is inside now (changed from threads)
        self.early: list[Decoder] = []

    def _build(self) -> Decoder:
        decoder = HeldDecoder(_config(with_lm=False))
        decoder.pool = self
        decoder.add_jsgf_string("held", self.grammar)
        decoder.activate_search("held")
        return decoder

    def release(self, decoder: Decoder) -> None:
        if id(decoder) in self.in_job:
            self.early.append(decoder)
        super().release(decoder)


class WatchedPool(DecoderPool):
    def __init__(self, size: int) -> None:
        super().__init__(size, grammar=RulesBrain().grammar())
        self._changed = asyncio.Event()  # pulsed whenever a decoder is lent or handed back
        self.waits: list[float] = []  # seconds each borrower waited for its decoder

    async def acquire(self) -> Decoder:
        asked = time.monotonic()
        decoder = await super().acquire()
        self.waits.append(time.monotonic() - asked)
        self._pulse()
        return decoder

    def release(self, decoder: Decoder) -> None:
        super().release(decoder)
        self._pulse()

    async def until(self, condition: Callable[[DecoderPool], bool], timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not condition(self):
                await self._changed.wait()

    def _pulse(self) -> None:
        self._changed.set()
        self._changed.clear()
