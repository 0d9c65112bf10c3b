"""Parsers for `Settings` fields: `(KEY, raw value) -> value`, or a `ConfigError` that
names the variable and what it accepts."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Secret

from app.edge.origin import ANY, normalize
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


def comma_list(key: str, raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def web_origins(key: str, raw: str) -> tuple[str, ...]:
    """ALLOWED_ORIGINS: `*`, or http(s) origins, kept normalized (`https://a.example`)."""
    origins = []
    for item in comma_list(key, raw):
        origin = ANY if item == ANY else normalize(item)
        if origin is None:
            raise ConfigError(
                f"{key}: {item!r} is not an origin; expected scheme://host[:port] with http or https "
                "(no path), or * for any"
            )
        origins.append(origin)
    return tuple(origins)


# API keys: long enough not to be guessed, and of characters that need no escaping in a
# header, a query string or a WebSocket subprotocol (`secrets.token_urlsafe` makes them).
MIN_API_KEY_CHARS = 16
_API_KEY = re.compile(r"[A-Za-z0-9._~-]+")


def api_keys(key: str, raw: str) -> Secret:
    keys = comma_list(key, raw)
    for number, item in enumerate(keys, 1):  # the message names the key's place, never the key
        if len(item) < MIN_API_KEY_CHARS or not _API_KEY.fullmatch(item):
            raise ConfigError(
                f"{key}: key #{number} must be at least {MIN_API_KEY_CHARS} characters of "
                "A-Z a-z 0-9 . _ ~ - (python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
            )
    return Secret(",".join(keys))


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def jwks_url(key: str, raw: str) -> str:
    """https, or http to this machine only (a local identity provider): keys fetched over
    plain http from elsewhere could be swapped on the way, and any token forged with them."""
    url = raw.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    local = parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    if not parts.hostname or not (parts.scheme == "https" or local):
        raise ConfigError(f"{key}={raw!r} is not valid; expected an https:// URL (http:// only to localhost)")
    return url


# Asymmetric signatures only. `none` is no signature; HS* would make the JWKS's public
# keys HMAC secrets anyone can sign with (algorithm confusion).
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def jwt_algorithms(key: str, raw: str) -> tuple[str, ...]:
    names = comma_list(key, raw)
    for name in names:
        if name not in JWT_ALGORITHMS:
            unsafe = name.lower() == "none" or name.upper().startswith("HS")
            why = " (no signature, or an HMAC one: never with a JWKS's public keys)" if unsafe else ""
            raise ConfigError(f"{key}: {name!r} is not allowed{why}; allowed: {', '.join(JWT_ALGORITHMS)}")
    if not names:
        raise ConfigError(f"{key} must name at least one algorithm, e.g. RS256")
    return names


def ip_networks(key: str, raw: str) -> tuple[str, ...]:
    """FORWARDED_ALLOW_IPS: addresses or networks (10.0.0.0/8), or * for any."""
    items = comma_list(key, raw)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"{key}: {item!r} is not an IP address or network (e.g. 10.0.0.0/8), nor *"
            ) from None
    return items
