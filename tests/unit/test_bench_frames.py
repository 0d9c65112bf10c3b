"""How the load generator (bench/_clients.py) finds its header in a reply without parsing
the whole JSON message: a misread reply would count as lost, or match the wrong frame."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from app.wire.outbound import dumps
from bench._clients import FRAME_BYTES, HEADER, audio_header


def frame(index: int, seq: int, sent: int) -> bytes:
    buffer = bytearray(FRAME_BYTES)
    HEADER.pack_into(buffer, 0, index, seq, sent)
    return bytes(buffer)


@pytest.mark.parametrize("encode", [dumps, json.dumps], ids=["ours (compact)", "baseline (json.dumps)"])
def test_the_header_is_read_back_from_an_audio_message_wherever_its_field_is(
    encode: Callable[[Any], str],
) -> None:
    sent = (599, 123_456, 9_876_543_210_123)
    audio = base64.b64encode(frame(*sent)).decode()
    for message in (
        {"type": "audio", "audio": audio, "sample_rate": 16000, "format": "pcm16"},
        {"type": "audio", "sample_rate": 16000, "format": "pcm16", "audio": audio},
    ):
        assert audio_header(encode(message)) == sent


def test_other_messages_are_not_taken_for_audio() -> None:
    session_start = json.dumps({"type": "session_start", "audio_encoding": "base64"}, separators=(",", ":"))
    transcript = json.dumps({"type": "transcript", "text": 'she said "audio": "AAAA" twice'})
    assert audio_header(session_start) is None
    assert audio_header(transcript) is None
