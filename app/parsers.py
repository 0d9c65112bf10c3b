"""Parsers for `Settings` fields: `(KEY, raw value) -> value`, or a `ConfigError` that
names the variable and what it accepts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Secret

from app.errors import ConfigError

Parser = Callable[[str, str], Any]


def choice[T](allowed: Collection[T], cast: Callable[[str], T]) -> Parser:
    # `allowed` is read at every call: an extension registered later is accepted too.
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


def number[N: (int, float)](cast: Callable[[str], N], minimum: float, maximum: float) -> Parser:
    def parse(key: str, raw: str) -> N:
        try:
            value: N | None = cast(raw)
        except ValueError:
            value = None
        if value is None or not (minimum <= value <= maximum):
            raise ConfigError(f"{key}={raw!r} is not valid; expected a number from {minimum} to {maximum}")
        return value

    return parse


def https_url(key: str, raw: str) -> str:
    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    # awscrt speaks HTTP/2 only over TLS; over plain http the duplex stream never starts.
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{key}={raw!r} is not valid; expected an https:// URL such as https://host[:port]")
    return url.rstrip("/")


def logger_names(key: str, raw: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"{key}: {name!r} is not a logger name (e.g. websockets,httpcore)")
    return names


def non_empty(key: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{key} must not be empty")
    return raw


def stripped(key: str, raw: str) -> str:
    return raw.strip()


def path(key: str, raw: str) -> Path:
    return Path(raw)


def secret(key: str, raw: str) -> Secret:
    return Secret(raw)
