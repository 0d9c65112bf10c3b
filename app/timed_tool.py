"""`TimedTool`: every tool call gets a deadline, TOOL_TIMEOUT seconds.

`create_app` wraps each tool it offers (plugins, and tools handed to it directly). A call
still running at the deadline is cancelled and the model gets an error result saying the
tool timed out; the session goes on. The wrapper keeps the tool's name and spec and the
strands stream contract: the inner tool's events pass through, the last is the result.
It also reports how each call ended and how long it took (`voice_tool_calls_total`).

Cancelling reaches an `async` tool at its next `await`. A plain `def` tool runs in a
thread that cannot be stopped: the model gets the error result on time, but the thread
runs on to its end. Work that may run long on the CPU belongs in `ProcessWorkers`, whose
processes are killed when their call is cancelled.

A tool that raises gets the error result strands would give it ("Error: <message>"), but
its message is not logged above DEBUG (see `_failed`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Literal

import anyio
from strands.types.events import ToolResultEvent
from strands.types.tools import AgentTool, ToolGenerator, ToolSpec, ToolUse

logger = logging.getLogger(__name__)

# How a call ended: the tool's own result (success or error), the deadline, or its session
# stopping it. `observe(tool name, status, seconds)` hears of every call (app/metrics).
ToolStatus = Literal["success", "error", "timeout", "cancelled"]
ToolObserver = Callable[[str, ToolStatus, float], None]


class TimedTool(AgentTool):
    def __init__(self, tool: AgentTool, timeout: float, observe: ToolObserver | None = None) -> None:
        super().__init__()
        self.tool = tool
        self.timeout = timeout
        self._observe = observe if observe is not None else _unobserved
        if tool.is_dynamic:
            self.mark_dynamic()

    @property
    def tool_name(self) -> str:
        return self.tool.tool_name

    @property
    def tool_spec(self) -> ToolSpec:
        return self.tool.tool_spec

    @property
    def tool_type(self) -> str:
        return self.tool.tool_type

    @property
    def supports_hot_reload(self) -> bool:
        return self.tool.supports_hot_reload

    def get_display_properties(self) -> dict[str, str]:
        return self.tool.get_display_properties()

    async def stream(
        self, tool_use: ToolUse, invocation_state: dict[str, Any], **kwargs: Any
    ) -> ToolGenerator:
        events = self.tool.stream(tool_use, invocation_state, **kwargs)
        deadline = anyio.current_time() + self.timeout
        call = _Call(self.tool_name, self._observe)
        failure: Exception | None = None
        try:
            while True:
                # The deadline covers only the inner tool's own steps; nothing is yielded
                # inside the scope, so its cancellation cannot land in the consumer's code.
                with anyio.CancelScope(deadline=deadline) as scope:
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        call.ended("error")  # unless its result came: a tool ends with one
                        return
                    except Exception as exc:  # raised rather than returned as an error result
                        failure = exc
                        call.ended("error")
                        break
                if scope.cancel_called:
                    call.ended("timeout")
                    break
                if isinstance(event, ToolResultEvent):  # strands stops reading at the result
                    call.ended("success" if event.tool_result["status"] == "success" else "error")
                yield event
        except Exception:
            call.ended("error")
            raise
        finally:
            await events.aclose()
            call.ended("cancelled")  # unless it ended above: its session stopped it
        if failure is not None:
            yield self._failed(tool_use, failure)
            return
        logger.warning("tool %s timed out after %gs", self.tool_name, self.timeout)
        message = f"{self.tool_name} timed out after {self.timeout:g} seconds"
        yield ToolResultEvent(
            {
                "toolUseId": str(tool_use.get("toolUseId")),
                "status": "error",
                "content": [{"text": f"Error: {message}"}],
            },
            exception=TimeoutError(message),
        )

    def _failed(self, tool_use: ToolUse, exc: Exception) -> ToolResultEvent:
        # What strands does with a tool's exception, except its log line: strands logs the
        # message at ERROR, and a tool's message often quotes its input, the user's words.
        # The ERROR line says where it was raised; the message is logged at DEBUG only.
        frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        logger.error(
            "tool %s raised %s (its message is logged at DEBUG)\n%s",
            self.tool_name,
            type(exc).__name__,
            frames.rstrip(),
        )
        logger.debug("tool %s raised", self.tool_name, exc_info=exc)
        return ToolResultEvent(
            {
                "toolUseId": str(tool_use.get("toolUseId")),
                "status": "error",
                "content": [{"text": f"Error: {exc}"}],
            },
            exception=exc,
        )


class _Call:
    """One call, reported once: the first way it ended is the one that counts."""

    __slots__ = ("_observe", "_reported", "_started", "_tool")

    def __init__(self, tool: str, observe: ToolObserver) -> None:
        self._tool = tool
        self._observe = observe
        self._started = anyio.current_time()
        self._reported = False

    def ended(self, status: ToolStatus) -> None:
        if not self._reported:
            self._reported = True
            self._observe(self._tool, status, anyio.current_time() - self._started)


def _unobserved(tool: str, status: ToolStatus, seconds: float) -> None:
    """No one is counting (a `TimedTool` built outside an app)."""
