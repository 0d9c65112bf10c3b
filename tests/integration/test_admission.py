"""MAX_SESSIONS against a real uvicorn: the handshake over capacity is refused with 503
before any model exists, `/ping` says busy, and a session's place is free again as soon
as its end is decided."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from httpx_ws import WebSocketUpgradeError
from starlette.applications import Starlette

from app.config import Settings
from app.serving import server_options
from tests.support import (
    ScriptedProvider,
    connect_ws,
    expect_close,
    handshake,
    run_server,
    start,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def serve(app: Starlette, settings: Settings) -> AbstractAsyncContextManager[tuple[uvicorn.Server, int]]:
    # As `python -m app` serves it; log_config=None lets caplog see uvicorn's own lines.
    return run_server(app, log_config=None, **server_options(settings))


async def test_the_session_over_max_sessions_is_refused_with_503_before_any_model(
    app_factory: Callable[..., Starlette],
    settings_factory: Callable[..., Settings],
    scripted: ScriptedProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_factory(max_sessions=2)
    app = app_factory(scripted, settings=settings)
    async with serve(app, settings) as (_, port), httpx.AsyncClient() as http:
        url, base = f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}"
        assert (await http.get(f"{base}/ping")).json()["status"] == "Healthy"
        assert (await http.get(f"{base}/ready")).status_code == 200
        async with connect_ws(url, http) as first, connect_ws(url, http) as second:
            await start(first)
            await start(second)
            assert (await http.get(f"{base}/ping")).json()["status"] == "HealthyBusy"
            not_ready = await http.get(f"{base}/ready")  # routes new clients elsewhere
            assert (not_ready.status_code, not_ready.json()) == (503, {"status": "full"})
            refused = await handshake(http, f"{base}/ws")
            with pytest.raises(WebSocketUpgradeError) as raised:  # as a client library sees it
                async with connect_ws(url, http):
                    pass
            health = (await http.get(f"{base}/health")).json()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert refused.json() == {"error": "capacity", "message": "the server is at capacity; try again later"}
    assert raised.value.response.status_code == 503
    assert len(scripted.models) == 2  # none for the refused handshakes
    assert health["sessions"] == 2
    assert health["refused"] == {"capacity": 2}
    # Logged by the edge (one line a second per reason), never as a uvicorn error per handshake.
    lines = {r.getMessage() for r in caplog.records if r.name == "app.edge.refusals"}
    assert lines == {"refused: reason=capacity MAX_SESSIONS=2 reached"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_place_is_free_again_as_soon_as_a_session_ends(
    app_factory: Callable[..., Starlette],
    settings_factory: Callable[..., Settings],
    scripted: ScriptedProvider,
) -> None:
    settings = settings_factory(max_sessions=1)
    app = app_factory(scripted, settings=settings)
    async with serve(app, settings) as (_, port), httpx.AsyncClient() as http:
        url = f"ws://127.0.0.1:{port}/ws"
        slow_stop = asyncio.Event()
        async with connect_ws(url, http) as first:
            await start(first)
            scripted.model.hold_stop = slow_stop  # its model will stop slowly
            assert (await handshake(http, f"http://127.0.0.1:{port}/ws")).status_code == 503
            await first.send_text('{"type":"end"}')
            _, code = await expect_close(first)
        assert code == 1000
        # The first session is still stopping its model, yet its place is already free.
        assert not scripted.models[0].stopped.is_set()
        async with connect_ws(url, http) as second:
            await start(second)
            assert len(scripted.models) == 2
            assert (
                await handshake(http, f"http://127.0.0.1:{port}/ws")
            ).status_code == 503  # still one at a time
            slow_stop.set()
        # A client that just goes away: its place is free once the server has seen it go.
        await wait_closed(app)
        async with connect_ws(url, http) as third:
            await start(third)
    assert len(scripted.models) == 3
    assert app.state.context.refusals.counts == {"capacity": 2}


async def test_concurrent_handshakes_never_admit_more_than_max_sessions(
    app_factory: Callable[..., Starlette],
    settings_factory: Callable[..., Settings],
    scripted: ScriptedProvider,
) -> None:
    settings = settings_factory(max_sessions=3)
    app = app_factory(scripted, settings=settings)
    sessions: list[dict[str, Any]] = []
    refused: list[int] = []
    release = anyio.Event()  # set once every handshake has been answered

    async def attempt(url: str, http: httpx.AsyncClient) -> None:
        try:
            async with connect_ws(url, http) as ws:
                sessions.append(await start(ws))
                await release.wait()
        except WebSocketUpgradeError as exc:
            refused.append(exc.response.status_code)
            if len(refused) == 7:
                release.set()

    async with serve(app, settings) as (_, port), httpx.AsyncClient() as http:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for _ in range(10):
                    tasks.start_soon(attempt, f"ws://127.0.0.1:{port}/ws", http)
            await wait_closed(app)
    assert (len(sessions), refused) == (3, [503] * 7)
    assert len(scripted.models) == 3
