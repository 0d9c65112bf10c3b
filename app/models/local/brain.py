"""The reply stage of the local model: a `Brain` turns the conversation into speech or tool calls.

A brain reads the conversation (strands/Bedrock `Messages`: user text, assistant text,
assistant `toolUse`, user `toolResult`) and yields what to do next: `Say` chunks of the
spoken answer, or `CallTool` requests. The local model runs tool calls through the
agent's normal tool loop, appends the results to the conversation and asks again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from strands.types.content import Messages
from strands.types.tools import ToolSpec


@dataclass(frozen=True, slots=True)
class Say:
    """A piece of the spoken answer, of any size (the model splits it into sentences)."""

    text: str


@dataclass(frozen=True, slots=True)
class CallTool:
    tool_use_id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)


BrainEvent = Say | CallTool


class Brain(Protocol):
    name: str

    def respond(
        self, messages: Messages, tools: Sequence[ToolSpec], system_prompt: str | None
    ) -> AsyncIterator[BrainEvent]:
        """One step of the conversation.

        `messages` ends with a user message: text from the user, or the results of the
        tool calls this brain asked for last. Yield `Say` chunks, `CallTool`s, or both
        (speech first, then calls); after calls, `respond` is called again with the results.
        """
        ...


@runtime_checkable
class GrammarBrain(Brain, Protocol):
    """A brain that only understands fixed phrases: the recognizer listens for just these."""

    def grammar(self) -> str:
        """The phrases, as a JSGF grammar (the recognizer decodes speech against it)."""
        ...
