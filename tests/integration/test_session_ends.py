"""How a session ends when something outside it goes wrong: cancelled by the server, or a
failure in the layer below it that is not a client leaving."""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.serving import server_options
from app.session import Session
from tests.support import (
    TOOLS_DIR,
    ScriptedProvider,
    connect,
    expect_close,
    receive_until,
    run_server,
    start,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_a_session_cancelled_from_outside_still_closes_1012_and_stops_its_model(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    # What a server does past its graceful-shutdown timeout: cancel the app's task.
    app = app_factory(scripted)
    scopes: list[anyio.CancelScope] = []

    async def cancellable(scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.CancelScope() as cancel:
            scopes.append(cancel)
            await app(scope, receive, send)

    async with connect(cancellable) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "stream"}))  # a reply that never ends
        await receive_until(ws, "audio")
        scopes[0].cancel()
        seen, code = await expect_close(ws)
    assert code == 1012
    assert seen[-1] == {"type": "connection_close", "reason": "server_shutdown"}
    with anyio.fail_after(2):
        await scripted.model.stopped.wait()
    assert scripted.model.stop_calls == 1
    await wait_closed(app)


async def test_a_failing_send_below_the_session_is_an_internal_error_not_a_disconnect(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory(scripted)

    async def breaks_on_explode(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_or_break(message: Message) -> None:
            if "explode" in str(message.get("text", "")):
                raise RuntimeError("a bug below the session")
            await send(message)

        await app(scope, receive, send_or_break)

    async with connect(breaks_on_explode) as ws:
        await start(ws)
        await ws.send_text(json.dumps({"type": "text", "text": "explode"}))
        seen, code = await expect_close(ws)
    assert code == 1011
    errors: list[dict[str, Any]] = [m for m in seen if isinstance(m, dict) and m.get("type") == "error"]
    assert errors[0]["code"] == "internal_error"
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "app.session"]
    assert [r.getMessage() for r in failures] == ["session failed"]
    assert failures[0].exc_info is not None  # logged with its traceback, once
    assert "a bug below the session" in caplog.text
    assert "client_disconnect" not in caplog.text


async def test_a_client_that_stops_answering_pings_is_closed_as_keepalive_timeout(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(tools_dir=TOOLS_DIR, ws_ping_interval=0.2, ws_ping_timeout=0.2)
    app = app_factory(scripted, settings=settings)
    caplog.set_level(logging.INFO, logger="app.session")
    async with run_server(app, **server_options(settings)) as (_, port):
        # A raw client: it completes the handshake, then never reads, so no pong is sent.
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            key = base64.b64encode(os.urandom(16)).decode()
            await stream.send(
                "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            assert (await stream.receive()).startswith(b"HTTP/1.1 101")
            await wait_closed(app, timeout=3)  # a ping interval and a timeout, with room
    closed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("session closed")]
    assert len(closed) == 1
    assert "reason=keepalive_timeout code=1011" in closed[0]
    assert scripted.model.stop_calls == 1


async def test_an_ended_session_is_freed_at_once_not_left_for_the_garbage_collector(
    app_factory: Callable[..., Starlette],
) -> None:
    # Reference counting frees it as it ends when nothing keeps it in a cycle; left in one,
    # its objects wait for a full collection, which pauses every other session (app/session.py).
    app = app_factory(None, model_provider="echo")
    gc.collect()
    gc.disable()
    try:
        for query, end in (("audio=binary", '{"type":"end"}'), ("", None)):
            async with connect(app, query) as ws:
                await start(ws)
                await ws.send_bytes(b"\x01\x00" * 320)  # audio, then text: both feeds used
                await ws.send_text('{"type":"text","text":"hi"}')
                await receive_until(ws, "transcript", final=True)
                if end:
                    await ws.send_text(end)  # the client ends it
                    await expect_close(ws)
                # else: the client just goes (a disconnect)
            await wait_closed(app)
            alive = [o for o in gc.get_objects() if isinstance(o, Session)]
            assert not alive
    finally:
        gc.enable()
