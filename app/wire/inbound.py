"""Client to server: frames parsed once at the edge into typed messages.

See docs/protocol.md. Every rejection is a `ProtocolError` with a specific code; only an
oversized frame is fatal, because everything else leaves the session in a known state.
Input a client can craft at will (deep nesting, lone surrogates) gets a coded error here,
so it never reaches a model or an exception handler.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from starlette import status

from app.config import CLIENT_SAMPLE_RATES
from app.errors import ProtocolError
from app.wire.outbound import AUDIO_FORMAT

ACCEPTED_AUDIO_FORMATS: Final = frozenset({"pcm16", "pcm", "pcm_s16le"})


class AudioEncoding(StrEnum):
    BASE64 = "base64"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class AudioIn:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class TextIn:
    text: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class End:
    pass


ClientMessage = AudioIn | TextIn | Ping | End

PING: Final = Ping()
END: Final = End()


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    input_sample_rate: int
    output_sample_rate: int
    audio: AudioEncoding


def _rate(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if raw.isdigit() and int(raw) in CLIENT_SAMPLE_RATES:
        return int(raw)
    allowed = ", ".join(map(str, CLIENT_SAMPLE_RATES))
    raise ProtocolError(
        "unsupported_sample_rate",
        f"{name}={_shown(raw)} is not supported; allowed values: {allowed}",
        fatal=True,
        close_code=status.WS_1008_POLICY_VIOLATION,
    )


def parse_connect_options(query: dict[str, str], input_rate: int, output_rate: int) -> ConnectOptions:
    """Query parameters given at connect; defaults are the model's own rates."""
    raw_audio = query.get("audio", AudioEncoding.BASE64)
    try:
        audio = AudioEncoding(raw_audio)
    except ValueError:
        raise ProtocolError(
            "invalid_query",
            f"audio={_shown(raw_audio)} is not supported; allowed values: base64, binary",
            fatal=True,
            close_code=status.WS_1008_POLICY_VIOLATION,
        ) from None
    return ConnectOptions(
        input_sample_rate=_rate("input_sample_rate", query.get("input_sample_rate"), input_rate),
        output_sample_rate=_rate("output_sample_rate", query.get("output_sample_rate"), output_rate),
        audio=audio,
    )


def check_pcm(pcm: bytes) -> None:
    if not pcm:
        raise ProtocolError("empty_audio", "audio frame has no samples")
    if len(pcm) % 2:
        raise ProtocolError("odd_byte_count", f"PCM16 audio needs an even number of bytes, got {len(pcm)}")


