"""Agent events to wire frames: the server half of protocol v1."""

from __future__ import annotations

import base64
import json
from typing import Any

from strands.bidi.models.model import ConnectionTimeoutError
from strands.bidi.types.events import (
    BidiAudioDeltaEvent,
    BidiAudioStopEvent,
    BidiBargeInEvent,
    BidiConnectionRestartEvent,
    BidiConnectionWarningEvent,
    BidiReasoningDeltaEvent,
    BidiTextBlockEvent,
    BidiTextDeltaEvent,
    BidiTextStartEvent,
    BidiUsageEvent,
)

from app.wire.encoder import OutputEncoder
from app.wire.inbound import AudioEncoding
from tests.support import tone


def frames(encoder: OutputEncoder, *events: object) -> list[Any]:
    """What `encoder` sends for `events`: text frames decoded from JSON, binary ones as bytes."""
    out: list[Any] = []
    for event in events:
        out += [json.loads(f) if isinstance(f, str) else f for f in encoder.encode(event)]  # type: ignore[arg-type]
    return out


def test_base64_audio_at_the_client_rate_is_relayed_without_re_encoding() -> None:
    audio = base64.b64encode(tone(320)).decode()
    [frame] = OutputEncoder(24000, AudioEncoding.BASE64).encode(
        BidiAudioDeltaEvent(audio, "pcm", 24000, 1, "a")
    )
    assert isinstance(frame, str)
    assert audio in frame  # the model's own string, wrapped as is
    assert json.loads(frame) == {"type": "audio", "sample_rate": 24000, "format": "pcm16", "audio": audio}


def test_binary_audio_is_resampled_and_the_tail_flushed_at_audio_stop() -> None:
    encoder = OutputEncoder(8000, AudioEncoding.BINARY)
    audio = base64.b64encode(tone(2400)).decode()  # 100 ms at 24 kHz
    out = frames(encoder, BidiAudioDeltaEvent(audio, "pcm", 24000, 1, "a"), BidiAudioStopEvent("a"))
    assert all(isinstance(f, bytes) for f in out)
    assert sum(len(f) for f in out) // 2 == 800  # 100 ms at 8 kHz, nothing lost in the filter


def test_text_streams_carry_the_text_so_far() -> None:
    encoder = OutputEncoder(24000, AudioEncoding.BASE64)
    out = frames(
        encoder,
        BidiTextStartEvent("t"),
        BidiTextDeltaEvent("Hello", "t"),
        BidiTextDeltaEvent(" world", "t"),
        BidiTextBlockEvent("Hello world", "t"),
    )
    assert out == [
        {"type": "text", "role": "assistant", "text": "Hello", "final": False, "content_id": "t"},
        {"type": "text", "role": "assistant", "text": "Hello world", "final": False, "content_id": "t"},
        {"type": "text", "role": "assistant", "text": "Hello world", "final": True, "content_id": "t"},
    ]


def test_lifecycle_events() -> None:
    encoder = OutputEncoder(24000, AudioEncoding.BASE64)
    out = frames(
        encoder,
        BidiUsageEvent(input_tokens=10, output_tokens=5, total_tokens=15),
        BidiConnectionWarningEvent(time_left_s=10),
        BidiConnectionRestartEvent(
            reason="timeout", timeout_error=ConnectionTimeoutError("x"), turn_interrupted=True
        ),
        BidiBargeInEvent(),
        BidiReasoningDeltaEvent("private thoughts", "r"),  # never sent to clients
        {"message": {"role": "user", "content": []}},  # strands' tool-result bookkeeping, no type
    )
    assert out == [
        {"type": "usage", "input_tokens": 10, "output_tokens": 5, "total_tokens": 15},
        {"type": "connection_warning", "time_left_s": 10},
        {"type": "connection_restart", "reason": "timeout", "turn_interrupted": True},
        {"type": "interruption"},
    ]
