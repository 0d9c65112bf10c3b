"""End to end against a real uvicorn on a free loopback port, and `python -m app` itself."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import anyio
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from app.server import DrainingServer
from tests.support import (
    ROOT,
    connect_ws,
    expect_close,
    free_port,
    poll_until,
    receive_until,
    run_server,
    serve_subprocess,
    start,
    stop,
    wait_ready,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_text_round_trip_then_shutdown_closes_with_1012(app_factory: Callable[..., Starlette]) -> None:
    app = app_factory(None, model_provider="echo")
    async with (
        run_server(app) as (server, port),
        httpx.AsyncClient() as client,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws,
    ):
        info = await start(ws)
        assert info["provider"] == "echo"
        await ws.send_text(json.dumps({"type": "text", "text": "over the wire"}))
        seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "over the wire"
        health = await client.get(f"http://127.0.0.1:{port}/ping")
        assert health.json()["status"] == "HealthyBusy"
        server.should_exit = True
        _, code = await expect_close(ws)
    assert code == 1012
    with anyio.fail_after(2):
        await app.state.context.registry.wait_idle()


async def test_python_m_app_serves_ws_and_health() -> None:
    port = free_port()
    with serve_subprocess({"PORT": str(port), "MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO"}) as process:
        await wait_ready(process)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/health")).json()["status"] == "ok"
            async with connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
                await start(ws)
                await ws.send_text(json.dumps({"text": '/tool calculator {"expression": "12*7"}'}))
                seen = await receive_until(ws, "transcript", final=True)
        assert seen[-1]["text"] == "calculator says: 84"


def test_python_m_app_refuses_bad_settings_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={**os.environ, "MODEL_PROVIDER": "gpt5"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MODEL_PROVIDER='gpt5' is not valid; allowed values: local, echo, nova_sonic" in result.stderr


def test_a_server_that_ignores_terminate_is_killed_and_reaped() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"  # SIGTERM is ignored from here on
        stop(process, timeout=0.5)
        assert process.returncode == -signal.SIGKILL
    assert process.stdout.closed


async def test_a_failing_test_still_stops_its_server_and_closes_its_socket(
    app_factory: Callable[..., Starlette],
) -> None:
    app = app_factory(None, model_provider="echo")
    failed = False
    try:
        async with (
            run_server(app) as (_, port),
            httpx.AsyncClient() as client,
            connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws,
        ):
            await start(ws)
            raise LookupError("the test failed with a session open")
    except* LookupError:
        failed = True
    assert failed
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):  # nothing listens on the port any more
            await client.get(f"http://127.0.0.1:{port}/health")
    assert len(app.state.context.registry) == 0  # the session was closed, not abandoned
    assert app.state.context.services.http.is_closed  # and the app's lifespan shut down


async def test_a_started_server_moves_what_it_built_out_of_the_garbage_collectors_way() -> None:
    # Collections then walk only what sessions make (app/server.py, DrainingServer.startup).
    gc.unfreeze()
    config = uvicorn.Config(Starlette(), host="127.0.0.1", port=free_port(), lifespan="off", log_config=None)
    server = DrainingServer(config)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(server.serve)
            await poll_until(lambda: server.started, timeout=5)
            assert gc.get_freeze_count() > 10_000  # the modules imported so far, at least
            server.should_exit = True
    finally:
        gc.unfreeze()  # the rest of the test run collects as usual
