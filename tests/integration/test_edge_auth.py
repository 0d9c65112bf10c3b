"""Authentication on the handshake, against a real uvicorn: static API keys from each place
a token can come from, JWTs checked against a JWKS served by a loopback identity
provider, and every refusal answered with HTTP 401/403/503 before any model is built."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.datastructures import Secret

from tests.identity_provider import (
    AUDIENCE,
    ISSUER,
    IdentityProvider,
    hmac_with_public_key,
    unsigned_token,
)
from tests.support import ScriptedProvider, connect_ws, free_port, handshake, run_server, start

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEYS = ("first-key-0123456789", "second-key-0123456789")


def offer(token: str, source: str) -> dict[str, Any]:
    """How a client presents `token` from `source`: connect_ws options and a query."""
    if source == "header":
        return {"headers": {"Authorization": f"Bearer {token}"}, "query": ""}
    if source == "subprotocol":
        return {"subprotocols": ["bearer", token], "query": ""}
    return {"query": f"?token={token}"}


async def session(port: int, token: str, source: str = "header") -> tuple[dict[str, Any], str | None]:
    """session_start of an accepted handshake, and the subprotocol the server chose."""
    options = offer(token, source)
    url = f"ws://127.0.0.1:{port}/ws{options.pop('query')}"
    async with httpx.AsyncClient() as client, connect_ws(url, client, **options) as ws:
        return await start(ws), ws.subprotocol


async def refused(port: int, token: str | None, source: str = "header") -> httpx.Response:
    """The answer to a handshake presenting `token` (None: no token), read whole."""
    headers: dict[str, str] = {}
    query = ""
    if token is not None:
        options = offer(token, source)
        headers = options.get("headers", {})
        if "subprotocols" in options:
            headers["Sec-WebSocket-Protocol"] = ", ".join(options["subprotocols"])
        query = options["query"]
    async with httpx.AsyncClient() as client:
        return await handshake(client, f"http://127.0.0.1:{port}/ws{query}", headers)


async def refusal_counts(port: int) -> dict[str, int]:
    async with httpx.AsyncClient() as client:
        counts: dict[str, int] = (await client.get(f"http://127.0.0.1:{port}/health")).json()["refused"]
        return counts


@pytest.fixture
def idp() -> IdentityProvider:
    return IdentityProvider("k1")


@pytest.fixture
async def jwks_url(idp: IdentityProvider) -> AsyncIterator[str]:
    async with run_server(idp.app) as (_, port):
        yield f"http://127.0.0.1:{port}/jwks"


@pytest.fixture
def jwt_app(app_factory: Callable[..., Starlette], scripted: ScriptedProvider, jwks_url: str) -> Starlette:
    return app_factory(
        scripted,
        auth_jwks_url=jwks_url,
        auth_audience=(AUDIENCE,),
        auth_issuer=ISSUER,
        auth_jwks_refetch_interval=0.0,  # every unknown key id may refetch: counted below
    )


# static API keys -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["header", "subprotocol", "query"])
async def test_an_api_key_is_accepted_from_each_source(
    app_factory: Callable[..., Starlette],
    scripted: ScriptedProvider,
    source: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="app.session")
    app = app_factory(scripted, auth_tokens=Secret(",".join(KEYS)))
    async with run_server(app) as (_, port):
        started, subprotocol = await session(port, KEYS[1], source)
    assert started["type"] == "session_start"
    # Only the non-secret name is echoed; a browser that offered it needs it back.
    assert subprotocol == ("bearer" if source == "subprotocol" else None)
    assert "principal=api-key #2" in caplog.text
    assert len(scripted.models) == 1


@pytest.mark.parametrize("source", ["header", "subprotocol", "query"])
async def test_a_wrong_api_key_is_refused_with_401_before_any_model(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, source: str
) -> None:
    app = app_factory(scripted, auth_tokens=Secret(",".join(KEYS)))
    async with run_server(app) as (_, port):
        response = await refused(port, KEYS[0][:-1] + "X", source)
        health = await refusal_counts(port)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json() == {"error": "unauthorized", "message": "invalid token"}
    assert scripted.models == []
    assert health == {"unauthorized": 1}


async def test_no_token_is_refused_with_401_and_says_where_to_put_one(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, auth_tokens=Secret(KEYS[0]))
    async with run_server(app) as (_, port):
        response = await refused(port, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["message"]
    assert scripted.models == []


# JWTs against a JWKS -------------------------------------------------------------------


async def test_a_valid_jwt_is_accepted_and_its_subject_logged(
    jwt_app: Starlette, idp: IdentityProvider, scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.session")
    async with run_server(jwt_app) as (_, port):
        for source in ("header", "subprotocol", "query"):
            await session(port, idp.token("k1", sub="alice"), source)
    assert caplog.text.count("principal=alice") == 3
    assert len(scripted.models) == 3
    assert idp.fetches == 1  # the keys are cached


REFUSED_TOKENS: dict[str, tuple[Callable[[IdentityProvider], str], int, str]] = {
    "expired": (lambda idp: idp.token("k1", exp=int(idp.claims()["iat"]) - 120), 401, "token expired"),
    "not-yet-valid": (
        lambda idp: idp.token("k1", nbf=int(idp.claims()["iat"]) + 600),
        401,
        "token not yet valid",
    ),
    "no-exp": (lambda idp: idp.token("k1", exp=None), 401, "invalid token"),
    "wrong-audience": (lambda idp: idp.token("k1", aud="another-service"), 403, "token not issued"),
    "no-audience": (lambda idp: idp.token("k1", aud=None), 403, "token not issued"),
    "wrong-issuer": (lambda idp: idp.token("k1", iss="https://evil.test/"), 403, "token not issued"),
    "alg-none": (lambda idp: unsigned_token("k1", idp.claims()), 401, "token algorithm not allowed"),
    "hs256-with-the-public-key": (
        lambda idp: hmac_with_public_key("k1", idp.claims(), idp.public_pem("k1")),
        401,
        "token algorithm not allowed",
    ),
    "signed-by-another-key": (lambda idp: IdentityProvider("k1").token("k1"), 401, "invalid token"),
    "not-a-jwt": (lambda idp: "not-a-jwt-at-all", 401, "invalid token"),
}


@pytest.mark.parametrize("case", REFUSED_TOKENS.keys())
async def test_a_bad_jwt_is_refused_before_any_model(
    jwt_app: Starlette, idp: IdentityProvider, scripted: ScriptedProvider, case: str
) -> None:
    make, status, message = REFUSED_TOKENS[case]
    async with run_server(jwt_app) as (_, port):
        response = await refused(port, make(idp))
    assert response.status_code == status
    assert response.json()["message"].startswith(message)
    assert response.json()["error"] == ("unauthorized" if status == 401 else "forbidden")
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert scripted.models == []


async def test_an_unknown_key_id_refetches_the_jwks_once_then_rotated_keys_work(
    jwt_app: Starlette, idp: IdentityProvider, scripted: ScriptedProvider
) -> None:
    async with run_server(jwt_app) as (_, port):
        await session(port, idp.token("k1"))
        assert idp.fetches == 1
        idp.rotate("k2")  # the provider signs with a new key and drops k1
        await session(port, idp.token("k2"))
        assert idp.fetches == 2  # k2 was unknown: fetched again, once
        await session(port, idp.token("k2"))
        assert idp.fetches == 2
        response = await refused(port, idp.token("k1"))  # no longer listed: refused
    assert response.status_code == 401
    assert response.json()["message"] == "unknown signing key"
    assert len(scripted.models) == 3


async def test_a_flood_of_unknown_key_ids_fetches_the_jwks_once_per_interval(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, idp: IdentityProvider, jwks_url: str
) -> None:
    app = app_factory(
        scripted, auth_jwks_url=jwks_url, auth_audience=(AUDIENCE,), auth_jwks_refetch_interval=60
    )
    async with run_server(app) as (_, port):
        await session(port, idp.token("k1"))
        forger = IdentityProvider(*(f"made-up-{n}" for n in range(5)))
        async with anyio.create_task_group() as tasks:
            for kid in forger.published * 4:
                tasks.start_soon(refused, port, forger.token(kid))
    assert idp.fetches == 1  # the first: the 20 made-up key ids fetched nothing more


async def test_an_api_key_and_a_jwt_both_pass_when_both_are_on(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, idp: IdentityProvider, jwks_url: str
) -> None:
    app = app_factory(
        scripted, auth_tokens=Secret(KEYS[0]), auth_jwks_url=jwks_url, auth_audience=(AUDIENCE,)
    )
    async with run_server(app) as (_, port):
        await session(port, KEYS[0])
        await session(port, idp.token("k1"))
        response = await refused(port, KEYS[1])
    assert response.status_code == 401
    assert len(scripted.models) == 2


async def test_an_unreachable_jwks_refuses_with_503_and_says_so(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, idp: IdentityProvider
) -> None:
    url = f"http://127.0.0.1:{free_port()}/jwks"  # nothing listens there
    app = app_factory(scripted, auth_jwks_url=url, auth_audience=(AUDIENCE,))
    async with run_server(app) as (_, port):
        response = await refused(port, idp.token("k1"))
        health = await refusal_counts(port)
    assert response.status_code == 503
    assert response.json()["error"] == "auth_unavailable"
    assert health == {"auth_unavailable": 1}
    assert scripted.models == []