class Parser:
    """Parses one session's frames; holds the limits and the session's input rate."""

    def __init__(self, input_sample_rate: int, max_message_bytes: int, max_text_chars: int) -> None:
        self.input_sample_rate = input_sample_rate
        self.max_message_bytes = max_message_bytes
        self.max_text_chars = max_text_chars

    def _check_size(self, size: int) -> None:
        if size > self.max_message_bytes:
            raise ProtocolError(
                "message_too_large",
                f"frame of {size} bytes exceeds the limit of {self.max_message_bytes}",
                fatal=True,
                close_code=status.WS_1009_MESSAGE_TOO_BIG,
            )

    def binary(self, data: bytes) -> AudioIn:
        self._check_size(len(data))
        check_pcm(data)
        return AudioIn(data)

    def text(self, data: str) -> ClientMessage:
        # The limit is in bytes, as on the wire. isascii() is O(1) and ASCII (JSON with
        # base64 audio) is a byte a character; other text is at most 4 bytes a character,
        # so only text that could be over the limit is encoded to count it.
        if data.isascii() or 4 * len(data) <= self.max_message_bytes:
            self._check_size(len(data))
        else:
            # surrogatepass: count a lone surrogate (not valid UTF-8) rather than fail on it.
            self._check_size(len(data.encode("utf-8", "surrogatepass")))
        try:
            obj = json.loads(data)
        except ValueError:
            raise ProtocolError("invalid_json", "text frame is not valid JSON") from None
        except RecursionError:  # json's C scanner recurses once per level of nesting
            raise ProtocolError("invalid_json", "text frame nests JSON too deeply") from None
        if not isinstance(obj, dict):
            raise ProtocolError("invalid_message", "a message must be a JSON object")
        kind = obj.get("type")
        if kind is None:  # short forms sent by existing clients
            if "audio" in obj and "text" not in obj:
                kind = "audio"
            elif "text" in obj and "audio" not in obj:
                kind = "text"
            else:
                raise ProtocolError("invalid_message", "message has no 'type'")
        decode = _DECODERS.get(kind) if isinstance(kind, str) else None
        if decode is None:
            expected = ", ".join(MESSAGE_TYPES)
            raise ProtocolError("unknown_type", f"unknown message type {_shown(kind)}; expected {expected}")
        return decode(self, obj)

    def _audio(self, obj: dict[str, Any]) -> AudioIn:
        payload = obj.get("audio")
        if not isinstance(payload, str):
            raise ProtocolError("invalid_message", "'audio' must be a base64 string")
        rate = obj.get("sample_rate", self.input_sample_rate)
        if rate != self.input_sample_rate:
            usable = isinstance(rate, int) and rate in CLIENT_SAMPLE_RATES
            hint = f"; reconnect with input_sample_rate={rate} to use it" if usable else ""
            raise ProtocolError(
                "unsupported_sample_rate",
                f"sample_rate {_shown(rate)} does not match this session's input rate "
                f"{self.input_sample_rate}{hint}",
            )
        fmt = obj.get("format", AUDIO_FORMAT)
        if fmt not in ACCEPTED_AUDIO_FORMATS:
            raise ProtocolError(
                "unsupported_format", f"audio format {_shown(fmt)} is not supported; allowed values: pcm16"
            )
        if obj.get("channels", 1) != 1:
            raise ProtocolError("unsupported_format", "only mono audio (channels=1) is supported")
        try:
            pcm = b64decode(payload, validate=True)
        except binascii.Error:
            raise ProtocolError("invalid_base64", "'audio' is not valid base64") from None
        check_pcm(pcm)
        return AudioIn(pcm)

    def _text(self, obj: dict[str, Any]) -> TextIn:
        text = obj.get("text")
        if not isinstance(text, str):
            raise ProtocolError("invalid_message", "'text' must be a string")
        if not text.strip():
            raise ProtocolError("empty_text", "text message is empty")
        if len(text) > self.max_text_chars:
            raise ProtocolError(
                "text_too_long", f"text of {len(text)} characters exceeds the limit of {self.max_text_chars}"
            )
        if not text.isascii():
            # JSON may escape a lone surrogate ("\ud800"): a str that no model, speech engine
            # or socket can encode, so it is refused here rather than failing the session later.
            try:
                text.encode()
            except UnicodeEncodeError:
                raise ProtocolError(
                    "invalid_text", "text contains an unpaired surrogate code point (not valid Unicode)"
                ) from None
        return TextIn(text)


# The JSON `type` of each client message and its decoder; a new message type is added here.
_DECODERS: Final[dict[str, Callable[[Parser, dict[str, Any]], ClientMessage]]] = {
    "audio": Parser._audio,
    "text": Parser._text,
    "ping": lambda parser, obj: PING,
    "end": lambda parser, obj: END,
}
MESSAGE_TYPES: Final = tuple(_DECODERS)


def _shown(value: object) -> str:
    """A client value for an error message: short, and never a client-sized string."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 32 else repr(value[:32]) + "..."
    if value is None or isinstance(value, (bool, int, float)):
        shown = repr(value)
        return shown if len(shown) <= 32 else shown[:32] + "..."
    return f"<{type(value).__name__}>"
