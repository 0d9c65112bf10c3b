"""JWT bearer tokens verified against an identity provider's JWKS; PyJWT does the crypto.

This is how AgentCore Runtime's inbound JWT (Cognito, Okta, Entra) and any OIDC provider
reach us. The token's `alg` must be one of AUTH_ALGORITHMS (asymmetric only: `none` and
HS* are refused when the settings are read, so a public key can never serve as an HMAC
secret), its `kid` must name a signing key of the JWKS whose type fits that algorithm,
`exp` is required, `nbf`/`iat` are checked, each with AUTH_LEEWAY seconds of clock skew,
and `aud`/`iss` must match AUTH_AUDIENCE/AUTH_ISSUER when those are set.

Keys are fetched through the app's HTTP client, kept for AUTH_JWKS_MAX_AGE seconds, and
fetched again when a token names a key id we do not have (the provider rotated its
keys). Fetches are single-flight and at most one per AUTH_JWKS_REFETCH_INTERVAL seconds,
so a flood of tokens with made-up key ids costs the provider one request per interval.
When the provider cannot be reached the keys already held stay in use; with none at all
the handshake is refused with 503 (`auth_unavailable`): the client's token may be fine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import httpx
import jwt
from starlette import status

from app.edge.gate import Refused

logger = logging.getLogger(__name__)

# Key types that can verify an asymmetric signature; "oct" (HMAC secrets) never can here.
SIGNING_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
_SHOWN_CHARS = 40  # of a client's key id or algorithm name in the log
_PRINCIPAL_CHARS = 128


class JwksUnavailable(Exception):
    """No keys are held and the provider could not be reached."""


class KeySet:
    """The provider's signing keys by key id, fetched when needed (see the module doc)."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        max_age: float,
        refetch_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._timeout = timeout
        self._max_age = max_age
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._prepared: dict[tuple[str | None, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # fetches ended, well or not

    async def key(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        """The key `kid` names, prepared for `algorithm`; None when there is no such key
        or it does not fit the algorithm. Raises `JwksUnavailable`."""
        stale = self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age
        if stale:
            await self._refresh()
        if self._fetched_at is None:
            raise JwksUnavailable
        if not stale and self._find(kid) is None:
            await self._refresh()  # an unknown key id: the provider may have rotated its keys
        return self._prepare(kid, algorithm)

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is None:  # allowed only where it cannot be ambiguous
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _prepare(self, kid: str | None, algorithm: str) -> jwt.PyJWK | None:
        prepared = self._prepared.get((kid, algorithm))
        if prepared is not None:
            return prepared
        jwk = self._find(kid)
        if jwk is None or jwk.get("alg", algorithm) != algorithm:
            return None
        try:
            prepared = jwt.PyJWK(jwk, algorithm)  # raises when the key type cannot do `algorithm`
        except jwt.PyJWTError:
            return None
        self._prepared[(kid, algorithm)] = prepared
        return prepared

    async def _refresh(self) -> None:
        attempts = self.fetches
        async with self._lock:
            if self.fetches != attempts:
                return  # a fetch ended while this handshake waited for it: use its result
            now = self._clock()
            if self._tried_at is not None and now - self._tried_at < self._refetch_interval:
                return
            self._tried_at = now
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError, TimeoutError) as exc:
                held = f"keeping the {len(self._keys)} keys held" if self._keys else "no keys held"
                logger.warning(
                    "JWKS fetch from %s failed (%s): %s", self.url, held, exc or type(exc).__name__
                )
                return
            finally:
                self.fetches += 1
            self._keys, self._prepared, self._fetched_at = keys, {}, self._clock()
            logger.info("JWKS fetched from %s: %d signing keys", self.url, len(keys))

    async def _fetch(self) -> dict[str | None, dict[str, Any]]:
        with anyio.fail_after(self._timeout):  # the whole fetch, not each read of a slow answer
            response = await self._http.get(self.url, timeout=self._timeout)
        response.raise_for_status()
        body = response.json()
        entries = body.get("keys") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the answer is not a JWKS (no 'keys' list)")
        keys = {
            entry.get("kid"): entry
            for entry in entries
            if isinstance(entry, dict)
            and entry.get("kty") in SIGNING_KEY_TYPES
            and entry.get("use", "sig") == "sig"
            and isinstance(entry.get("kid"), str | None)
        }
        if not keys:
            raise ValueError("the JWKS has no signing keys")
        return keys


class JwtVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        algorithms: Sequence[str],
        audience: Sequence[str],
        issuer: str,
        leeway: float,
    ) -> None:
        self.keys = keys
        self._algorithms = list(algorithms)
        self._audience = list(audience) or None
        self._issuer = issuer or None
        self._leeway = leeway
        # exp is required: a token that never expires cannot be taken back.
        self._options: dict[str, Any] = {"require": ["exp"], "verify_aud": bool(audience)}

    async def verify(self, token: str) -> str | Refused:
        """The principal (the token's `sub`), or why the token is refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return unauthorized("not a JWT")
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            return unauthorized(f"algorithm {_shown(algorithm)} not allowed", "token algorithm not allowed")
        if not isinstance(kid, str | None):
            return unauthorized("a key id that is not a string")
        try:
            key = await self.keys.key(kid, algorithm)
        except JwksUnavailable:
            return Refused(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "auth_unavailable",
                f"no JWKS keys: {self.keys.url} could not be fetched",
                "tokens cannot be checked right now; try again later",
                {"Retry-After": "10"},
            )
        if key is None:
            return unauthorized(
                f"no signing key {_shown(kid)} for {algorithm} in the JWKS", "unknown signing key"
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,  # again, should the check above ever go
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,  # type: ignore[arg-type]  # PyJWT's TypedDict of options
            )
        except jwt.ExpiredSignatureError:
            return unauthorized("expired token", "token expired")
        except jwt.ImmatureSignatureError:
            return unauthorized("token not yet valid (nbf/iat)", "token not yet valid")
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as exc:
            return not_for_us(exc)
        except jwt.MissingRequiredClaimError as exc:
            return not_for_us(exc) if exc.claim in ("aud", "iss") else unauthorized(f"no {exc.claim} claim")
        except jwt.PyJWTError as exc:
            return unauthorized(f"{type(exc).__name__}")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return "jwt (no sub)"
        return "".join(c for c in subject[:_PRINCIPAL_CHARS] if c.isprintable())


def unauthorized(detail: str, message: str = "invalid token") -> Refused:
    """401 for a malformed, unknown, badly signed or expired token: get a new one."""
    return Refused(
        status.HTTP_401_UNAUTHORIZED,
        "unauthorized",
        detail,
        message,
        {"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{message}"'},
    )


def not_for_us(exc: jwt.PyJWTError) -> Refused:
    """403 for a genuine token issued for another service or by another issuer: a new
    token from the same place would be refused alike."""
    return Refused(
        status.HTTP_403_FORBIDDEN,
        "forbidden",
        str(exc),
        "token not issued for this service (audience or issuer)",
    )


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_CHARS else shown[:_SHOWN_CHARS] + "..."
