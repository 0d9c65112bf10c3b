"""A graceful drain (app/drain.py, app/server.py): `python -m app` on SIGTERM lets every
answer in progress finish, then says `connection_close` (`server_shutdown`) and closes
1012, refuses new sessions meanwhile, and exits 0.

Signals need a real process: these run `python -m app` with the echo model, whose answer
to audio lasts as long as the client speaks (plus 0.5 s), so a client holds its session
mid-response for as long as the test wants. At the client's own rate (16 kHz, binary
frames) the echo comes back byte for byte, so "the whole answer arrived" is exact. What
happens inside one session (a tool still running when the drain begins) runs in-process.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect
from starlette.applications import Starlette
from strands import tool

from app.config import Settings
from app.serving import server_options
from tests.support import (
    BINARY_16K,
    ECHO_AT_CLIENT_RATE,
    SERVER_SHUTDOWN,
    TOOLS_DIR,
    ScriptedProvider,
    app_process,
    connect,
    connect_ws,
    exit_code,
    expect_close,
    free_port,
    handshake,
    non_reader,
    of_type,
    poll_until,
    receive_until,
    run_server,
    speak_until,
    start,
    unsent_bytes,
    wait_status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

SLACK = 5.0  # a loaded 2-core machine


class Speaker:
    """A client speaking to the echo model until hushed, reading all the while."""

    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self.ws = ws
        self.in_response = anyio.Event()
        self.hush = anyio.Event()
        self.sent = 0
        self.seen: list[Any] = []
        self.code = 0

    async def converse(self) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._speak)
            with anyio.fail_after(60):
                while True:  # everything, as it comes (a test watches it grow), until the close
                    try:
                        event = await self.ws.receive()
                    except WebSocketDisconnect as exc:
                        self.code = exc.code
                        return
                    data = getattr(event, "data", None)
                    self.seen.append(json.loads(data) if isinstance(data, str) else data)
                    if self.kinds[-1:] == ["response_start"]:
                        self.in_response.set()

    async def _speak(self) -> None:
        self.sent = await speak_until(self.ws, self.hush)

    @property
    def audio_back(self) -> int:
        return sum(len(m) for m in self.seen if isinstance(m, bytes))

    @property
    def kinds(self) -> list[str]:
        return [m["type"] for m in self.seen if isinstance(m, dict)]

    async def hears_more(self) -> None:
        """Until more of its echo has come (its own task reads it)."""
        heard = self.audio_back
        await poll_until(lambda: self.audio_back > heard, timeout=SLACK)


@dataclass
class Drill:
    process: subprocess.Popen[str]
    port: int
    http: httpx.AsyncClient
    clients: list[Speaker]
    signalled: float = 0.0  # the last signal's time
    closed: float = 0.0  # seconds from it until every client was closed
    exited: float = 0.0  # ... until the process had exited
    code: int | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def sigterm(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.signalled = time.monotonic()


@asynccontextmanager
async def mid_response(env: dict[str, str], n: int) -> AsyncIterator[Drill]:
    """`python -m app` (echo) with `n` clients each in the middle of its answer (speaking
    until hushed); the block signals. Leaving it waits for every close, then the exit."""
    port = free_port()
    async with (
        app_process(ECHO_AT_CLIENT_RATE | {"PORT": str(port), **env}) as (process, _),
        httpx.AsyncClient() as http,
        AsyncExitStack() as stack,
    ):
        clients = []
        for _ in range(n):
            ws = await stack.enter_async_context(connect_ws(f"ws://127.0.0.1:{port}/ws{BINARY_16K}", http))
            await start(ws)
            clients.append(Speaker(ws))
        drill = Drill(process, port, http, clients)
        async with anyio.create_task_group() as tasks:
            for client in clients:
                tasks.start_soon(client.converse)
            with anyio.fail_after(SLACK):
                for client in clients:
                    await client.in_response.wait()
            yield drill
        drill.closed = time.monotonic() - drill.signalled
        # Inside the process's block: leaving it would signal again.
        drill.code = await exit_code(process, timeout=SLACK)
        drill.exited = time.monotonic() - drill.signalled


async def test_sigterm_lets_each_answer_in_progress_finish_then_closes_1012_and_exits_0() -> None:
    async with mid_response({"DRAIN_TIMEOUT": "20"}, 3) as drill:
        drill.sigterm()
        # Not admitting, at once, while every answer goes on.
        ready = await wait_status(drill.http, drill.url("/ready"), 503, timeout=SLACK)
        busy = (await drill.http.get(drill.url("/ping"))).json()["status"]
        refused = await handshake(drill.http, drill.url("/ws"))
        for client in drill.clients:
            client.hush.set()  # its answer ends 0.5 s later
    assert ready.json() == {"status": "draining"}
    assert busy == "HealthyBusy"
    assert refused.status_code == 503
    assert refused.json()["error"] == "draining"
    for client in drill.clients:
        assert client.code == 1012
        assert client.seen[-1] == SERVER_SHUTDOWN
        assert client.kinds[-2] == "response_complete"  # the answer finished, then the goodbye
        assert client.audio_back == client.sent  # every byte of it: nothing was cut
    assert drill.code == 0
    assert drill.exited < SLACK  # well inside DRAIN_TIMEOUT: the drain ended when the answers did


async def test_sigterm_closes_sessions_idle_between_turns_at_once() -> None:
    port = free_port()
    async with (
        app_process(ECHO_AT_CLIENT_RATE | {"PORT": str(port), "DRAIN_TIMEOUT": "30"}) as (process, _),
        httpx.AsyncClient() as http,
        AsyncExitStack() as stack,
    ):
        sockets = []
        for n in range(3):
            ws = await stack.enter_async_context(connect_ws(f"ws://127.0.0.1:{port}/ws", http))
            await start(ws)
            await ws.send_text(json.dumps({"type": "text", "text": f"turn {n}"}))
            await receive_until(ws, "response_complete")
            sockets.append(ws)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        ends = [await expect_close(ws, timeout=SLACK) for ws in sockets]
        closed = time.monotonic() - signalled
        code = await exit_code(process, timeout=SLACK)
    assert ends == [([SERVER_SHUTDOWN], 1012)] * 3
    assert closed < SLACK  # not DRAIN_TIMEOUT (30 s)
    assert code == 0


async def test_a_second_sigterm_closes_every_session_now() -> None:
    async with mid_response({"DRAIN_TIMEOUT": "30"}, 1) as drill:
        (client,) = drill.clients
        drill.sigterm()
        await wait_status(drill.http, drill.url("/ready"), 503, timeout=SLACK)
        await client.hears_more()  # draining, and still answering
        drill.sigterm()
    assert client.code == 1012
    assert client.seen[-1] == SERVER_SHUTDOWN
    assert "response_complete" not in client.kinds  # cut: the speaker never stopped
    assert drill.closed < SLACK  # not DRAIN_TIMEOUT (30 s)
    assert drill.code == 0


async def test_an_answer_longer_than_drain_timeout_is_closed_at_the_deadline() -> None:
    async with mid_response({"DRAIN_TIMEOUT": "1"}, 1) as drill:
        drill.sigterm()
    (client,) = drill.clients
    assert client.code == 1012
    assert client.seen[-1] == SERVER_SHUTDOWN
    assert 1.0 <= drill.closed < 1.0 + SLACK
    assert drill.code == 0


async def test_a_client_that_reads_nothing_does_not_hold_up_the_exit() -> None:
    port = free_port()
    limits = {
        "DRAIN_TIMEOUT": "1",
        "STOP_TIMEOUT": "0.5",
        "CLOSE_TIMEOUT": "0.5",
        "SLOW_CLIENT_TIMEOUT": "60",  # not cut as slow: only the drain's deadlines apply
        "MAX_OUTBOUND_BUFFER_BYTES": "16384",
    }
    async with (
        app_process(ECHO_AT_CLIENT_RATE | {"PORT": str(port), **limits}) as (process, lines),
        non_reader(port, BINARY_16K[1:]) as client,
    ):
        for _ in range(64):  # 6.4 s of audio, echoed back: far more than the buffers hold
            await client.send_binary(bytes(3200))
        # Mid-answer and stuck: the server's socket holds bytes the client does not take.
        client_port = client.stream.extra(anyio.abc.SocketAttribute.local_port)
        await poll_until(lambda: unsent_bytes(port, client_port) > 0, timeout=SLACK)
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # The deadline (1 s), its goodbye (0.5 s), the model's stop (0.5 s), the socket
        # cut (0.5 s), uvicorn's own wait: a few seconds, not for ever.
        code = await exit_code(process, timeout=1 + 0.5 + 0.5 + 0.5 + SLACK)
        took = time.monotonic() - signalled
    assert code == 0
    assert took >= 1.0  # it was mid-answer: the drain waited for it
    assert any("session closed: reason=server_shutdown" in line for line in lines)
    # Its socket was cut at CLOSE_TIMEOUT, not left to uvicorn's own last resort.
    assert not any("timeout graceful shutdown exceeded" in line for line in lines)


async def test_a_tool_running_when_the_drain_begins_is_answered_before_the_close(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, shipped_tools: list[Any]
) -> None:
    running, release = anyio.Event(), anyio.Event()

    @tool
    async def slow_lookup() -> str:
        """Looks the answer up, slowly."""
        running.set()
        await release.wait()
        return "42"

    app = app_factory(scripted, tools=[*shipped_tools, slow_lookup])
    drain = app.state.context.drain
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"text": "use slow_lookup {}"}))
        # The model's response (the tool call) is over; the tool is not.
        await receive_until(ws, "response_complete")
        with anyio.fail_after(SLACK):
            await running.wait()
        drain.begin()
        await ws.send_text(json.dumps({"type": "ping"}))
        answered = await receive_until(ws, "pong")  # still serving
        release.set()
        seen, code = await expect_close(ws)
    assert of_type(answered, "connection_close") == []
    assert code == 1012
    assert seen[-1] == SERVER_SHUTDOWN
    kinds = [m["type"] for m in seen if isinstance(m, dict)]
    assert kinds.index("tool_result") < kinds.index("response_start")  # then the model answers it
    assert of_type(seen, "transcript")[-1]["text"] == "The answer is 42."
    assert kinds[-2] == "response_complete"


async def test_uvicorn_run_directly_closes_sessions_at_once_but_with_their_goodbye(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    # No DrainingServer (a deployment running uvicorn itself, with `server_options`):
    # uvicorn's shutdown asks each connection to close, and our protocol lets the
    # session say `connection_close` before its 1012, even mid-answer.
    settings = Settings(tools_dir=TOOLS_DIR)
    app = app_factory(scripted, settings=settings)
    async with (
        run_server(app, **server_options(settings)) as (server, port),
        httpx.AsyncClient() as http,
        connect_ws(f"ws://127.0.0.1:{port}/ws", http) as ws,
    ):
        await start(ws)
        await ws.send_text(json.dumps({"text": "stream"}))
        await receive_until(ws, "response_start")
        server.should_exit = True
        seen, code = await expect_close(ws)
    assert code == 1012
    assert seen[-1] == SERVER_SHUTDOWN
    assert "response_complete" not in [m["type"] for m in seen if isinstance(m, dict)]
