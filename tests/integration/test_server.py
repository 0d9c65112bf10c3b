"""End to end against a real uvicorn on a free loopback port, and `python -m app` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from httpx_ws import aconnect_ws
from starlette.applications import Starlette

from tests.integration.test_websocket_flows import expect_close, start
from tests.servers import serving
from tests.support import receive_until

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def run_server(app: Starlette, **options: Any) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """`app` on a real uvicorn, with its lifespan; stopped and closed even if the block fails.
    `options` are more of uvicorn's settings."""
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5, **options)
    async with serving(config) as running:
        yield running


async def test_text_round_trip_then_shutdown_closes_with_1012(app_factory: Callable[..., Starlette]) -> None:
    app = app_factory(None, model_provider="echo")
    async with (
        run_server(app) as (server, port),
        httpx.AsyncClient() as client,
        aconnect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws,
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


@contextmanager
def serve_subprocess(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    ) as process:  # leaving it closes the pipe and reaps the process
        try:
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen[str], timeout: float = 10) -> None:
    """Ask `process` to stop; kill it if it has not within `timeout`. Either way it is
    reaped: no zombie, and no server left holding a port while later tests run."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_ready(process: subprocess.Popen[str]) -> None:
    """Wait for uvicorn's own readiness line (needs LOG_LEVEL=INFO)."""
    assert process.stderr is not None
    with anyio.fail_after(30):
        while "Application startup complete" not in (
            # Abandoned on timeout; stopping the process then ends the read with EOF.
            line := await anyio.to_thread.run_sync(process.stderr.readline, abandon_on_cancel=True)
        ):
            assert line, "server exited before it was ready"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_python_m_app_serves_ws_and_health() -> None:
    port = free_port()
    with serve_subprocess({"PORT": str(port), "MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO"}) as process:
        await wait_ready(process)
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/health")).json()["status"] == "ok"
            async with aconnect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws:
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
            aconnect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws,
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
