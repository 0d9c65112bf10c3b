"""Server to client: every message the server sends, typed, in one place.

Each message is a TypedDict whose `type` is a Literal, so mypy checks every field where a
message is built, and `MESSAGE_TYPES` (checked against docs/protocol.md by a test) is
derived from the types themselves. Audio in base64 mode is the one message not built as a
dict: `OutputEncoder` wraps the model's own base64 string to avoid re-encoding it, in
exactly the shape of `Audio`.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, TypedDict, get_args, get_type_hints

PROTOCOL_VERSION: Final = 1
AUDIO_FORMAT: Final = "pcm16"  # signed 16-bit little-endian, mono

# Every error code the server sends (the Errors table of docs/protocol.md).
ErrorCode = Literal[
    "invalid_json",
    "invalid_text",
    "invalid_message",
    "unknown_type",
    "invalid_base64",
    "odd_byte_count",
    "empty_audio",
    "unsupported_sample_rate",
    "unsupported_format",
    "empty_text",
    "text_too_long",
    "invalid_query",
    "message_too_large",
    "input_stalled",
    "rate_limited",
    "model_error",
    "model_restart_limit",
    "internal_error",
]
ERROR_CODES: Final = frozenset(get_args(ErrorCode))


class SessionStart(TypedDict):
    type: Literal["session_start"]
    session_id: str
    protocol: int
    provider: str
    model: str
    input_sample_rate: int
    output_sample_rate: int
    audio_format: str
    audio_encoding: str
    channels: int
    tools: list[str]


class ConnectionStart(TypedDict):
    type: Literal["connection_start"]
    connection_id: str
    model: str


class ResponseStart(TypedDict):
    type: Literal["response_start"]
    response_id: str


class ResponseComplete(TypedDict):
    type: Literal["response_complete"]
    response_id: str


class Transcript(TypedDict):
    type: Literal["transcript", "text"]  # speech, or written text from a text-streaming provider
    role: str
    text: str  # the full text so far, not a delta
    final: bool
    content_id: str


class Audio(TypedDict):
    type: Literal["audio"]
    sample_rate: int
    format: str
    audio: str  # base64 PCM16


class ToolUse(TypedDict):
    type: Literal["tool_use"]
    tool_use_id: str
    name: str
    input: Any


class ToolResult(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    name: str
    status: str
    content: str


class Interruption(TypedDict):
    type: Literal["interruption"]


class Usage(TypedDict):
    type: Literal["usage"]
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ConnectionRestart(TypedDict):
    type: Literal["connection_restart"]
    reason: str
    turn_interrupted: bool


class ConnectionWarning(TypedDict):
    type: Literal["connection_warning"]
    time_left_s: float


class Pong(TypedDict):
    type: Literal["pong"]


class Error(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    message: str
    fatal: bool


class ConnectionClose(TypedDict):
    type: Literal["connection_close"]
    reason: str


ServerMessage = (
    SessionStart
    | ConnectionStart
    | ResponseStart
    | ResponseComplete
    | Transcript
    | Audio
    | ToolUse
    | ToolResult
    | Interruption
    | Usage
    | ConnectionRestart
    | ConnectionWarning
    | Pong
    | Error
    | ConnectionClose
)

MESSAGE_TYPES: Final = frozenset(
    kind for message in get_args(ServerMessage) for kind in get_args(get_type_hints(message)["type"])
)


def dumps(message: ServerMessage) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str)


PONG: Final = dumps(Pong(type="pong"))
