"""An input feed (app/feed.py) on its own: what the reader's `put` costs when the feed is
idle, the order of items when a send suspends, and that nothing outlives the pump.
The session-level behaviour (order over a real socket, the stall) is in
tests/integration/test_websocket_flows.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from app.feed import Feed, InputStalled

pytestmark = pytest.mark.anyio


class Sink:
    """A `send` that records items; while `gate` is clear, sends wait for it."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()  # set when a send is held at the gate
        self.cancelled: list[int] = []

    async def send(self, item: int) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled.append(item)
                raise
        self.sent.append(item)


@asynccontextmanager
async def pumping(size: int, stall_timeout: float = 1.0) -> AsyncIterator[tuple[Feed[int], Sink]]:
    """A feed with its pump running, whose sends wait at the sink's gate until the test
    opens it; the pump is ended (cancelled) when the block ends."""
    sink = Sink()
    feed = Feed[int]("test:send", size, stall_timeout, sink.send)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(feed.pump)
        sink.gate.clear()
        yield feed, sink
        tasks.cancel_scope.cancel()


def feed_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("test:")}


async def test_an_idle_feed_sends_within_put_and_queues_nothing() -> None:
    sink = Sink()
    feed = Feed[int]("test:send", 4, 1.0, sink.send)
    for item in range(3):
        await feed.put(item)
        assert sink.sent == list(range(item + 1))  # sent before put returned: no task switch
    assert feed.queue.qsize() == 0
    assert not feed_tasks()


async def test_items_after_a_suspended_send_wait_their_turn_without_holding_the_reader() -> None:
    async with pumping(8) as (feed, sink):
        with anyio.fail_after(1):
            for item in range(5):
                await feed.put(item)  # returns at once: 0 is in flight, the rest queued
        assert sink.sent == []
        assert {t.get_name() for t in feed_tasks()} == {"test:send"}  # the in-flight send
        sink.gate.set()
        with anyio.fail_after(1):
            await feed.join()
        assert sink.sent == [0, 1, 2, 3, 4]
        await feed.put(5)  # idle again: sent at once
        assert sink.sent[-1] == 5


async def test_ending_the_pump_cancels_a_send_in_flight_and_waits_for_it() -> None:
    async with pumping(4) as (feed, sink):
        await feed.put(7)
        with anyio.fail_after(1):
            await sink.waiting.wait()
    assert sink.cancelled == [7]
    assert not feed_tasks()


async def test_a_full_queue_behind_a_stuck_send_stalls_the_reader_after_the_timeout() -> None:
    async with pumping(1, stall_timeout=0.2) as (feed, sink):
        await feed.put(0)  # in flight, stuck
        await feed.put(1)  # queued; the pump takes it and waits behind 0
        await anyio.wait_all_tasks_blocked()  # the pump has taken 1
        assert feed.queue.qsize() == 0
        await feed.put(2)  # queued: the queue is now full
        with anyio.fail_after(2), pytest.raises(InputStalled):
            await feed.put(3)
    assert sink.sent == []
    assert not feed_tasks()


async def test_a_bug_in_send_propagates_to_the_reader() -> None:
    async def broken(item: int) -> None:
        raise KeyError(item)

    feed = Feed[int]("test:send", 4, 1.0, broken)
    with pytest.raises(KeyError):
        await feed.put(1)
