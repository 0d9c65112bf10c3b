"""Who a handshake comes from, against a real uvicorn: the Origin allow-list (403 before any
model), the client address taken from trusted proxies only, and AgentCore's session id."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from app.serving import server_options
from tests.support import ScriptedProvider, connect_ws, handshake, run_server, start

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

AGENTCORE_SESSION = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"


async def session_start(port: int, headers: dict[str, str]) -> dict[str, Any]:
    async with (
        httpx.AsyncClient() as client,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client, headers=headers) as ws,
    ):
        return await start(ws)


async def answer(port: int, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await handshake(client, f"http://127.0.0.1:{port}/ws", headers)


@pytest.mark.parametrize(
    ("allowed", "origin", "status"),
    [
        ((), None, 101),  # not a browser
        ((), "http://127.0.0.1:{port}", 101),  # the page's own host
        ((), "http://localhost:{port}", 403),  # the same machine by another name is another site
        ((), "https://evil.example", 403),
        ((), "null", 403),
        (("https://app.example",), "https://app.example:443", 101),
        (("https://app.example",), "http://app.example", 403),  # the scheme is pinned when written out
        (("https://app.example",), "http://127.0.0.1:{port}", 403),  # a list replaces the own-host rule
        (("*",), "https://evil.example", 101),
    ],
    ids=lambda value: str(value) if value is not None else "no-origin",
)
async def test_origins_allowed_and_refused(
    app_factory: Callable[..., Starlette],
    scripted: ScriptedProvider,
    allowed: tuple[str, ...],
    origin: str | None,
    status: int,
) -> None:
    app = app_factory(scripted, allowed_origins=allowed)
    async with run_server(app) as (_, port):
        headers = {} if origin is None else {"Origin": origin.format(port=port)}
        response = await answer(port, headers)
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"] == "origin"
        assert scripted.models == []
    else:
        assert len(scripted.models) == 1


@contextmanager
def uvicorn_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """uvicorn's connection lines, which do not reach pytest's handler by themselves. Enter it
    once the server runs: uvicorn's logging setup drops handlers added before."""
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(caplog.handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)


@pytest.mark.parametrize(
    ("trusted", "logged"),
    [(("127.0.0.1", "::1"), "203.0.113.9"), (("192.0.2.1",), "127.0.0.1")],
    ids=["from-a-trusted-proxy", "from-anyone-else"],
)
async def test_the_client_address_comes_from_trusted_proxies_only(
    app_factory: Callable[..., Starlette],
    scripted: ScriptedProvider,
    caplog: pytest.LogCaptureFixture,
    trusted: tuple[str, ...],
    logged: str,
) -> None:
    app = app_factory(scripted, forwarded_allow_ips=trusted)
    async with run_server(app, **server_options(app.state.context.settings)) as (_, port):
        with uvicorn_log(caplog):
            response = await answer(
                port, {"X-Forwarded-For": "203.0.113.9", "Origin": "https://evil.example"}
            )
    assert response.status_code == 403
    lines = [r.getMessage() for r in caplog.records if '"WebSocket /ws" 403' in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith(f"{logged}:")
    # The refusal completes the handshake: uvicorn logs no error for it (app/serving.py).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_agentcores_session_id_becomes_ours_when_valid(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    given = "a1b2c3d4-0000-4000-8000-1234567890ab.x:y_z"
    app = app_factory(scripted)
    async with run_server(app) as (_, port):
        assert (await session_start(port, {AGENTCORE_SESSION: given}))["session_id"] == given
        for invalid in ("has space", "x" * 129, "semi;colon", ""):
            session_id = (await session_start(port, {AGENTCORE_SESSION: invalid}))["session_id"]
            assert len(session_id) == 32  # ours: a uuid4 hex
            assert session_id != invalid


async def test_two_connections_in_one_agentcore_session_get_their_own_ids(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted)
    headers = {AGENTCORE_SESSION: "agentcore-session-1"}
    async with (
        run_server(app) as (_, port),
        httpx.AsyncClient() as client,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client, headers=headers) as first,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client, headers=headers) as second,
    ):
        ids = [(await start(first))["session_id"], (await start(second))["session_id"]]
        assert sorted(ids) == ["agentcore-session-1", "agentcore-session-1.2"]
        assert len(app.state.context.registry) == 2
