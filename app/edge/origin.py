"""Origin allow-list, against cross-site WebSocket hijacking: a page on another site can
open a WebSocket to us with the user's cookies and network position, and only the
`Origin` header its browser adds tells us where the page came from.

ALLOWED_ORIGINS lists the origins allowed (`https://app.example.com`, compared with
default ports left out); `*` allows any. Empty (the default) allows the request's own
host: the Origin's host and port must be those of the `Host` header. The scheme is not
compared then, because behind a proxy that ends TLS the server cannot know it; write the
origins out to pin it. A proxy must pass the client's `Host` on (ALB does; nginx needs
`proxy_set_header Host $http_host`), or ALLOWED_ORIGINS must be set; X-Forwarded-Host is
not read, as any client can send it when no proxy rewrites it.

A request without `Origin` is not from a browser page and is allowed: the allow-list
protects browsers' users, and auth decides about everything else.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from starlette import status
from starlette.websockets import WebSocket

from app.edge.gate import Admitted, Check, Refused

ANY: str = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}
_SHOWN_CHARS = 64  # of a refused Origin in the log: a client's header, not a client-sized text


def normalize(origin: str) -> str | None:
    """`HTTPS://App.example.com:443` -> `https://app.example.com`; None when it is not an
    http(s) origin (`null`, a path, user info, a bad port)."""
    parsed = _parse(origin)
    if parsed is None:
        return None
    scheme, host, port = parsed
    shown_host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown_host}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


def _parse(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname, port if port is not None else DEFAULT_PORTS[scheme]


def same_host(origin: str, host_header: str) -> bool:
    """Whether `origin` names the host and port a request with this `Host` was sent to.
    A Host without a port was sent to a default port, 80 or 443, whichever the scheme."""
    parsed = _parse(origin)
    if parsed is None:
        return False
    _, origin_host, origin_port = parsed
    try:
        target = urlsplit(f"//{host_header.strip()}")
        port = target.port
    except ValueError:
        return False
    if target.hostname != origin_host:
        return False
    return port == origin_port if port is not None else origin_port in DEFAULT_PORTS.values()


def origin_check(allowed: Collection[str]) -> Check | None:
    """The check for ALLOWED_ORIGINS (normalized by its parser); None when any origin is
    allowed, so the gate does no work for it."""
    if ANY in allowed:
        return None
    allow_list = frozenset(allowed)

    async def check(websocket: WebSocket, admitted: Admitted) -> Admitted | Refused:
        origin = websocket.headers.get("origin")
        if origin is None:
            return admitted
        if allow_list:
            ok = normalize(origin) in allow_list
        else:
            ok = same_host(origin, websocket.headers.get("host", ""))
        if ok:
            return admitted
        return Refused(
            status.HTTP_403_FORBIDDEN,
            "origin",
            f"origin {_shown(origin)} not allowed" + ("" if allow_list else " (not the request's host)"),
            "this page's origin may not connect; see ALLOWED_ORIGINS",
        )

    return check


def _shown(origin: str) -> str:
    return repr(origin if len(origin) <= _SHOWN_CHARS else origin[:_SHOWN_CHARS] + "...")
