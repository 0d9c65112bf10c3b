"""A `Brain` backed by a strands text `Model` (Bedrock, or any OpenAI-compatible server).

`TextModelBrain` streams one model turn and turns strands `StreamEvent`s into brain
events: text deltas become `Say` chunks as soon as they arrive, and each tool-use block
becomes one `CallTool` when it closes. `build_text_model` reads the `LOCAL_TEXT_MODEL`
setting (`bedrock:<model id>` or `openai:<model>@<base url>`) into the matching strands
model, without touching the network; `text_model_brain` is the `LOCAL_BRAIN` factory.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio
from strands.models.bedrock import BedrockModel
from strands.models.model import Model
from strands.models.openai import OpenAIModel
from strands.types.content import Messages
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

from app.config import Settings
from app.errors import ConfigError, ModelError
from app.models.local.brain import BrainEvent, CallTool, Say

# The model name is taken up to the first "@" that starts a URL, so names may contain "@".
_OPENAI_SPEC = re.compile(r"(?P<model>[^\s]+?)@(?P<url>https?://\S+)")

# Closing an abandoned stream closes its HTTP response; a stuck peer must not hold us up.
_CLOSE_TIMEOUT = 2.0

# Stream events that report a failure instead of raising; dropping them would end the
# turn silently, as if the model had nothing to say.
_ERROR_EVENTS = (
    "internalServerException",
    "modelStreamErrorException",
    "serviceUnavailableException",
    "throttlingException",
    "validationException",
)


@dataclass(slots=True)
class _PendingToolUse:
    tool_use_id: str
    name: str
    input_json: str = ""

    def finish(self) -> CallTool:
        if not self.input_json.strip():
            return CallTool(self.tool_use_id, self.name, {})
        # The messages leave the input out: it often quotes the user, and they are logged.
        try:
            parsed = json.loads(self.input_json)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"tool {self.name!r} ({self.tool_use_id}): the model sent invalid JSON input "
                f"({len(self.input_json)} characters): {error}"
            ) from error
        if not isinstance(parsed, dict):
            raise ValueError(
                f"tool {self.name!r} ({self.tool_use_id}): the model sent input that is not a JSON object"
            )
        return CallTool(self.tool_use_id, self.name, parsed)


class TextModelBrain:
    name = "text_model"

    def __init__(self, model: Model) -> None:
        self.model = model

    async def respond(
        self, messages: Messages, tools: Sequence[ToolSpec], system_prompt: str | None
    ) -> AsyncGenerator[BrainEvent, None]:
        # BedrockModel reads the response in a worker thread that only stops early when
        # this signal is set; without it an abandoned turn (barge-in) keeps streaming.
        cancel = threading.Event()
        stream = self.model.stream(
            messages, tool_specs=list(tools) or None, system_prompt=system_prompt, cancel_signal=cancel
        )
        try:
            # Keyed by content block index: OpenAIModel sends none (None), Bedrock numbers them.
            pending: dict[int | None, _PendingToolUse] = {}
            async for event in stream:
                for say_or_call in _convert(event, pending):
                    yield say_or_call
        finally:
            cancel.set()
            # Close the model's generator now, not at garbage collection, so OpenAIModel's
            # per-request client and its connection are released in this task, even when
            # the turn ends by cancellation (barge-in).
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await _aclose(stream)


def _convert(event: StreamEvent, pending: dict[int | None, _PendingToolUse]) -> list[BrainEvent]:
    for kind in _ERROR_EVENTS:
        if (failure := cast(Mapping[str, Any], event).get(kind)) is not None:
            raise ModelError(f"the text model failed ({kind}): {failure.get('message', failure)}")

    if "contentBlockStart" in event:
        block_start = event["contentBlockStart"]
        tool_use = block_start.get("start", {}).get("toolUse")
        if tool_use is not None:
            index = block_start.get("contentBlockIndex")
            pending[index] = _PendingToolUse(tool_use["toolUseId"], tool_use["name"])
        return []

    if "contentBlockDelta" in event:
        block_delta = event["contentBlockDelta"]
        delta = block_delta.get("delta", {})
        if text := delta.get("text"):
            return [Say(text)]
        if "toolUse" in delta:
            tool_delta = delta["toolUse"]
            index = block_delta.get("contentBlockIndex")
            tool = pending.get(index)
            if tool is None:
                # Some providers name the tool in its first delta instead of the block start.
                tool = pending[index] = _PendingToolUse(
                    tool_delta.get("toolUseId", ""), tool_delta.get("name", "")
                )
            tool.tool_use_id = tool_delta.get("toolUseId") or tool.tool_use_id
            tool.name = tool_delta.get("name") or tool.name
            tool.input_json += tool_delta.get("input") or ""
        return []

    if "contentBlockStop" in event:
        finished = pending.pop(event["contentBlockStop"].get("contentBlockIndex"), None)
        if finished is None:
            return []  # a text or reasoning block
        if not finished.tool_use_id or not finished.name:
            raise ValueError(
                f"the model sent a tool use without an id or name (id {finished.tool_use_id!r}, "
                f"name {finished.name!r})"
            )
        return [finished.finish()]

    return []  # messageStart, messageStop, metadata, redactContent


async def _aclose(stream: AsyncIterable[StreamEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def build_text_model(spec: str, *, region: str, api_key: str) -> Model:
    """The strands model named by the LOCAL_TEXT_MODEL setting."""
    kind, _, rest = spec.strip().partition(":")
    if kind == "bedrock" and rest:
        return BedrockModel(model_id=rest, region_name=region)
    if kind == "openai" and (match := _OPENAI_SPEC.fullmatch(rest)):
        return OpenAIModel(
            # Local servers (Ollama, llama.cpp, vLLM) ignore the key, but the SDK insists on one.
            client_args={"base_url": match["url"], "api_key": api_key or "not-needed"},
            model_id=match["model"],
            stream=True,
        )
    raise ConfigError(
        f"LOCAL_TEXT_MODEL={spec!r} is not valid: use 'bedrock:<model id>' "
        "or 'openai:<model>@<base url>' (for example 'openai:llama3.2@http://127.0.0.1:11434/v1')"
    )


def text_model_brain(settings: Settings) -> TextModelBrain:
    if not settings.local_text_model:
        raise ConfigError(
            "LOCAL_BRAIN=text_model needs LOCAL_TEXT_MODEL (bedrock:<model id> or openai:<model>@<url>)"
        )
    model = build_text_model(
        settings.local_text_model,
        region=settings.aws_region,
        api_key=str(settings.local_text_model_api_key),
    )
    return TextModelBrain(model)
