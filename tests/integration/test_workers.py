"""More than one process: `python -m app --workers N` (app/server.py), uvicorn's workers
sharing one port, each with its own limits, and each draining on SIGTERM.

Which worker accepts a connection is the kernel's choice. With MAX_SESSIONS=1, a
connection that lands on the worker already holding a session is refused (503), so two
sessions open at once can only be on two processes; /proc then says which process holds
each socket.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketUpgradeError

from tests.support import (
    BINARY_16K,
    ECHO_AT_CLIENT_RATE,
    ROOT,
    SERVER_SHUTDOWN,
    app_process,
    connect_ws,
    exit_code,
    free_port,
    gone,
    holds_connection,
    local_port,
    poll_until,
    receive_until,
    speak_until,
    start,
    wait_status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

WORKER_STARTED = re.compile(r"Started server process \[(\d+)\]")
SLACK = 10.0  # two processes starting on a loaded 2-core machine


def kinds(messages: list[Any]) -> list[str]:
    return [m["type"] for m in messages if isinstance(m, dict)]


def worker_pids(lines: list[str]) -> set[int]:
    return {int(m.group(1)) for line in lines if (m := WORKER_STARTED.search(line))}


async def open_sessions(
    stack: AsyncExitStack, http: httpx.AsyncClient, port: int, n: int
) -> tuple[list[AsyncWebSocketSession], list[int]]:
    """`n` sessions at once, retrying a handshake a full worker refuses; and the refusals' statuses."""
    sockets: list[AsyncWebSocketSession] = []
    refusals: list[int] = []
    # A deadline checked by hand, not a cancel scope: each connection's context outlives
    # this function, and must not be entered inside a scope that ends here.
    deadline = time.monotonic() + SLACK
    while len(sockets) < n:
        assert time.monotonic() < deadline, f"{len(sockets)} of {n} sessions after {len(refusals)} refusals"
        try:
            ws = await stack.enter_async_context(connect_ws(f"ws://127.0.0.1:{port}/ws{BINARY_16K}", http))
        except WebSocketUpgradeError as exc:
            refusals.append(exc.response.status_code)
            await anyio.sleep(0.01)  # paces the retries (the other worker may still be starting)
            continue
        await start(ws)
        sockets.append(ws)
    return sockets, refusals


async def test_two_workers_serve_a_session_each_and_both_drain_on_sigterm() -> None:
    port = free_port()
    env = ECHO_AT_CLIENT_RATE | {"PORT": str(port), "MAX_SESSIONS": "1", "DRAIN_TIMEOUT": "20"}
    async with (
        app_process(env, args=("--workers", "2")) as (process, lines),
        httpx.AsyncClient() as http,
        AsyncExitStack() as stack,
    ):
        await poll_until(lambda: len(worker_pids(lines)) == 2, timeout=SLACK)
        workers = worker_pids(lines)
        await wait_status(http, f"http://127.0.0.1:{port}/health", 200, timeout=SLACK)  # one listens
        (first, second), refusals = await open_sessions(stack, http, port, 2)
        holders = [
            {pid for pid in workers if holds_connection(pid, port, local_port(ws))} for ws in (first, second)
        ]
        # Both speak; SIGTERM to the supervisor reaches both workers, which drain: the
        # first finishes its answer, the second is still talking at a second SIGTERM,
        # which the supervisor passes on: closed now.
        hush_first, hush_second = anyio.Event(), anyio.Event()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(speak_until, first, hush_first)
            tasks.start_soon(speak_until, second, hush_second)
            for ws in (first, second):
                await receive_until(ws, "response_start")
            process.send_signal(signal.SIGTERM)
            await poll_until(lambda: sum("draining:" in line for line in lines) == 2, timeout=SLACK)
            hush_first.set()
            first_end = await receive_until(first, "connection_close", timeout=SLACK)
            process.send_signal(signal.SIGTERM)
            second_end = await receive_until(second, "connection_close", timeout=SLACK)
            hush_second.set()
        code = await exit_code(process, timeout=SLACK)
    assert holders[0] != holders[1]
    assert holders[0] | holders[1] == workers  # one session in each worker process
    assert set(refusals) <= {503}  # a worker already full: MAX_SESSIONS is per process
    assert kinds(first_end)[-2:] == ["response_complete", "connection_close"]
    assert first_end[-1] == SERVER_SHUTDOWN
    assert second_end[-1] == SERVER_SHUTDOWN
    assert "response_complete" not in kinds(second_end)
    assert code == 0
    assert all(gone(pid) for pid in workers)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--reload", "--workers", "2"], {}, "not allowed with argument"),
        (["--reload"], {"WORKERS": "2"}, "--reload runs one process"),
        (["--workers", "0"], {}, "--workers must be at least 1"),
    ],
)
def test_reload_and_workers_are_exclusive(args: list[str], env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
