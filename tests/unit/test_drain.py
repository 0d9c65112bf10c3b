"""The drain's two state machines (app/drain.py): when a session's turn is over (`Turn`),
and how the process-wide `Drain` tells its sessions and bounds its waits. Sessions here
are stand-ins that record what they are told; the real ones are in
tests/integration/test_drain.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from app.drain import TURN_EVENTS, Drain, Turn

pytestmark = pytest.mark.anyio


def event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}


START = event("bidi_response_start", response_id="r")
STOP = event("bidi_response_stop", response_id="r")


def tool_use(*ids: str) -> tuple[str, dict[str, Any]]:
    return event("bidi_tool_use_blocks", tool_uses=[{"toolUseId": i, "name": "t", "input": {}} for i in ids])


def tool_result(tool_use_id: str) -> tuple[str, dict[str, Any]]:
    return event("tool_result", tool_result={"toolUseId": tool_use_id, "status": "success", "content": []})


# Read through functions: mypy would keep an asserted property's value across the calls
# that change it.
def busy(turn: Turn) -> bool:
    return turn.busy


def draining(drain: Drain) -> bool:
    return drain.draining


def feed(turn: Turn, kind: str, fields: dict[str, Any]) -> bool:
    """As the relay does: opening before the frames go out, closed after."""
    assert kind in TURN_EVENTS
    turn.opening(kind, fields)
    return turn.closed(kind, fields)


def test_a_response_keeps_the_turn_open_until_it_stops() -> None:
    turn = Turn()
    assert not busy(turn)
    assert feed(turn, *START) is False
    assert busy(turn)
    assert feed(turn, *STOP) is True
    assert not busy(turn)


def test_text_from_the_user_is_owed_an_answer_until_a_response_ends() -> None:
    turn = Turn()
    turn.owe()
    assert busy(turn)
    feed(turn, *START)
    assert feed(turn, *STOP) is True
    assert not busy(turn)


def test_tools_keep_the_turn_open_and_their_results_are_owed_an_answer() -> None:
    turn = Turn()
    feed(turn, *START)
    feed(turn, *tool_use("a", "b"))
    assert feed(turn, *STOP) is False  # the response asked for tools; they still run
    assert feed(turn, *tool_result("a")) is False
    assert busy(turn)
    assert feed(turn, *tool_result("b")) is False  # the model answers the results next
    assert busy(turn)
    feed(turn, *START)
    assert feed(turn, *STOP) is True
    assert not busy(turn)


def test_a_result_for_no_known_tool_changes_nothing() -> None:
    turn = Turn()
    assert feed(turn, *tool_result("x")) is False
    assert not busy(turn)


class Stand:
    """A session that records what the drain tells it, and ends when told (if `obliging`)."""

    def __init__(self, drain: Drain, *, busy: bool = False, obliging: bool = True) -> None:
        self.drain_ = drain
        self.busy = busy
        self.obliging = obliging
        self.told: list[str] = []

    def wind_down(self) -> None:
        self.told.append("wind_down")
        if not self.busy:
            self.end()

    def close_now(self) -> None:
        self.told.append("close_now")
        self.end()

    def end(self) -> None:
        if self.obliging:
            self.drain_.leave(self)


def test_begin_tells_every_session_and_refuses_from_then_on() -> None:
    drain = Drain(timeout=30, close_within=1)
    idle, busy = Stand(drain), Stand(drain, busy=True)
    drain.join(idle)
    drain.join(busy)
    assert not draining(drain)
    drain.begin()
    drain.begin()  # a second begin is nothing new
    assert draining(drain)
    assert (idle.told, busy.told) == (["wind_down"], ["wind_down"])
    assert len(drain) == 1  # the idle one ended at once


def test_a_session_admitted_just_before_the_drain_is_told_when_it_joins() -> None:
    drain = Drain(timeout=30, close_within=1)
    drain.begin()
    late = Stand(drain, busy=True)
    drain.join(late)
    drain.close_now()
    later = Stand(drain, busy=True)
    drain.join(later)
    assert late.told == ["wind_down", "close_now"]
    assert later.told == ["close_now"]


async def test_run_with_no_session_ends_at_once() -> None:
    drain = Drain(timeout=30, close_within=30)
    with anyio.fail_after(1):
        await drain.run()
    assert drain.state == "closing"


async def test_run_ends_when_the_last_session_has_finished() -> None:
    drain = Drain(timeout=30, close_within=30)
    busy = Stand(drain, busy=True)
    drain.join(busy)
    with anyio.fail_after(1):  # not DRAIN_TIMEOUT
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain.run)
            await anyio.wait_all_tasks_blocked()
            assert busy.told == ["wind_down"]
            busy.end()  # its answer is out
    assert busy.told == ["wind_down"]  # never cut


async def test_run_closes_what_is_left_at_the_deadline() -> None:
    drain = Drain(timeout=0.05, close_within=30)
    busy = Stand(drain, busy=True)
    drain.join(busy)
    with anyio.fail_after(2):
        await drain.run()
    assert busy.told == ["wind_down", "close_now"]


async def test_close_now_during_the_wait_ends_it() -> None:
    drain = Drain(timeout=30, close_within=30)
    busy = Stand(drain, busy=True)
    drain.join(busy)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(drain.run)
            await anyio.wait_all_tasks_blocked()
            drain.close_now()  # a second signal
    assert busy.told == ["wind_down", "close_now"]


async def test_run_gives_up_on_a_session_that_never_finishes_closing() -> None:
    drain = Drain(timeout=0.05, close_within=0.05)
    stuck = Stand(drain, busy=True, obliging=False)
    drain.join(stuck)
    with anyio.fail_after(2):
        await drain.run()
    assert stuck.told == ["wind_down", "close_now"]
    assert len(drain) == 1
