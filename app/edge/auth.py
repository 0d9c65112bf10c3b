"""Authentication on the handshake: static API keys (AUTH_TOKENS) and JWT bearer tokens
(AUTH_JWKS_URL, see jwks.py), either passing when both are set. Off when neither is set,
and then not in the gate at all.

Where the token comes from, the first present wins:

1. `Authorization: Bearer <token>`: the CLI, servers, AgentCore's inbound JWT;
2. the `Sec-WebSocket-Protocol` header, for browsers: the client offers `bearer` and the
   token as the next entry, `new WebSocket(url, ["bearer", token])`, and the server
   answers with `bearer`, never the token (a browser fails a handshake answered with a
   subprotocol it did not offer, so the token cannot ride in a `bearer.<token>` entry);
3. the `token` query parameter, for browsers too: `/ws?token=...`. Logged URLs have
   their query values redacted (app/logs.py), but a URL lives on in browser history and
   proxies' logs: prefer the subprotocol or short-lived tokens.

A missing, unknown, malformed or expired token is refused with 401 and
`WWW-Authenticate: Bearer`; a genuine JWT issued for another service with 403. The
reason is logged through `Refusals`; the token never is.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from dataclasses import replace

import httpx
from starlette import status
from starlette.websockets import WebSocket

from app.config import Settings
from app.edge.gate import Admitted, Check, Refused
from app.edge.jwks import JwtVerifier, KeySet, unauthorized

logger = logging.getLogger(__name__)

BEARER = "bearer"  # the subprotocol a browser offers, followed by its token
QUERY_PARAMETER = "token"


class ApiKeys:
    """AUTH_TOKENS, compared in constant time: both sides are hashed first, so neither the
    length of a key nor how much of it matched shows in the time taken."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, token: str) -> int | None:
        """The number (from 1) of the key `token` is, or None."""
        presented = _digest(token)
        matched = None
        for number, digest in enumerate(self._digests, 1):
            # Every key is compared: stopping at a match would tell which key it was.
            if hmac.compare_digest(digest, presented) and matched is None:
                matched = number
        return matched


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def presented_token(websocket: WebSocket) -> tuple[str, str] | None:
    """The token and where it came from (for the log), or None."""
    scheme, _, credentials = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == BEARER and credentials.strip():
        return credentials.strip(), "authorization header"
    offered: list[str] = websocket.scope.get("subprotocols", [])
    if BEARER in offered:
        after = offered.index(BEARER) + 1
        if after < len(offered) and offered[after]:
            return offered[after], "subprotocol"
    token = websocket.query_params.get(QUERY_PARAMETER, "")
    return (token, "query") if token else None


class Authenticator:
    def __init__(self, api_keys: ApiKeys, verifier: JwtVerifier | None) -> None:
        self.api_keys = api_keys
        self.verifier = verifier

    async def check(self, websocket: WebSocket, admitted: Admitted) -> Admitted | Refused:
        found = presented_token(websocket)
        if found is None:
            return Refused(
                status.HTTP_401_UNAUTHORIZED,
                "unauthorized",
                "no token",
                "a token is required: Authorization: Bearer <token>, the bearer subprotocol, or ?token=",
                {"WWW-Authenticate": "Bearer"},
            )
        token, source = found
        if (number := self.api_keys.match(token)) is not None:
            return _admit(websocket, admitted, f"api-key #{number}")
        if self.verifier is None:
            return _from(source, "api key", unauthorized("no such key"))
        verdict = await self.verifier.verify(token)
        if isinstance(verdict, Refused):
            return _from(source, "jwt", verdict)
        return _admit(websocket, admitted, verdict)


def _admit(websocket: WebSocket, admitted: Admitted, principal: str) -> Admitted:
    # A browser that offered `bearer` fails the handshake unless it is echoed.
    echoed = BEARER if BEARER in websocket.scope.get("subprotocols", []) else admitted.subprotocol
    return replace(admitted, principal=principal, subprotocol=echoed)


def _from(source: str, kind: str, refused: Refused) -> Refused:
    return replace(refused, detail=f"{kind}: {refused.detail} (from the {source})")


def auth_check(settings: Settings, http: httpx.AsyncClient) -> Check | None:
    """The gate's auth check, or None when no AUTH_* setting turns it on."""
    keys = ApiKeys([key for key in str(settings.auth_tokens).split(",") if key])
    verifier = None
    if settings.auth_jwks_url:
        key_set = KeySet(
            settings.auth_jwks_url,
            http,
            timeout=settings.auth_jwks_timeout,
            max_age=settings.auth_jwks_max_age,
            refetch_interval=settings.auth_jwks_refetch_interval,
        )
        verifier = JwtVerifier(
            key_set,
            algorithms=settings.auth_algorithms,
            audience=settings.auth_audience,
            issuer=settings.auth_issuer,
            leeway=settings.auth_leeway,
        )
        if not settings.auth_audience:
            logger.warning(
                "AUTH_AUDIENCE is empty: any token signed by %s's keys is accepted, whatever "
                "service it was issued for",
                settings.auth_jwks_url,
            )
    if not keys and verifier is None:
        return None
    jwt_mode = f"JWT from {settings.auth_jwks_url}" if verifier else "no JWT"
    logger.info("auth on: %d API keys, %s", len(keys), jwt_mode)
    return Authenticator(keys, verifier).check
