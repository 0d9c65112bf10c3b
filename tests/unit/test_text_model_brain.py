"""TextModelBrain against a real OpenAI-compatible server on loopback, and build_text_model."""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import pytest
from strands.models.bedrock import BedrockModel
from strands.models.model import Model
from strands.models.openai import OpenAIModel
from strands.types.content import Messages
from strands.types.streaming import StreamEvent
from strands.types.tools import ToolSpec

from app.errors import ConfigError
from app.models.local.brain import BrainEvent, CallTool, Say
from app.models.local.text_model import TextModelBrain, build_text_model
from tests.openai_server import (
    PLAIN_ANSWER,
    PLAIN_ANSWER_CHUNKS,
    TOOL_CALL_ID,
    OpenAIServer,
    run_openai_server,
)

pytestmark = pytest.mark.anyio

SYSTEM_PROMPT = "You are a terse voice assistant."
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"location": {"type": "string"}},
    "required": ["location"],
}
WEATHER_SPEC: ToolSpec = {
    "name": "weather",
    "description": "Current weather for a place.",
    "inputSchema": {"json": WEATHER_SCHEMA},
}


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    async with run_openai_server() as server:
        yield server


def brain_for(server: OpenAIServer, api_key: str = "") -> TextModelBrain:
    return TextModelBrain(
        build_text_model(f"openai:test-model@{server.base_url}", region="us-east-1", api_key=api_key)
    )


async def collect(events: AsyncGenerator[BrainEvent, None]) -> list[BrainEvent]:
    with anyio.fail_after(10):
        async with aclosing(events):
            return [event async for event in events]


def user(text: str) -> Messages:
    return [{"role": "user", "content": [{"text": text}]}]


async def test_plain_question_is_streamed_as_say_chunks(openai_server: OpenAIServer) -> None:
    # The server sends the first chunk, then holds the rest until the test has seen it:
    # a brain that waited for the end of the answer would time out here.
    released = openai_server.hold_plain_answer = anyio.Event()
    said: list[BrainEvent] = []
    with anyio.fail_after(10):
        async with aclosing(
            brain_for(openai_server).respond(user("Tell me a fact."), [], SYSTEM_PROMPT)
        ) as events:
            async for event in events:
                said.append(event)
                released.set()

    assert said == [Say(text) for text in PLAIN_ANSWER_CHUNKS]
    assert "".join(event.text for event in said if isinstance(event, Say)) == PLAIN_ANSWER
    [request] = openai_server.requests
    assert request["stream"] is True
    assert request["model"] == "test-model"
    assert request["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "text", "text": "Tell me a fact."}]},
    ]
    assert not request.get("tools")
    # No key configured: a placeholder, because the OpenAI SDK refuses to run without one.
    assert openai_server.authorizations == ["Bearer not-needed"]


async def test_tool_call_then_answer_from_tool_result(openai_server: OpenAIServer) -> None:
    brain = brain_for(openai_server, api_key="sk-local")
    messages = user("What's the weather in Paris?")

    events = await collect(brain.respond(messages, [WEATHER_SPEC], SYSTEM_PROMPT))

    assert events == [CallTool(TOOL_CALL_ID, "weather", {"location": "Paris"})]
    assert openai_server.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather for a place.",
                "parameters": WEATHER_SCHEMA,
            },
        }
    ]
    assert openai_server.authorizations[0] == "Bearer sk-local"

    [call] = events
    assert isinstance(call, CallTool)
    messages.append(
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": call.tool_use_id, "name": call.name, "input": call.input}}],
        }
    )
    messages.append(
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": call.tool_use_id,
                        "status": "success",
                        "content": [{"text": "Paris: sunny, 21°C"}],
                    }
                }
            ],
        }
    )

    answer = await collect(brain.respond(messages, [WEATHER_SPEC], SYSTEM_PROMPT))

    assert len(answer) >= 2
    assert all(isinstance(event, Say) for event in answer)
    assert "21°C" in "".join(event.text for event in answer if isinstance(event, Say))
    sent = openai_server.requests[1]["messages"]
    assert sent[-2]["role"] == "assistant"
    assert sent[-2]["tool_calls"] == [
        {
            "id": TOOL_CALL_ID,
            "type": "function",
            "function": {"name": "weather", "arguments": '{"location": "Paris"}'},
        }
    ]
    assert sent[-1] == {"role": "tool", "tool_call_id": TOOL_CALL_ID, "content": "Paris: sunny, 21°C"}


async def test_abandoned_answer_ends_cleanly(openai_server: OpenAIServer) -> None:
    # A barge-in stops reading mid-answer: no hang, and no unclosed client or socket
    # (a ResourceWarning is an error here).
    released = openai_server.hold_plain_answer = anyio.Event()
    with anyio.fail_after(10):
        async with aclosing(brain_for(openai_server).respond(user("Tell me a fact."), [], None)) as events:
            first = await anext(events)
        released.set()
    assert first == Say(PLAIN_ANSWER_CHUNKS[0])


def test_build_bedrock_model() -> None:
    model = build_text_model("bedrock:amazon.nova-lite-v1:0", region="eu-west-1", api_key="")

    assert isinstance(model, BedrockModel)
    assert model.get_config()["model_id"] == "amazon.nova-lite-v1:0"
    assert model.client.meta.region_name == "eu-west-1"


