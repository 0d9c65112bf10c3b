"""A scripted OpenAI-compatible chat server on a free loopback port, for text-model tests.

`POST /v1/chat/completions` streams chat-completion chunks as server-sent events,
choosing the answer from the last message of the request:
- a tool result (role `tool`): a text answer quoting the result, in several chunks;
- a user message mentioning the weather: a `weather` tool call for Paris, its JSON
  arguments split across two chunks;
- anything else: `PLAIN_ANSWER` in several chunks. If `hold_plain_answer` is set, the
  server sends the first chunk and waits for it before the rest, so a test can check
  that text is streamed rather than buffered.
Every request body (and its Authorization header) is recorded in `requests`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.support import serving

PLAIN_ANSWER_CHUNKS = ["Hello", " from", " the", " local", " model."]
PLAIN_ANSWER = "".join(PLAIN_ANSWER_CHUNKS)
TOOL_CALL_ID = "call_weather_1"
WEATHER_ARGUMENT_CHUNKS = ['{"location": ', '"Paris"}']


@dataclass
class OpenAIServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    hold_plain_answer: anyio.Event | None = None


def _chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _usage_chunk() -> str:
    # Sent because strands asks for `stream_options.include_usage`.
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return f"data: {json.dumps(body)}\n\n"


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


async def _text_answer(chunks: list[str], hold: anyio.Event | None = None) -> AsyncIterator[str]:
    yield _chunk({"role": "assistant", "content": ""})
    for number, text in enumerate(chunks):
        if number == 1 and hold is not None:
            await hold.wait()
        yield _chunk({"content": text})
    yield _chunk({}, "stop")
    yield _usage_chunk()
    yield "data: [DONE]\n\n"


async def _weather_call() -> AsyncIterator[str]:
    yield _chunk({"role": "assistant", "content": None})
    first, rest = WEATHER_ARGUMENT_CHUNKS
    yield _chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": "weather", "arguments": first},
                }
            ]
        }
    )
    yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": rest}}]})
    yield _chunk({}, "tool_calls")
    yield _usage_chunk()
    yield "data: [DONE]\n\n"


def _app(server: OpenAIServer) -> Starlette:
    async def chat_completions(request: Request) -> StreamingResponse:
        body = await request.json()
        server.requests.append(body)
        server.authorizations.append(request.headers.get("authorization"))
        last = body["messages"][-1]
        answer: AsyncIterator[str]
        if last["role"] == "tool":
            answer = _text_answer(["According to the weather service, ", _text_of(last), "."])
        elif last["role"] == "user" and "weather" in _text_of(last).lower():
            answer = _weather_call()
        else:
            answer = _text_answer(PLAIN_ANSWER_CHUNKS, server.hold_plain_answer)
        return StreamingResponse(answer, media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])


@asynccontextmanager
async def run_openai_server() -> AsyncIterator[OpenAIServer]:
    # The socket listens before uvicorn starts, so clients may connect right away: the
    # kernel queues them until the server accepts, and no readiness polling is needed.
    server = OpenAIServer(base_url="")
    # A bounded graceful shutdown: a test that fails mid-answer must not hang here.
    config = uvicorn.Config(_app(server), lifespan="off", log_level="warning", timeout_graceful_shutdown=2)
    async with serving(config) as (_, port):
        server.base_url = f"http://127.0.0.1:{port}/v1"
        yield server
