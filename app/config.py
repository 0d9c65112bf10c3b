"""Settings: read once from the environment and `.env` into a frozen object.

Nothing else in the service reads the environment. Every key is documented, with its
default, in `.env.example`; an invalid value raises `ConfigError` naming the variable and
what it accepts, so a bad deployment fails at startup rather than on the first call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.config import Config
from starlette.datastructures import Secret

from app.errors import ConfigError

PROVIDERS = ("local", "echo", "nova_sonic")
BRAINS = ("rules", "text_model")
# Rates a model may run at (Nova Sonic accepts exactly these three).
MODEL_SAMPLE_RATES = (8000, 16000, 24000)
# Rates a client may use; the session resamples between these and the model's.
CLIENT_SAMPLE_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# MAX_MESSAGE_BYTES bounds: at least a 100 ms audio frame at the highest client rate as
# base64 JSON (48 kHz: 9600 bytes, 12800 in base64); at most uvicorn's own default, as
# every connection may buffer one frame of this size.
MIN_MESSAGE_BYTES = 16 * 1024
MAX_MESSAGE_BYTES_LIMIT = 16 * 1024 * 1024
# A text message is sent as JSON: up to 4 UTF-8 bytes a character, plus the object around it.
TEXT_ENVELOPE_BYTES = 64


@dataclass(frozen=True, slots=True)
class Settings:
    model_provider: str = "local"
    model_id: str = ""  # empty: the provider's default
    aws_region: str = "us-east-1"
    bedrock_endpoint_url: str = ""  # empty: the region's default Bedrock Runtime endpoint
    voice: str = "matthew"
    input_sample_rate: int = 16000
    output_sample_rate: int = 24000
    system_prompt: str = (
        "You are a friendly voice assistant. Keep answers short and conversational; "
        "use the tools you have when they help."
    )
    tools_dir: Path = Path("tools")
    weather_api_key: Secret = Secret("")  # noqa: RUF009 - immutable; a shared default keeps equality
    log_level: str = "INFO"
    # Loggers allowed below WARNING although they may log audio, text and secrets.
    debug_loggers: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8080
    # WebSocket keepalive: a ping every interval; no pong within the timeout closes (1011).
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 20.0
    # Limits. Queue sizes are in frames/messages; see Session for the overflow policy.
    audio_queue_size: int = 64
    text_queue_size: int = 16
    max_message_bytes: int = 1_048_576
    max_text_chars: int = 8_000
    stop_timeout: float = 2.0
    input_stall_timeout: float = 10.0
    max_history_messages: int = 200
    # A model connection that keeps failing: at most this many restarts within the window.
    model_max_restarts: int = 3
    model_restart_window: float = 60.0
    tool_http_timeout: float = 5.0
    tool_timeout: float = 10.0
    tool_processes: int = 2
    # The offline `local` model.
    local_brain: str = "rules"
    local_text_model: str = ""
    local_text_model_api_key: Secret = Secret("")  # noqa: RUF009 - immutable; a shared default keeps equality
    end_of_speech_ms: int = 500
    local_speech_rate: int = 165
    local_asr_decoders: int = 2
    local_audio_lead_ms: int = 1000

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)


def _choice[T](allowed: tuple[T, ...], cast: Callable[[str], T]) -> Callable[[str, str], T]:
    def parse(key: str, raw: str) -> T:
        try:
            value: T | None = cast(raw)
        except ValueError:
            value = None
        if value is None or value not in allowed:
            names = ", ".join(str(a) for a in allowed)
            raise ConfigError(f"{key}={raw!r} is not valid; allowed values: {names}")
        return value

    return parse


def _number[N: (int, float)](
    cast: Callable[[str], N], minimum: float, maximum: float
) -> Callable[[str, str], N]:
    def parse(key: str, raw: str) -> N:
        try:
            value: N | None = cast(raw)
        except ValueError:
            value = None
        if value is None or not (minimum <= value <= maximum):
            raise ConfigError(f"{key}={raw!r} is not valid; expected a number from {minimum} to {maximum}")
        return value

    return parse


def _https_url(key: str, raw: str) -> str:
    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    # awscrt speaks HTTP/2 only over TLS; over plain http the duplex stream never starts.
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{key}={raw!r} is not valid; expected an https:// URL such as https://host[:port]")
    return url.rstrip("/")


def _logger_names(key: str, raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"{key}: {name!r} is not a logger name (e.g. websockets,httpcore)")
    return names


def _text(key: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{key} must not be empty")
    return raw


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "model_provider": _choice(PROVIDERS, str.lower),
    "model_id": lambda key, raw: raw.strip(),
    "aws_region": _text,
    "bedrock_endpoint_url": _https_url,
    "voice": _text,
    "input_sample_rate": _choice(MODEL_SAMPLE_RATES, int),
    "output_sample_rate": _choice(MODEL_SAMPLE_RATES, int),
    "system_prompt": _text,
    "tools_dir": lambda key, raw: Path(raw),
    "weather_api_key": lambda key, raw: Secret(raw),
    "log_level": _choice(LOG_LEVELS, str.upper),
    "debug_loggers": _logger_names,
    "host": _text,
    "port": _number(int, 0, 65535),
    "ws_ping_interval": _number(float, 0.1, 3600.0),
    "ws_ping_timeout": _number(float, 0.1, 3600.0),
    "audio_queue_size": _number(int, 1, 100_000),
    "text_queue_size": _number(int, 1, 10_000),
    "max_message_bytes": _number(int, MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES_LIMIT),
    "max_text_chars": _number(int, 1, 1_000_000),
    "stop_timeout": _number(float, 0.1, 60.0),
    "input_stall_timeout": _number(float, 0.1, 3600.0),
    "max_history_messages": _number(int, 2, 100_000),
    "model_max_restarts": _number(int, 0, 1000),
    "model_restart_window": _number(float, 1.0, 86_400.0),
    "tool_http_timeout": _number(float, 0.1, 120.0),
    "tool_timeout": _number(float, 0.1, 300.0),
    "tool_processes": _number(int, 1, 64),
    "local_brain": _choice(BRAINS, str.lower),
    "local_text_model": lambda key, raw: raw.strip(),
    "local_text_model_api_key": lambda key, raw: Secret(raw),
    "end_of_speech_ms": _number(int, 100, 5000),
    "local_speech_rate": _number(int, 80, 450),
    "local_asr_decoders": _number(int, 1, 64),
    "local_audio_lead_ms": _number(int, 100, 10000),
}


def load_settings(environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
    """Build `Settings` from `environ` (default: the process environment) and `env_file`.

    The environment wins over the file, as in starlette's `Config`.
    """
    env_path = Path(env_file) if env_file is not None else None
    source = os.environ if environ is None else dict(environ)
    config = Config(env_path if env_path is not None and env_path.is_file() else None, environ=source)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = f.name.upper()
        raw = config(key, default=None)
        if raw is None:
            continue
        parser = _PARSERS.get(f.name)
        if parser is None:  # a field added without a parser: say so rather than fail with a KeyError
            raise ConfigError(f"{key} cannot be set from the environment (no parser is defined for it)")
        values[f.name] = parser(key, raw)
    settings = Settings(**values)
    _check_limits(settings)
    return settings


def _check_limits(settings: Settings) -> None:
    """Limits that only make sense together."""
    needed = 4 * settings.max_text_chars + TEXT_ENVELOPE_BYTES
    if needed > settings.max_message_bytes:
        raise ConfigError(
            f"MAX_TEXT_CHARS={settings.max_text_chars} needs MAX_MESSAGE_BYTES of at least {needed} "
            f"(up to 4 UTF-8 bytes a character, plus the JSON around it), but MAX_MESSAGE_BYTES="
            f"{settings.max_message_bytes}; raise MAX_MESSAGE_BYTES or lower MAX_TEXT_CHARS"
        )
