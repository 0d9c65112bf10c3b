"""Client input on its way to the model: one bounded queue and the task that empties it.

The session has two feeds, audio and text. The socket reader `put`s into a feed; the
feed's `pump` task hands each item to the agent (`agent.send`) in order. When the model
cannot keep up, the queue fills and `put` waits, so the socket is read no faster than
the model takes input (TCP backpressure, nothing dropped); a model that takes nothing
for `stall_timeout` seconds raises `InputStalled`, and the session ends.

The hot path: a frame that finds the feed idle (nothing queued, nothing being sent) is
not queued at all. Its send starts at once, in a task started eagerly (`eager_start`):
the send runs inside `put` up to its first suspension, and nearly every audio send
completes without one, so no task switch, no future and no queue operation is spent on
it. A send that does suspend goes on as that task, owned by the feed: items that arrive
meanwhile are queued and the pump sends them after it, so the order is the reader's,
and the reader is never held up by one slow send. The queue, its bound and the stall
timeout behave as if every item had been queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

logger = logging.getLogger(__name__)


class InputStalled(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


type Send[T] = Callable[[T], Coroutine[Any, Any, None]]


class Feed[T]:
    """`send` must not raise (it reports a failure itself); it may be cancelled."""

    __slots__ = ("_busy", "_in_flight", "_loop", "_name", "_send", "_stall_timeout", "queue")

    def __init__(self, name: str, size: int, stall_timeout: float, send: Send[T]) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue(size)
        self._loop = asyncio.get_running_loop()
        self._name = name  # the eager send's task name
        self._stall_timeout = stall_timeout
        self._send = send
        self._in_flight: asyncio.Task[None] | None = None  # a started send that suspended
        self._busy = False  # the pump holds an item it has not finished sending

    @property
    def idle(self) -> bool:
        in_flight = self._in_flight
        return not self._busy and (in_flight is None or in_flight.done()) and self.queue.empty()

    async def put(self, item: T) -> None:
        """The reader's: hand `item` on, waiting while the queue is full."""
        if self.idle:
            task = asyncio.Task(self._send(item), loop=self._loop, name=self._name, eager_start=True)
            if task.done():
                self._in_flight = None  # an earlier, finished one is not kept either
                task.result()  # a bug in `send` propagates here
            else:
                self._in_flight = task
            return
        queue = self.queue
        if not queue.full():
            queue.put_nowait(item)
            return
        # Backpressure: stop reading the socket until the model takes input again, but
        # not forever: a model that stalls must not hold a dead connection open.
        with anyio.move_on_after(self._stall_timeout):
            await queue.put(item)
            return
        raise InputStalled(self._stall_timeout)

    async def pump(self) -> None:
        """The task that sends what was queued; on its way out (the session ending) it
        cancels a send still in flight and waits for it."""
        queue = self.queue
        try:
            while True:
                item = await queue.get()
                self._busy = True
                try:
                    if (in_flight := self._in_flight) is not None:
                        await asyncio.wait((in_flight,))  # the earlier item goes first
                        self._in_flight = None
                        in_flight.result()
                    await self._send(item)
                finally:
                    self._busy = False
                    queue.task_done()
        finally:
            await self._cancel_in_flight()

    async def join(self) -> None:
        """Until everything put so far has been sent."""
        if (in_flight := self._in_flight) is not None:
            await asyncio.wait((in_flight,))
        await self.queue.join()

    async def _cancel_in_flight(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None or in_flight.done():
            return
        in_flight.cancel()
        with anyio.move_on_after(self._stall_timeout, shield=True):
            await asyncio.wait((in_flight,))
        if not in_flight.done():
            logger.warning("an input send did not end within %.1fs of being cancelled", self._stall_timeout)
