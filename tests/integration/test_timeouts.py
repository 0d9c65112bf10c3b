"""IDLE_TIMEOUT and MAX_SESSION_DURATION through a real WebSocket: a session with no
frame from its client, or one that has lasted too long, is closed with 1000 and a reason;
the watchdog is one task per session, started only when a timeout is set."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
import pytest
from starlette.applications import Starlette
from wsproto.utilities import LocalProtocolError

from tests.support import (
    ScriptedProvider,
    assert_no_session_tasks,
    connect,
    expect_close,
    of_type,
    receive_json,
    receive_until,
    session_tasks,
    start,
    tone,
    wait_closed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PING = '{"type":"ping"}'


async def test_a_session_without_frames_is_closed_idle_with_1000(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, idle_timeout=0.2)
    async with connect(app) as ws:
        await start(ws)
        assert "session:watchdog" in {task.get_name() for task in session_tasks()}
        began = anyio.current_time()
        seen, code = await expect_close(ws, timeout=2)
        waited = anyio.current_time() - began
    assert (seen, code) == ([{"type": "connection_close", "reason": "idle"}], 1000)
    assert waited >= 0.15  # not before its time (the clock started as the session began reading)
    assert app.state.context.refusals.counts == {"idle": 1}
    with anyio.fail_after(2):
        await scripted.model.stopped.wait()
    await wait_closed(app)
    await assert_no_session_tasks()


async def test_pings_keep_a_quiet_session_open_until_they_stop(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, idle_timeout=0.5)
    async with connect(app) as ws:
        await start(ws)
        with anyio.fail_after(5):
            until = anyio.current_time() + 1.5  # three idle periods
            while anyio.current_time() < until:
                await ws.send_text(PING)
                assert await receive_json(ws) == {"type": "pong"}
                await anyio.sleep(0.05)  # a client pinging 20 times a second, far inside the limit
        seen, code = await expect_close(ws, timeout=2)
    assert (seen, code) == ([{"type": "connection_close", "reason": "idle"}], 1000)


async def test_time_the_server_spends_not_reading_is_not_idle(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    # A model that stops taking audio fills the queue; the reader then waits on the model,
    # not on the client, which is still sending. That ends as input_stalled, never as idle.
    app = app_factory(scripted, audio_queue_size=2, input_stall_timeout=1.0, idle_timeout=0.4)
    async with connect(app) as ws:
        await start(ws)
        await ws.send_text('{"type":"text","text":"hang"}')
        await receive_until(ws, "response_complete")
        for _ in range(6):  # 1 taken by the stuck model, 2 queued, then the reader waits
            await ws.send_bytes(tone(320))
        seen, code = await expect_close(ws, timeout=5)
    assert code == 1013
    assert seen[-1] == {"type": "connection_close", "reason": "input_stalled"}
    assert app.state.context.refusals.counts == {}


async def test_a_busy_session_is_closed_at_max_session_duration_with_1000(
    app_factory: Callable[..., Starlette], scripted: ScriptedProvider
) -> None:
    app = app_factory(scripted, max_session_duration=0.3)
    began = anyio.current_time()
    pongs = 0
    async with connect(app) as ws:
        await start(ws)
        with anyio.fail_after(5):
            while True:  # busy all along: a duration is not an idle time
                with contextlib.suppress(LocalProtocolError):  # the server's close came in meanwhile
                    await ws.send_text(PING)
                if (message := await receive_json(ws))["type"] != "pong":
                    break
                pongs += 1
                await anyio.sleep(0.02)
        lasted = anyio.current_time() - began
        _, code = await expect_close(ws)
    assert pongs >= 3
    assert message == {"type": "connection_close", "reason": "max_duration"}
    assert code == 1000
    assert lasted >= 0.3
    assert app.state.context.refusals.counts == {"max_duration": 1}


async def test_no_watchdog_task_without_a_timeout(app: Starlette) -> None:
    async with connect(app) as ws:
        await start(ws)
        names = {task.get_name() for task in session_tasks()}
        await ws.send_text('{"type":"end"}')
        seen, code = await expect_close(ws)
    assert "session:reader" in names
    assert "session:watchdog" not in names
    assert (of_type(seen, "connection_close"), code) == (
        [{"type": "connection_close", "reason": "client_end"}],
        1000,
    )