@pytest.mark.parametrize(
    ("api_key", "sent_key"), [("", "not-needed"), ("sk-123", "sk-123")], ids=["no-key", "key"]
)
def test_build_openai_model(api_key: str, sent_key: str) -> None:
    model = build_text_model("openai:llama3.2@http://127.0.0.1:11434/v1", region="us-east-1", api_key=api_key)

    assert isinstance(model, OpenAIModel)
    config = model.get_config()
    assert config["model_id"] == "llama3.2"
    assert config["stream"] is True
    assert model.client_args == {"base_url": "http://127.0.0.1:11434/v1", "api_key": sent_key}


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "llama3.2",
        "bedrock:",
        "openai:llama3.2",
        "openai:@http://127.0.0.1:11434/v1",
        "openai:llama3.2@127.0.0.1:11434/v1",
        "ollama:llama3.2@http://127.0.0.1:11434/v1",
    ],
    ids=["empty", "no-kind", "bedrock-no-id", "openai-no-url", "openai-no-model", "url-no-scheme", "unknown"],
)
def test_bad_spec_names_the_setting(spec: str) -> None:
    with pytest.raises(ConfigError, match="LOCAL_TEXT_MODEL") as caught:
        build_text_model(spec, region="us-east-1", api_key="")

    message = str(caught.value)
    assert repr(spec) in message
    assert "bedrock:<model id>" in message
    assert "openai:<model>@<base url>" in message


class ScriptedTextModel(Model):
    """A strands text model that replays fixed stream events (Bedrock's shape: indexed blocks)."""

    def __init__(self, events: list[StreamEvent]) -> None:
        self.events = events
        self.cancel_signals: list[threading.Event] = []
        self.closed = False

    def update_config(self, **model_config: Any) -> None:
        pass

    def get_config(self) -> dict[str, Any]:
        return {}

    def structured_output(self, *args: Any, **kwargs: Any) -> AsyncGenerator[dict[str, Any], None]:
        raise NotImplementedError  # the text-model brain never asks for structured output

    async def stream(
        self,
        messages: Messages,
        tool_specs: list[ToolSpec] | None = None,
        system_prompt: str | None = None,
        **kwargs: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        self.cancel_signals.append(kwargs["cancel_signal"])
        try:
            for event in self.events:
                yield event
        finally:
            self.closed = True


def tool_block(index: int, tool_use_id: str, name: str, *fragments: str) -> list[StreamEvent]:
    deltas: list[StreamEvent] = [
        {"contentBlockDelta": {"contentBlockIndex": index, "delta": {"toolUse": {"input": f}}}}
        for f in fragments
    ]
    return [
        {
            "contentBlockStart": {
                "contentBlockIndex": index,
                "start": {"toolUse": {"toolUseId": tool_use_id, "name": name}},
            }
        },
        *deltas,
        {"contentBlockStop": {"contentBlockIndex": index}},
    ]


async def test_bedrock_shaped_stream() -> None:
    model = ScriptedTextModel(
        [
            {"messageStart": {"role": "assistant"}},
            {"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}},
            {"contentBlockStop": {"contentBlockIndex": 0}},
            {"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Let me check."}}},
            {"contentBlockStop": {"contentBlockIndex": 1}},
            *tool_block(2, "t1", "current_time"),
            *tool_block(3, "t2", "calculator", '{"expression"', ': "2+2"}'),
            {"messageStop": {"stopReason": "tool_use"}},
            {
                "metadata": {
                    "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                    "metrics": {"latencyMs": 1},
                }
            },
        ]
    )

    events = await collect(TextModelBrain(model).respond(user("time and 2+2?"), [], None))

    assert events == [
        Say("Let me check."),
        CallTool("t1", "current_time", {}),
        CallTool("t2", "calculator", {"expression": "2+2"}),
    ]
    # Set once the turn is over, so a Bedrock worker thread stops reading.
    assert [signal.is_set() for signal in model.cancel_signals] == [True]


# What the user said, as a model quotes it in a tool's input.
USER_WORDS = "12 Quillfeather Lane"


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("weather", f'{{"location": "{USER_WORDS}', r"tool 'weather' \(t1\): the model sent invalid JSON"),
        ("weather", f'["{USER_WORDS}"]', r"tool 'weather' \(t1\): the model sent input that is not"),
        ("", f'{{"location": "{USER_WORDS}"}}', r"a tool use without an id or name \(id 't1', name ''\)"),
    ],
    ids=["truncated", "not-an-object", "no-name"],
)
async def test_bad_tool_input_is_a_clear_error_without_the_input(
    name: str, arguments: str, expected: str
) -> None:
    model = ScriptedTextModel(tool_block(0, "t1", name, arguments))

    with pytest.raises(ValueError, match=expected) as caught:
        await collect(TextModelBrain(model).respond(user("weather?"), [WEATHER_SPEC], None))
    # The message is logged (the session's "model failed" line): no user words in it.
    assert USER_WORDS not in str(caught.value)


async def test_abandoned_turn_closes_the_model_stream() -> None:
    model = ScriptedTextModel(
        [
            {"contentBlockDelta": {"delta": {"text": "One."}}},
            {"contentBlockDelta": {"delta": {"text": "Two."}}},
        ]
    )

    async with aclosing(TextModelBrain(model).respond(user("count"), [], None)) as events:
        assert await anext(events) == Say("One.")

    # Closed by the brain before it returns, not later by the garbage collector.
    assert model.closed
    assert [signal.is_set() for signal in model.cancel_signals] == [True]
