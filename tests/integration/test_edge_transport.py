"""Clients that stop reading, against a real uvicorn with the app's protocols
(app/serving.py, app/edge/transport.py): they are cut, their sockets and models freed,
their pings bounded, and the sessions beside them keep their latency.

The clients are raw sockets with a tiny receive buffer (`non_reader`); the server's side
is observed in its own objects (its WebSocket connections, their sockets and buffers),
which change without any event to wait for, so those are polled with a deadline.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.serving import server_options
from tests.support import (
    TOOLS_DIR,
    ScriptedProvider,
    connect_ws,
    non_reader,
    ping_round_trips,
    poll_until,
    run_server,
    start,
    wait_closed,
    websocket_connections,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# Small, so that the tests are quick; the slack covers a loaded 2-core machine.
SLOW = 0.3
CLOSE = 0.3
BUFFER = 16_384
SLACK = 3.0


def edge_settings(**overrides: Any) -> Settings:
    limits: dict[str, Any] = {
        "slow_client_timeout": SLOW,
        "close_timeout": CLOSE,
        "max_outbound_buffer_bytes": BUFFER,
        # The observer times pings sent back to back; TEXT_RATE_LIMIT would pace them.
        "text_rate_limit": 0.0,
    }
    return Settings(tools_dir=TOOLS_DIR, **(limits | overrides))


def closed_sessions(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("session closed")]


async def test_a_client_that_stops_reading_is_cut_and_its_socket_and_model_freed(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    settings = edge_settings()
    app = app_factory(scripted, settings=settings)
    caplog.set_level(logging.INFO, logger="app.session")
    async with run_server(app, **server_options(settings)) as (server, port):
        async with non_reader(port) as client:
            (connection,) = websocket_connections(server)
            sock = connection.transport.get_extra_info("socket")
            started = time.monotonic()
            await client.send_text(json.dumps({"type": "text", "text": "stream"}))  # audio nobody reads
            await wait_closed(app, timeout=SLOW + SLACK)
            await poll_until(lambda: not websocket_connections(server), timeout=CLOSE + SLACK)
            elapsed = time.monotonic() - started
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert sock.fileno() == -1  # the server's socket, and so its file descriptor, is closed
    assert elapsed < SLOW + CLOSE + SLACK
    assert health["sessions"] == 0
    assert health["refused"] == {"slow_client": 1}
    assert scripted.model.stop_calls == 1
    assert ["reason=slow_client code=1008" in line for line in closed_sessions(caplog)] == [True]


async def test_a_client_cut_while_its_reader_waits_on_a_stalled_model_is_still_a_slow_client(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # The session's reader is not receiving (the model takes no audio and the audio queue
    # is full), so only the relay's waiting send can learn why the client was cut, and it
    # learns at the cut, not when the connection is aborted CLOSE_TIMEOUT later.
    settings = edge_settings(audio_queue_size=1, input_stall_timeout=60.0, close_timeout=1.5)
    app = app_factory(scripted, settings=settings)
    caplog.set_level(logging.INFO, logger="app.session")
    async with run_server(app, **server_options(settings)) as (server, port), non_reader(port) as client:
        for text in ("stream", "hang"):
            await client.send_text(json.dumps({"type": "text", "text": text}))
        for _ in range(3):  # one in the model's hands, one queued, one the reader waits to queue
            await client.send_binary(bytes(640))
        await wait_closed(app, timeout=SLOW + SLACK)
        assert websocket_connections(server)  # the session ended before its connection
    assert ["reason=slow_client code=1008" in line for line in closed_sessions(caplog)] == [True]
    assert app.state.context.refusals.counts == {"slow_client": 1}
    assert scripted.model.stop_calls == 1


async def test_twenty_clients_that_stop_reading_are_all_cut_while_another_session_keeps_its_latency(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    settings = edge_settings()
    app = app_factory(scripted, settings=settings)
    registry = app.state.context.registry
    async with (
        run_server(app, **server_options(settings)) as (server, port),
        httpx.AsyncClient() as http,
        connect_ws(f"ws://127.0.0.1:{port}/ws", http) as observer,
        AsyncExitStack() as clients,
    ):
        await start(observer)
        baseline = await ping_round_trips(observer, 0.3)
        stalled = [await clients.enter_async_context(non_reader(port)) for _ in range(20)]
        sockets = [c.transport.get_extra_info("socket") for c in websocket_connections(server)]
        assert len(sockets) == 21
        for client in stalled:
            await client.send_text(json.dumps({"type": "text", "text": "stream"}))
        during = await ping_round_trips(observer, 1.0)
        await poll_until(lambda: len(registry) == 1, timeout=SLOW + SLACK)
        await poll_until(lambda: len(websocket_connections(server)) == 1, timeout=CLOSE + SLACK)
        health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
        closed = sum(sock.fileno() == -1 for sock in sockets)
    assert closed == 20  # all but the observer's
    assert health["refused"] == {"slow_client": 20}
    assert all(model.stop_calls == 1 for model in scripted.models[1:])
    # Generous: a loaded 2-core machine, with twenty models streaming at first.
    assert statistics.median(during) < 0.1, (baseline, during)
    assert max(during) < 1.0, (baseline, during)


async def test_a_ping_flood_that_never_reads_stays_bounded_and_is_cut(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    settings = edge_settings()
    app = app_factory(scripted, settings=settings)
    async with (
        run_server(app, **server_options(settings)) as (server, port),
        httpx.AsyncClient() as http,
        connect_ws(f"ws://127.0.0.1:{port}/ws", http) as observer,
    ):
        await start(observer)
        (observed,) = websocket_connections(server)
        async with non_reader(port) as client:
            (connection,) = set(websocket_connections(server)) - {observed}
            buffered: list[int] = []

            async def watch_buffer() -> None:
                while not connection.transport.is_closing():
                    buffered.append(connection.transport.get_write_buffer_size())
                    await anyio.sleep(0.005)

            flooded: list[tuple[int, str]] = []

            async def flood() -> None:
                pings = client.ping_frame(bytes(125)) * 64  # the largest pings: each is owed a 127-byte pong
                flooded.append(await client.flood(pings, seconds=SLOW + SLACK))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch_buffer)
                tasks.start_soon(flood)
                rtts = await ping_round_trips(observer, 0.5)
                await poll_until(connection.transport.is_closing, timeout=SLOW + SLACK)
        await poll_until(lambda: len(websocket_connections(server)) == 1, timeout=CLOSE + SLACK)
        health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    # The server stopped reading (TCP backpressure): the flood stalled once the kernel
    # buffers between them were full, instead of going on for as long as it liked.
    ((_, ended),) = flooded
    assert ended in ("stalled", "cut")
    # At most the limit, plus the pongs for what one read took in before the limit was crossed.
    assert max(buffered) <= BUFFER + 256 * 1024 + 64 * 127
    assert health["refused"] == {"slow_client": 1}
    assert statistics.median(rtts) < 0.1


async def test_a_session_cancelled_while_its_client_reads_nothing_still_stops_its_model_and_frees_its_socket(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # Not cut as slow (the timeout is long): the session is cancelled from outside, as a
    # server does past its grace period, while its close is stuck behind bytes the
    # client never reads. Closing must not use up the time the model has to stop.
    settings = edge_settings(slow_client_timeout=60.0, stop_timeout=0.3)
    app = app_factory(scripted, settings=settings)
    scopes: list[anyio.CancelScope] = []

    async def cancellable(scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.CancelScope() as cancel:
            if scope["type"] == "websocket":
                scopes.append(cancel)
            await app(scope, receive, send)

    caplog.set_level(logging.INFO, logger="app.session")
    async with (
        run_server(cancellable, **server_options(settings)) as (server, port),
        non_reader(port) as client,
    ):
        (connection,) = websocket_connections(server)
        sock = connection.transport.get_extra_info("socket")
        await client.send_text(json.dumps({"type": "text", "text": "stream"}))
        await poll_until(lambda: connection.transport.get_write_buffer_size() > BUFFER, timeout=SLACK)
        scopes[0].cancel()
        await wait_closed(app, timeout=2 * settings.stop_timeout + SLACK)
        await poll_until(lambda: not websocket_connections(server), timeout=CLOSE + SLACK)
    assert sock.fileno() == -1
    assert scripted.model.stop_calls == 1
    assert ["reason=server_shutdown code=1012" in line for line in closed_sessions(caplog)] == [True]


async def test_a_graceful_shutdown_does_not_wait_for_a_client_that_reads_nothing(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    settings = edge_settings(slow_client_timeout=60.0)
    app = app_factory(scripted, settings=settings)
    async with run_server(app, **server_options(settings)) as (server, port), non_reader(port) as client:
        (connection,) = websocket_connections(server)
        sock = connection.transport.get_extra_info("socket")
        await client.send_text(json.dumps({"type": "text", "text": "stream"}))
        await poll_until(lambda: connection.transport.get_write_buffer_size() > BUFFER, timeout=SLACK)
        server.should_exit = True
        # Sooner than uvicorn's own grace period (5 s in run_server), which would cancel
        # the session's task but leave the connection open.
        await poll_until(lambda: not server.server_state.connections, timeout=CLOSE + SLACK)
        await wait_closed(app)
    assert sock.fileno() == -1
    assert scripted.model.stop_calls == 1
