"""What the service's own models (`echo`, `local`) share: fixed PCM16 rates, and an event
queue that `receive()` drains until `stop()` puts its sentinel in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Final

from strands.bidi.models import BidiModel
from strands.bidi.models.configs import AudioConfig
from strands.bidi.types.events import BidiConnectionStartEvent, BidiOutputEvent

STOP: Final = object()


def new_id() -> str:
    return uuid.uuid4().hex


class QueuedModel(BidiModel):
    def __init__(self, *, model_id: str, input_sample_rate: int, output_sample_rate: int) -> None:
        self._config: dict[str, Any] = {"model_id": model_id}
        self.input_sample_rate = input_sample_rate
        self.output_sample_rate = output_sample_rate
        self._events: asyncio.Queue[Any] | None = None
        self._connection_id = ""

    def get_config(self) -> dict[str, Any]:
        return self._config

    def update_config(self, **model_config: Any) -> None:
        self._config.update(model_config)

    def get_audio_config(self) -> AudioConfig:
        return {
            "input": {"sample_rate": self.input_sample_rate, "channels": 1, "format": "pcm"},
            "output": {"sample_rate": self.output_sample_rate, "channels": 1, "format": "pcm"},
        }

    def _open_events(self, size: int) -> None:
        # Bounded: when the client reads slowly, putting events waits, and that wait
        # reaches the session's input queues (backpressure, not unbounded buffering).
        self._events = asyncio.Queue(size)
        self._connection_id = new_id()

    def _close_events(self) -> bool:
        """Ends `receive()`; False when there was nothing to close (stop is idempotent)."""
        events, self._events = self._events, None
        if events is None:
            return False
        while not events.empty():  # make room so the sentinel never blocks
            events.get_nowait()
        events.put_nowait(STOP)
        return True

    async def _next(self, events: asyncio.Queue[Any]) -> Any:
        return await events.get()

    async def receive(self) -> AsyncGenerator[BidiOutputEvent, None]:
        events = self._events
        if events is None:
            raise RuntimeError(f"model {self.model_id} not started")
        yield BidiConnectionStartEvent(self._connection_id, self.model_id)
        while (item := await self._next(events)) is not STOP:
            if isinstance(item, BaseException):
                raise item
            yield item
