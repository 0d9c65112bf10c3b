"""TimedTool around real strands tools: same face, same stream, and a deadline."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from strands import tool
from strands.types.events import ToolResultEvent
from strands.types.tools import AgentTool, ToolGenerator, ToolSpec, ToolUse

from app.timed_tool import TimedTool, ToolStatus

pytestmark = pytest.mark.anyio


@tool
async def progress(steps: int) -> AsyncGenerator[str, None]:
    """Reports progress, then finishes.

    Args:
        steps: How many steps to report.
    """
    for step in range(steps):
        yield f"step {step}"
    yield "done"


async def run(agent_tool: AgentTool, tool_input: dict[str, Any]) -> list[Any]:
    tool_use: ToolUse = {"toolUseId": "t-1", "name": agent_tool.tool_name, "input": tool_input}
    return [event async for event in agent_tool.stream(tool_use, {})]


async def test_keeps_the_tools_face() -> None:
    timed = TimedTool(progress, 5.0)
    assert timed.tool_name == "progress"
    assert timed.tool_spec == progress.tool_spec
    assert timed.tool_type == progress.tool_type
    assert timed.get_display_properties() == progress.get_display_properties()


async def test_passes_the_stream_through_and_ends_with_the_result() -> None:
    events = await run(TimedTool(progress, 5.0), {"steps": 2})
    assert [e["tool_stream_event"]["data"] for e in events if e.get("type") == "tool_stream"] == [
        "step 0",
        "step 1",
        "done",
    ]
    assert isinstance(events[-1], ToolResultEvent)
    assert events[-1].tool_result == {"toolUseId": "t-1", "status": "success", "content": [{"text": "done"}]}


async def test_an_async_tool_past_its_deadline_is_cancelled_with_an_error_result() -> None:
    cancelled = threading.Event()

    @tool
    async def stuck() -> str:
        """Waits for ever."""
        try:
            await anyio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    started = time.monotonic()
    events = await run(TimedTool(stuck, 0.2), {})
    elapsed = time.monotonic() - started
    assert events[-1].tool_result == {
        "toolUseId": "t-1",
        "status": "error",
        "content": [{"text": "Error: stuck timed out after 0.2 seconds"}],
    }
    assert isinstance(events[-1].exception, TimeoutError)
    assert cancelled.is_set()
    assert 0.2 <= elapsed < 1.2


async def test_a_sync_tool_past_its_deadline_gets_an_error_result_on_time() -> None:
    release, finished = threading.Event(), threading.Event()

    @tool
    def blocking() -> str:
        """Blocks its thread."""
        release.wait(10)
        finished.set()
        return "late"

    events = await run(TimedTool(blocking, 0.2), {})
    assert events[-1].tool_result["status"] == "error"
    assert "blocking timed out after 0.2 seconds" in events[-1].tool_result["content"][0]["text"]
    # The thread cannot be cancelled: it is still there, and ends when let go.
    assert not finished.is_set()
    release.set()
    assert await anyio.to_thread.run_sync(finished.wait, 5)


class Raising(AgentTool):
    """A tool that fails by raising, its input in the message, as many plugins do: here
    after a first event, so the error result also follows what was already passed on."""

    @property
    def tool_name(self) -> str:
        return "lookup"

    @property
    def tool_spec(self) -> ToolSpec:
        return {"name": "lookup", "description": "Looks a phrase up.", "inputSchema": {"json": {}}}

    @property
    def tool_type(self) -> str:
        return "python"

    async def stream(
        self, tool_use: ToolUse, invocation_state: dict[str, Any], **kwargs: Any
    ) -> ToolGenerator:
        yield "looking it up"
        raise LookupError(f"nothing found for {tool_use['input']['phrase']}")


async def test_a_raising_tool_gets_an_error_result_and_its_message_stays_out_of_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.timed_tool")
    events = await run(TimedTool(Raising(), 5.0), {"phrase": "Aunt Quillfeather's address"})
    assert events[0] == "looking it up"
    assert events[-1].tool_result == {
        "toolUseId": "t-1",
        "status": "error",
        "content": [{"text": "Error: nothing found for Aunt Quillfeather's address"}],
    }
    assert isinstance(events[-1].exception, LookupError)
    [error] = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert error.levelno == logging.ERROR
    assert error.getMessage().startswith("tool lookup raised LookupError")
    assert __file__ in error.getMessage()  # where it was raised
    assert error.exc_info is None
    assert "Quillfeather" not in error.getMessage()
    [debug] = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug.exc_info is not None
    assert "Quillfeather" in str(debug.exc_info[1])


class Calls(list[tuple[str, ToolStatus, float]]):
    """A `TimedTool` observer that keeps what it is told."""

    def __call__(self, tool: str, status: ToolStatus, seconds: float) -> None:
        self.append((tool, status, seconds))


@tool
def divide(a: float, b: float) -> float:
    """Divides a by b.

    Args:
        a: The dividend.
        b: The divisor.
    """
    return a / b


@tool
async def waits_for_ever() -> str:
    """Waits for ever."""
    await anyio.Event().wait()
    return "never"


async def test_a_call_is_reported_with_its_status_as_its_result_passes() -> None:
    calls = Calls()
    timed = TimedTool(divide, 5.0, calls)
    for count, tool_input in enumerate(({"a": 1, "b": 2}, {"a": 1, "b": 0}), start=1):
        tool_use: ToolUse = {"toolUseId": "t-1", "name": "divide", "input": tool_input}
        stream = timed.stream(tool_use, {})
        async with aclosing(stream):
            async for event in stream:  # as strands reads a tool: up to its result, no further
                if isinstance(event, ToolResultEvent):
                    break
            assert len(calls) == count  # reported as the result passed, not when the stream closes
    assert [(name, status) for name, status, _ in calls] == [("divide", "success"), ("divide", "error")]
    assert all(0 <= seconds < 5 for _, _, seconds in calls)


async def test_a_call_past_its_deadline_is_reported_as_a_timeout() -> None:
    calls = Calls()
    await run(TimedTool(waits_for_ever, 0.2, calls), {})
    [(name, status, seconds)] = calls
    assert (name, status) == ("waits_for_ever", "timeout")
    assert seconds >= 0.2


async def test_a_call_its_session_stops_is_reported_as_cancelled() -> None:
    calls = Calls()
    with anyio.move_on_after(0.1):
        await run(TimedTool(waits_for_ever, 10.0, calls), {})
    assert [(name, status) for name, status, _ in calls] == [("waits_for_ever", "cancelled")]
