"""No token in any log line: `python -m app` at LOG_LEVEL=DEBUG with API keys and JWTs on,
every line it writes read (uvicorn's access and connection lines included), while
clients connect with tokens from every source, with wrong and expired ones too, and
the page is loaded with a token in its URL."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.identity_provider import AUDIENCE, ISSUER, IdentityProvider
from tests.support import (
    connect_ws,
    free_port,
    handshake,
    logged_server,
    run_server,
    start,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEY = "the-api-key-0123456789"
WRONG_KEY = "a-wrong-api-key-0123456789"


async def test_no_log_line_holds_a_token() -> None:
    idp = IdentityProvider("k1")
    token = idp.token("k1", sub="alice")
    expired = idp.token("k1", exp=int(idp.claims()["iat"]) - 3600)
    port = free_port()
    lines: list[str] = []
    async with run_server(idp.app) as (_, idp_port):
        env = {
            "PORT": str(port),
            "MODEL_PROVIDER": "echo",
            "LOG_LEVEL": "DEBUG",
            "AUTH_TOKENS": KEY,
            "AUTH_JWKS_URL": f"http://127.0.0.1:{idp_port}/jwks",
            "AUTH_AUDIENCE": AUDIENCE,
            "AUTH_ISSUER": ISSUER,
        }
        async with logged_server(env, lines), httpx.AsyncClient() as client:
            page = await client.get(f"http://127.0.0.1:{port}/?token={KEY}")
            assert page.status_code == 200
            base = f"ws://127.0.0.1:{port}/ws"
            for secret in (KEY, token):
                for url, options in (
                    (base, {"headers": {"Authorization": f"Bearer {secret}"}}),
                    (base, {"subprotocols": ["bearer", secret]}),
                    (f"{base}?audio=binary&token={secret}", {}),
                ):
                    async with connect_ws(url, client, **options) as ws:
                        await start(ws)
                        await ws.send_text(json.dumps({"type": "end"}))
            for wrong, status in ((WRONG_KEY, 401), (expired, 401), (None, 401)):
                query = f"?token={wrong}" if wrong else ""
                answer = await handshake(client, f"http://127.0.0.1:{port}/ws{query}")
                assert answer.status_code == status
    output = "".join(lines)
    for secret in (KEY, WRONG_KEY, token, expired):
        assert secret not in output
    # Everything the test did was logged, so the redaction was really exercised.
    assert output.count("principal=api-key #1") == 3
    assert output.count("principal=alice") == 3
    assert output.count('"GET /?token=[redacted] HTTP/1.1" 200') == 1
    assert output.count('"WebSocket /ws?audio=binary&token=[redacted]" [accepted]') == 2
    assert output.count('"WebSocket /ws?token=[redacted]" 401') == 2
    # The first refusal is logged, the next two within the second only counted.
    assert "refused: reason=unauthorized jwt: not a JWT (from the query)" in output
    assert " ERROR " not in output
