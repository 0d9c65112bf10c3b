"""Agent events to wire frames: the server half of protocol v1."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
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

from app.metrics import Metrics
from app.wire.encoder import OutputEncoder
from app.wire.inbound import AudioEncoding
from tests.support import tone


def make_encoder(client_rate: int, audio: AudioEncoding, metrics: Metrics | None = None) -> OutputEncoder:
    metrics = metrics or Metrics()
    return OutputEncoder(client_rate, audio, metrics.traffic, metrics.turn_clock())


def frames(encoder: OutputEncoder, *events: object) -> list[Any]:
    """What `encoder` sends for `events`: text frames decoded from JSON, binary ones as bytes."""
    out: list[Any] = []
    for event in events:
        out += [json.loads(f) if isinstance(f, str) else f for f in encoder.encode(event)]  # type: ignore[arg-type]
    return out


def test_base64_audio_at_the_client_rate_is_relayed_without_re_encoding() -> None:
    audio = base64.b64encode(tone(320)).decode()
    [frame] = make_encoder(24000, AudioEncoding.BASE64).encode(
        BidiAudioDeltaEvent(audio, "pcm", 24000, 1, "a")
    )
    assert isinstance(frame, str)
    assert audio in frame  # the model's own string, wrapped as is
    assert json.loads(frame) == {"type": "audio", "sample_rate": 24000, "format": "pcm16", "audio": audio}


def test_binary_audio_is_resampled_and_the_tail_flushed_at_audio_stop() -> None:
    encoder = make_encoder(8000, AudioEncoding.BINARY)
    audio = base64.b64encode(tone(2400)).decode()  # 100 ms at 24 kHz
    out = frames(encoder, BidiAudioDeltaEvent(audio, "pcm", 24000, 1, "a"), BidiAudioStopEvent("a"))
    assert all(isinstance(f, bytes) for f in out)
    assert sum(len(f) for f in out) // 2 == 800  # 100 ms at 8 kHz, nothing lost in the filter


def test_text_streams_carry_the_text_so_far() -> None:
    encoder = make_encoder(24000, AudioEncoding.BASE64)
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
    encoder = make_encoder(24000, AudioEncoding.BASE64)
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


def test_the_audio_sent_is_counted_in_seconds_at_the_clients_rate() -> None:
    metrics = Metrics()
    resampled = make_encoder(8000, AudioEncoding.BINARY, metrics)
    audio = base64.b64encode(tone(2400)).decode()  # 100 ms at 24 kHz
    frames(resampled, BidiAudioDeltaEvent(audio, "pcm", 24000, 1, "a"), BidiAudioStopEvent("a"))
    relayed = make_encoder(24000, AudioEncoding.BASE64, metrics)  # the model's base64, wrapped as is
    frames(relayed, BidiAudioDeltaEvent(base64.b64encode(tone(4800)).decode(), "pcm", 24000, 1, "b"))
    assert metrics.traffic.audio_out == pytest.approx(0.3)
