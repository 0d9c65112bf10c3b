"""Tool limits end to end: TOOL_TIMEOUT, runaway CPU work in a worker process that is
killed at the deadline, and the issue's `round(1, -10**8)`, which used to compute a
100-million-digit power on the event loop and freeze the whole server."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession
from starlette.applications import Starlette
from strands import tool
from strands.types.tools import ToolContext

from app.plugins import services
from tests.support import (
    ScriptedProvider,
    connect,
    connect_ws,
    free_port,
    gone,
    of_type,
    receive_until,
    run_server,
    serve_subprocess,
    start,
    wait_ready,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

RESPONSIVE = 1.0  # seconds that /health and another session's ping may take meanwhile
RUNAWAY = range(10**18)  # sum() over it holds the GIL in C for ages, like a huge power


async def answers_promptly(client: httpx.AsyncClient, other: AsyncWebSocketSession) -> float:
    """Check /health and a ping on another session each answer within RESPONSIVE; return
    the slower of the two, in seconds."""
    timings = []
    started = time.monotonic()
    with anyio.fail_after(RESPONSIVE):
        health = await client.get("/health")
    timings.append(time.monotonic() - started)
    assert health.json()["status"] == "ok"
    started = time.monotonic()
    with anyio.fail_after(RESPONSIVE):
        await other.send_text(json.dumps({"type": "ping"}))
        await receive_until(other, "pong")
    timings.append(time.monotonic() - started)
    return max(timings)


async def test_a_tool_past_tool_timeout_gives_the_model_an_error_and_the_session_goes_on(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, shipped_tools: list[Any]
) -> None:
    cancelled = anyio.Event()

    @tool
    async def wait_forever() -> str:
        """Waits for an event that never comes."""
        try:
            await anyio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    app = app_factory(scripted, tools=[*shipped_tools, wait_forever], tool_timeout=0.5)
    async with connect(app) as ws:
        await start(ws)
        asked = time.monotonic()
        await ws.send_text(json.dumps({"text": "use wait_forever {}"}))
        seen = await receive_until(ws, "tool_result", timeout=0.5 + 2)
        took = time.monotonic() - asked
        await ws.send_text(json.dumps({"text": "still there?"}))
        later = await receive_until(ws, "transcript", final=True, text="You said: still there?")
    assert seen[-1]["status"] == "error"
    assert seen[-1]["content"] == "Error: wait_forever timed out after 0.5 seconds"
    assert took >= 0.5
    assert cancelled.is_set()  # the tool's coroutine did not linger
    assert scripted.model.tool_results[0].status == "error"  # the model got it, and went on
    assert later[-1]["text"] == "You said: still there?"


async def test_runaway_work_is_killed_at_the_deadline_and_the_server_stays_responsive(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, shipped_tools: list[Any]
) -> None:
    running = anyio.Event()
    pids: list[int] = []

    @tool(context=True)
    async def crunch(tool_context: ToolContext) -> str:
        """Adds numbers up for ever."""
        workers = services(tool_context).workers
        pids.append(await workers.run(os.getpid))  # one process: the sum runs in this one
        running.set()
        return str(await workers.run(sum, RUNAWAY))

    app = app_factory(scripted, tools=[*shipped_tools, crunch], tool_timeout=3.0, tool_processes=1)
    async with (
        run_server(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client) as ws,
        connect_ws(f"ws://127.0.0.1:{port}/ws", client) as other,
    ):
        await start(ws)
        await start(other)
        await ws.send_text(json.dumps({"text": "use crunch {}"}))
        with anyio.fail_after(10):  # the first worker of the test run also starts the forkserver
            await running.wait()
        slowest = await answers_promptly(client, other)
        assert not gone(pids[0]), "the runaway sum should still be running"
        seen = await receive_until(ws, "tool_result", timeout=3.0 + 2)
        assert gone(pids[0])  # killed and reaped, not left burning CPU
        await ws.send_text(json.dumps({"text": "still there?"}))
        later = await receive_until(ws, "transcript", final=True, text="You said: still there?")
    assert slowest < RESPONSIVE
    assert seen[-1]["status"] == "error"
    assert seen[-1]["content"] == "Error: crunch timed out after 3 seconds"
    assert later[-1]["text"] == "You said: still there?"
    assert app.state.context.services.workers.pids == []


async def test_the_issues_costly_calculation_no_longer_freezes_the_server() -> None:
    # A subprocess, so that a frozen server cannot freeze the test's own deadlines too.
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    with serve_subprocess({"PORT": str(port), "MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO"}) as process:
        await wait_ready(process)
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
            connect_ws(url, client) as ws,
            connect_ws(url, client) as other,
        ):
            await start(ws)
            await start(other)
            expression = json.dumps({"expression": "round(1, -10**8)"})
            await ws.send_text(json.dumps({"text": f"/tool calculator {expression}"}))
            await receive_until(ws, "tool_use")
            for _ in range(3):
                await answers_promptly(client, other)
            seen = await receive_until(ws, "transcript", final=True, timeout=20)
            await ws.send_text(json.dumps({"text": "still there?"}))
            later = await receive_until(ws, "transcript", final=True)
    result = of_type(seen, "tool_result")[0]
    assert (result["status"], result["content"]) == ("success", "0")
    assert seen[-1]["text"] == "calculator says: 0"
    assert later[-1]["text"] == "still there?"
