"""A fake OpenID identity provider for the auth tests: RSA signing keys made with
`cryptography`, their JWKS served by a small Starlette app (run it on loopback with
`tests/support.py` `run_server`), and tokens signed with them, good and bad.

    idp = IdentityProvider()
    async with run_server(idp.app) as (_, port):
        url = f"http://127.0.0.1:{port}/jwks"      # AUTH_JWKS_URL
        token = idp.token("k1", sub="alice")       # valid for AUDIENCE and ISSUER
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ISSUER: Final = "https://idp.test/"
AUDIENCE: Final = "voice-agent"


class IdentityProvider:
    def __init__(self, *kids: str) -> None:
        self.private: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []  # the key ids the JWKS lists now
        self.fetches = 0
        for kid in kids:
            self.publish(kid)
        self.app = Starlette(routes=[Route("/jwks", self._jwks)])

    def publish(self, kid: str) -> None:
        """Make a signing key and list it in the JWKS."""
        self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)

    def rotate(self, kid: str) -> None:
        """A new key replaces every listed one (the old private keys still sign, as a
        stolen or retired key would)."""
        self.published.clear()
        self.publish(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = RSAAlgorithm.to_jwk(self.private[kid].public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def public_pem(self, kid: str) -> bytes:
        return (
            self.private[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    async def _jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        return JSONResponse(self.jwks())

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid claims for AUDIENCE and ISSUER; a value of None drops that claim."""
        now = int(time.time())
        claims = {"sub": "user-1", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + 300, **overrides}
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, kid: str, **claims: Any) -> str:
        return jwt.encode(self.claims(**claims), self.private[kid], algorithm="RS256", headers={"kid": kid})


def unsigned_token(kid: str, claims: dict[str, Any]) -> str:
    """`alg: none`: no signature at all."""
    return _compact({"alg": "none", "kid": kid, "typ": "JWT"}, claims, lambda _: b"")


def hmac_with_public_key(kid: str, claims: dict[str, Any], public_pem: bytes) -> str:
    """Algorithm confusion: HS256 keyed with the provider's public key, which anyone has.
    Made by hand, as PyJWT refuses to sign it."""
    return _compact(
        {"alg": "HS256", "kid": kid, "typ": "JWT"},
        claims,
        lambda signing_input: hmac.new(public_pem, signing_input, hashlib.sha256).digest(),
    )


def _compact(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}".encode()
    return f"{signing_input.decode()}.{_b64(sign(signing_input))}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
