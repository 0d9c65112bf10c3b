"""Connections that never become sessions, against a real uvicorn with the app's
protocols (app/serving.py, app/edge/handshake.py): silent and slow-header connections
are dropped after HANDSHAKE_TIMEOUT, connections over MAX_CONNECTIONS are refused at
once, and `python -m app` applies the transport limits end to end."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable

import anyio
import httpx
import pytest
from anyio.abc import SocketStream
from starlette.applications import Starlette

from app.config import Settings
from app.serving import server_options
from tests.support import (
    TOOLS_DIR,
    ScriptedProvider,
    connect_ws,
    free_port,
    holds_connection,
    non_reader,
    poll_until,
    run_server,
    serve_subprocess,
    start,
    wait_ready,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

HANDSHAKE = 0.3
SLACK = 3.0


def upgrade_request() -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def read_to_end(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return data


async def drip(stream: SocketStream, data: bytes) -> None:
    """Send `data` a byte at a time, as a slowloris client does (the pace is the client's
    behaviour, not a wait for the server); stops when the server closes."""
    for i in range(len(data)):
        try:
            await stream.send(data[i : i + 1])
        except (anyio.BrokenResourceError, ConnectionError):
            return
        await anyio.sleep(0.05)


@pytest.mark.parametrize(
    ("first_request", "headers"),
    [(False, False), (False, True), (True, True)],
    # An idle kept-alive connection is not among them: uvicorn's keep-alive timeout closes it.
    ids=["silent", "headers a byte at a time", "a second request's headers a byte at a time"],
)
async def test_a_connection_that_does_not_complete_its_headers_in_time_is_dropped_and_counted(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, first_request: bool, headers: bool
) -> None:
    settings = Settings(tools_dir=TOOLS_DIR, handshake_timeout=HANDSHAKE)
    app = app_factory(scripted, settings=settings)
    async with run_server(app, **server_options(settings)) as (_, port):
        started = time.monotonic()  # before the server can have accepted: its clock starts there
        async with await anyio.connect_tcp("127.0.0.1", port) as stream, anyio.create_task_group() as tasks:
            if first_request:  # a kept-alive connection: the clock starts again with the next request
                await stream.send(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                first = b""
                with anyio.fail_after(SLACK):
                    while not first.endswith(b"}"):  # the whole response: its JSON body ends it
                        first += await stream.receive()
                assert first.startswith(b"HTTP/1.1 200")
                started = time.monotonic()
            if headers:
                tasks.start_soon(drip, stream, upgrade_request())
            with anyio.fail_after(HANDSHAKE + SLACK):
                response = await read_to_end(stream)
            elapsed = time.monotonic() - started
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert response.startswith(b"HTTP/1.1 408")
    assert HANDSHAKE <= elapsed < HANDSHAKE + SLACK
    assert health["refused"] == {"handshake_timeout": 1}


async def test_a_connection_over_max_connections_is_refused_at_once_and_the_room_comes_back(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    settings = Settings(tools_dir=TOOLS_DIR, max_connections=2)
    app = app_factory(scripted, settings=settings)
    async with run_server(app, **server_options(settings)) as (server, port), httpx.AsyncClient() as http:
        # A session counts, and so does a connection that has sent nothing yet.
        async with (
            connect_ws(f"ws://127.0.0.1:{port}/ws", http) as ws,
            await anyio.connect_tcp("127.0.0.1", port),
        ):
            await start(ws)
            await poll_until(lambda: len(server.server_state.connections) == 2, timeout=SLACK)
            async with await anyio.connect_tcp("127.0.0.1", port) as third:
                with anyio.fail_after(SLACK):
                    response = await read_to_end(third)
        assert response.startswith(b"HTTP/1.1 503")
        await poll_until(lambda: not server.server_state.connections, timeout=SLACK)
        health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert health["refused"] == {"connection_limit": 1}


async def test_python_m_app_drops_silent_connections_and_cuts_clients_that_read_nothing() -> None:
    port = free_port()
    limits = {"HANDSHAKE_TIMEOUT": "0.5", "SLOW_CLIENT_TIMEOUT": "0.5", "CLOSE_TIMEOUT": "0.5"}
    env = {"PORT": str(port), "MODEL_PROVIDER": "echo", "LOG_LEVEL": "INFO", **limits}
    with serve_subprocess(env | {"MAX_OUTBOUND_BUFFER_BYTES": "16384"}) as process:
        await wait_ready(process)
        async with await anyio.connect_tcp("127.0.0.1", port) as silent:
            with anyio.fail_after(SLACK):
                assert (await read_to_end(silent)).startswith(b"HTTP/1.1 408")
        async with non_reader(port) as client:
            client_port = client.stream.extra(anyio.abc.SocketAttribute.local_port)
            assert holds_connection(process.pid, port, client_port)
            # Echoed back as audio, half as much again (24 kHz out): more than the buffers hold.
            for _ in range(64):
                await client.send_binary(bytes(3200))
            # No event crosses the process boundary: polled (see poll_until).
            await poll_until(lambda: not holds_connection(process.pid, port, client_port), timeout=SLACK)
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
    assert health["sessions"] == 0
    assert health["refused"] == {"handshake_timeout": 1, "slow_client": 1}
